"""Compile time of the Rewis3d paper train step against model depth (issue #15: compile time that
does not grow with depth).

    python experiments/bench_seg_compile.py [--size 128] [--points 2048]
        [--depths shallow,paper] [--repo PATH --label NAME] [--out experiments/bench_seg_compile]

Lowers and compiles (never runs) the real jitted `rewis3d.step.seg_train_step` of
`configs/rewis3d.py:paper` (SegFormer-B4 + the paper point transformer, bf16, remat; both students
with their gradients, both mean teachers forward, AdamW, EMA) for one sample of size x size pixels
and `points` points, at two depths: "paper" (SegFormer 3-8-27-3 blocks, point transformer encoder
2-2-2-6-2 and decoder 2-2-2-2) and "shallow" (one block per stage and level). Each measurement is
a fresh subprocess with no compilation cache. Image size and point count do not change the
program's structure (only its shapes), so a small sample keeps the measurement short.

--repo runs the same measurement on another checkout of jaxrecon (e.g. a git worktree of an older
commit, for a before/after table) and --label names its rows. Rows accumulate in the .json; the
.md is rewritten from all of them (keeping its "## Reading" section).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shlex
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent

_WORKER = r"""
import json, sys, time
import jax
from configs import rewis3d as rc
from jaxrecon.rewis3d.step import SegObjectiveConfig, seg_train_step
from jaxrecon.rewis3d.task import build_seg
size, points, depth = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
config = rc.get_config("paper")
config.unlock()
config.pipeline.height = config.pipeline.width = size
if depth == "shallow":
  config.model2d.depths = (1, 1, 1, 1)
  config.model3d.enc_depths = (1, 1, 1, 1, 1)
  config.model3d.dec_depths = (1, 1, 1, 1)
h = w = size
k = len(config.class_names)
f32 = lambda *s: jax.ShapeDtypeStruct(s, "float32")
i32 = lambda *s: jax.ShapeDtypeStruct(s, "int32")
b8 = lambda *s: jax.ShapeDtypeStruct(s, "bool")
batch = {"image_strong": f32(1, h, w, 3), "image_weak": f32(1, h, w, 3), "labels": i32(1, h, w),
         "points_strong": f32(1, points, 3), "points_weak": f32(1, points, 3),
         "points_rgb": f32(1, points, 3), "points_valid": b8(1, points),
         "points_label": i32(1, points), "points_pixel": i32(1, points),
         "points_confidence": f32(1, points)}
graphdefs, txs, init_state = build_seg(config, "rewis3d")
state = jax.eval_shape(init_state)
static = dict(graphdefs=graphdefs, txs=txs,
              config=SegObjectiveConfig(**config.objective.to_dict()))
start = time.perf_counter()
lowered = seg_train_step.lower(state, batch, **static)
traced = time.perf_counter()
compiled = lowered.compile()
done = time.perf_counter()
mem = compiled.memory_analysis()
print(json.dumps({"trace_lower_s": traced - start, "compile_s": done - traced,
                  "temp_gib": mem.temp_size_in_bytes / 2**30,
                  "argument_gib": mem.argument_size_in_bytes / 2**30,
                  "segformer_depths": list(config.model2d.depths),
                  "pt_depths": [list(config.model3d.enc_depths),
                                list(config.model3d.dec_depths)]}))
"""


def measure(repo: pathlib.Path, size: int, points: int, depth: str, timeout: float) -> dict:
  env = dict(os.environ, PYTHONPATH=str(repo), JAX_PLATFORMS="cpu",
             JAX_ENABLE_COMPILATION_CACHE="false", JAXRECON_COMPILE_CACHE="off")
  start = time.perf_counter()
  try:
    out = subprocess.run([sys.executable, "-c", _WORKER, str(size), str(points), depth],
                         cwd=repo, env=env, capture_output=True, text=True, timeout=timeout,
                         check=True)
  except subprocess.TimeoutExpired:
    return {"error": f"not compiled after {timeout:.0f} s"}
  except subprocess.CalledProcessError as e:
    return {"error": e.stderr.strip().splitlines()[-1]}
  row = json.loads(out.stdout.strip().splitlines()[-1])
  row["wall_s"] = time.perf_counter() - start
  return row


def commit_of(repo: pathlib.Path) -> str:
  return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True,
                        text=True).stdout.strip() or "?"


def markdown(rows: list, old: str) -> str:
  lines = ["# Compile time of the Rewis3d paper train step against depth (#15)", "",
           "Commands (latest last):", ""]
  for command in dict.fromkeys(r["command"] for r in rows):
    lines.append(f"    {command}")
  lines += ["", __doc__.split("\n\n", 2)[2].split("\n\n--repo")[0].strip(), "",
            "| code | commit | depth | SegFormer blocks | PTv3 blocks (enc / dec) | image | points "
            "| trace + lower s | XLA compile s | temp GiB | date | load before |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    if "error" in r:
      cells = ["-", "-", "-", r["error"], "-"]
    else:
      cells = ["-".join(map(str, r["segformer_depths"])),
               " / ".join("-".join(map(str, d)) for d in r["pt_depths"]),
               f"{r['trace_lower_s']:.1f}", f"{r['compile_s']:.1f}", f"{r['temp_gib']:.2f}"]
    lines.append(f"| {r['label']} | {r['commit']} | {r['depth']} | {cells[0]} | {cells[1]} | "
                 f"{r['size']}^2 | {r['points']} | {cells[2]} | {cells[3]} | {cells[4]} | "
                 f"{r['date']} | {r['load']} |")
  reading = old.split("## Reading", 1)[1] if "## Reading" in old else "\n\n(to be written)\n"
  return "\n".join(lines) + "\n\n## Reading" + reading


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", type=int, default=128)
  parser.add_argument("--points", type=int, default=2048)
  parser.add_argument("--depths", default="shallow,paper")
  parser.add_argument("--repo", default=str(HERE.parent))
  parser.add_argument("--label", default="current")
  parser.add_argument("--timeout", type=float, default=3000.0)
  parser.add_argument("--out", default=str(HERE / "bench_seg_compile"))
  args = parser.parse_args()
  out = pathlib.Path(args.out)
  rows = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(
      ".json").exists() else []
  repo = pathlib.Path(args.repo).resolve()
  command = "python experiments/bench_seg_compile.py " + shlex.join(sys.argv[1:])
  for depth in args.depths.split(","):
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    row = measure(repo, args.size, args.points, depth, args.timeout)
    row.update(label=args.label, commit=commit_of(repo), depth=depth, size=args.size,
               points=args.points, command=command, load=load,
               date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    print(row, flush=True)
    rows.append(row)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
  old = out.with_suffix(".md").read_text() if out.with_suffix(".md").exists() else ""
  out.with_suffix(".md").write_text(markdown(rows, old))


if __name__ == "__main__":
  main()
