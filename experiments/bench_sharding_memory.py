"""Per-device memory of the paper train steps, data parallel vs fsdp, from the compiled executable.

    python experiments/bench_sharding_memory.py                  # the table in the .md (reduced depth)
    python experiments/bench_sharding_memory.py --full           # the paper depths (hours on 2 cores)

For each trainer (Reliev3R paper FFRM: 8 views of 518^2 per scene; Rewis3d paper: SegFormer-B4 +
PTv3, 512^2 crops with 120k points per sample) and each device count n (1, 8, 64), one subprocess
with XLA_FLAGS=--xla_force_host_platform_device_count=n lowers and compiles the real jitted train
step (`reliev3r.step.train_step`, `rewis3d.step.seg_train_step`, donating the state) ahead of time
on a simulated CPU mesh, batch = n (one scene / sample per device), with the state placed by
`jaxrecon.train.sharding` for fsdp = 1 (pure data parallelism, the reference in the same run) and
fsdp > 1. Nothing is executed: the state and batch are jax.ShapeDtypeStruct with shardings, and the
numbers are XLA's `memory_analysis()` of the per-device program: arguments, outputs, aliased
(donated) bytes, temporaries and generated code; "peak" = argument + output - alias + temp. The
ratio column is each row's peak over the fsdp = 1 row of the same device count.

--depth D (default 4) builds the backbones with fewer layers of the same width (Reliev3R: D
frame/global blocks of the paper's 18; Rewis3d: PTv3 encoder/decoder depths capped at D, SegFormer
stages capped at D blocks) so that every compile fits this 2-core, 24 GB machine; --full uses the
paper depths. The table says which was used. --trainers / --devices measure a part and keep the
other rows of the last run at the same depth. Writes bench_sharding_memory.json next to this file
and the table into bench_sharding_memory.md between its "<!-- table -->" markers (the notes
around them, expectations and findings, are kept); --out to change the stem.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
GIB = 2.0 ** 30


def _fsdp_sizes(n: int) -> list[int]:
  """Data parallel first (the reference), then 8-way and full fsdp where they differ."""
  return sorted({1, min(8, n), n})


def reliev3r_case(depth, points=0):
  """(step function, static kwargs, abstract state, batch shapes) of the paper Reliev3R config."""
  from configs import reliev3r as cfg_module
  from jaxrecon.reliev3r.objective import ObjectiveConfig
  from jaxrecon.reliev3r.step import train_step
  from jaxrecon.reliev3r.task import build
  import jax
  import numpy as np
  config = cfg_module.get_config("paper")
  with config.unlocked():
    if depth:
      config.model.depth = min(depth, config.model.depth)
  graphdef, tx, init_state = build(config)
  p = config.pipeline
  v, h, w, t = p.num_views, p.height, p.width, p.max_tracks
  batch = {"images": ((v, h, w, 3), np.float32), "intrinsics": ((v, 3, 3), np.float32),
           "tracks": ((t, v, 2), np.float32), "visibility": ((t, v), np.bool_),
           "mono_depth": ((v, h, w), np.float32)}
  kwargs = dict(graphdef=graphdef, tx=tx, config=ObjectiveConfig(**config.objective.to_dict()))
  return train_step, kwargs, jax.eval_shape(init_state), batch, f"depth {config.model.depth}"


def rewis3d_case(depth, points=0):
  """Same for the paper Rewis3d config (both branches, EMA teachers in the optimiser state)."""
  from configs import rewis3d as cfg_module
  from jaxrecon.rewis3d.step import SegObjectiveConfig, seg_train_step
  from jaxrecon.rewis3d.task import build_seg
  import jax
  import numpy as np
  config = cfg_module.get_config("paper")
  with config.unlocked():
    if depth:
      for key in ("enc_depths", "dec_depths"):
        config.model3d[key] = tuple(min(d, depth) for d in config.model3d[key])
      config.model2d.depths = tuple(min(d, depth) for d in config.model2d.depths)
    if points:
      config.pipeline.num_points = points
  graphdefs, txs, init_state = build_seg(config, "rewis3d")
  p = config.pipeline
  h, w, n = p.height, p.width, p.num_points
  batch = {"image_weak": ((h, w, 3), np.uint8), "image_strong": ((h, w, 3), np.uint8),
           "labels": ((h, w), np.int32), "points_weak": ((n, 3), np.float32),
           "points_strong": ((n, 3), np.float32), "points_rgb": ((n, 3), np.float32),
           "points_label": ((n,), np.int32), "points_confidence": ((n,), np.float32),
           "points_valid": ((n,), np.bool_), "points_pixel": ((n,), np.int32)}
  kwargs = dict(graphdefs=graphdefs, txs=txs,
                config=SegObjectiveConfig(**config.objective.to_dict()))
  label = (f"{config.pipeline.num_points} points, SegFormer depths "
           f"{tuple(config.model2d.depths)}, PTv3 enc "
           f"{tuple(config.model3d.enc_depths)} dec {tuple(config.model3d.dec_depths)}, PTv3 "
           f"remat {config.model3d.remat}")
  return seg_train_step, kwargs, jax.eval_shape(init_state), batch, label


def worker(trainer: str, depth: int, points: int = 0) -> list[dict]:
  """In a process with n simulated devices: one row per fsdp size (nothing executed)."""
  sys.path.insert(0, str(REPO))
  import jax
  import numpy as np
  from jaxrecon.train import sharding
  step, kwargs, abstract, sample, label = {"reliev3r": reliev3r_case,
                                           "rewis3d": rewis3d_case}[trainer](depth, points)
  n = jax.device_count()
  state_bytes = sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(abstract))
  rows = []
  for fsdp in _fsdp_sizes(n):
    mesh = sharding.make_mesh(fsdp=fsdp)
    state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                         abstract, sharding.state_shardings(abstract, mesh))
    batch = {k: jax.ShapeDtypeStruct((n, *shape), dtype, sharding=sharding.batch_sharding(mesh))
             for k, (shape, dtype) in sample.items()}
    began = time.perf_counter()
    compiled = step.lower(state, batch, mesh=mesh, **kwargs).compile()
    seconds = time.perf_counter() - began
    m = compiled.memory_analysis()
    row = dict(trainer=trainer, model=label, devices=n, data=n // fsdp, fsdp=fsdp,
               state_gib=state_bytes / GIB, compile_s=seconds,
               argument_gib=m.argument_size_in_bytes / GIB, output_gib=m.output_size_in_bytes / GIB,
               alias_gib=m.alias_size_in_bytes / GIB, temp_gib=m.temp_size_in_bytes / GIB,
               code_mib=m.generated_code_size_in_bytes / 2.0 ** 20)
    row["peak_gib"] = row["argument_gib"] + row["output_gib"] - row["alias_gib"] + row["temp_gib"]
    print(json.dumps(row), flush=True)
    rows.append(row)
  return rows


def run_subprocess(trainer: str, devices: int, depth: int, points: int,
                   timeout: float) -> list[dict]:
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  cmd = [sys.executable, __file__, "--worker", trainer, "--depth", str(depth),
         "--points", str(points)]
  began = time.perf_counter()
  try:
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
  except subprocess.TimeoutExpired as e:
    out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
    print(f"{trainer} x{devices}: timed out after {timeout:.0f} s", file=sys.stderr)
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]
  print(f"{trainer} x{devices}: {time.perf_counter() - began:.0f} s", file=sys.stderr)
  if done.returncode:
    print(done.stderr[-3000:], file=sys.stderr)
  return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def table(rows: list[dict]) -> str:
  head = ("| trainer | devices | data x fsdp | state GiB (total) | argument GiB | output GiB | "
          "aliased GiB | temp GiB | code MiB | peak GiB | peak / data-parallel | compile s |")
  lines = [head, "|" + "---|" * 12]
  ref = {(r["trainer"], r["devices"]): r["peak_gib"] for r in rows if r["fsdp"] == 1}
  for r in rows:
    ratio = r["peak_gib"] / ref[(r["trainer"], r["devices"])] if (r["trainer"], r["devices"]) \
        in ref else float("nan")
    lines.append(f"| {r['trainer']} | {r['devices']} | {r['data']} x {r['fsdp']} | "
                 f"{r['state_gib']:.2f} | {r['argument_gib']:.3f} | {r['output_gib']:.3f} | "
                 f"{r['alias_gib']:.3f} | {r['temp_gib']:.2f} | {r['code_mib']:.1f} | "
                 f"{r['peak_gib']:.2f} | {ratio:.3f} | {r['compile_s']:.0f} |")
  return "\n".join(lines)


def write_table(path: pathlib.Path, text: str, marker: str = "<!-- table -->") -> None:
  """Puts `text` between the two markers of `path` (created with just the table if absent)."""
  old = path.read_text() if path.exists() else f"{marker}\n{marker}\n"
  head, _, rest = old.partition(marker)
  _, _, tail = rest.partition(marker)
  path.write_text(f"{head}{marker}\n{text}\n{marker}{tail}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--worker", choices=("reliev3r", "rewis3d"))
  parser.add_argument("--depth", type=int, default=4)
  parser.add_argument("--points", type=int, default=0,
                      help="Rewis3d points per sample (0: the paper's 120k)")
  parser.add_argument("--full", action="store_true", help="paper depths (overrides --depth)")
  parser.add_argument("--devices", default="1,8,64")
  parser.add_argument("--trainers", default="reliev3r,rewis3d")
  parser.add_argument("--timeout", type=float, default=3600.0, help="per subprocess, seconds")
  parser.add_argument("--out", default=str(HERE / "bench_sharding_memory"))
  parser.add_argument("--report-only", action="store_true",
                      help="rewrite the table from the stored rows, measure nothing")
  args = parser.parse_args()
  depth = 0 if args.full else args.depth
  if args.worker:
    worker(args.worker, depth, args.points)
    return
  out = pathlib.Path(args.out)
  # Rows of a (trainer, device count) this run does not measure are kept from the last run at the
  # same depth, so a long study can be run in parts (a full-depth run of both trainers takes more
  # than an hour on 2 cores); --report-only only rewrites the table from them.
  runs = [] if args.report_only else [(t, int(d)) for t in args.trainers.split(",")
                                      for d in args.devices.split(",")]
  last = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").exists() \
      else {}
  rows = [r for r in last.get("rows", []) if (r["trainer"], r["devices"]) not in runs] \
      if last.get("depth") == depth else []
  for trainer, n in runs:
    rows += run_subprocess(trainer, n, depth, args.points, args.timeout)
    # Written after every subprocess: a long run stopped later keeps what it measured.
    out.with_suffix(".json").write_text(json.dumps(dict(depth=depth, rows=rows), indent=1))
  rows.sort(key=lambda r: (r["trainer"], r["devices"], r["fsdp"]))
  models = sorted({f"{r['trainer']}: {r['model']}" for r in rows})
  text = table(rows)
  print(text)
  out.with_suffix(".json").write_text(json.dumps(dict(depth=depth, models=models, rows=rows),
                                                 indent=1))
  write_table(out.with_suffix(".md"), text + "\n\nModels: " + "; ".join(models) + ".")
  print(f"wrote {out.with_suffix('.json')}; models: {'; '.join(models)}")


if __name__ == "__main__":
  main()
