"""Benchmark: the train step of both paper configs (speed, compile time, memory, MFU), each loss's
share of the step, and the input pipeline at paper shapes.

    python experiments/bench_train_step.py [--scale auto|paper|reduced] [--steps 3]
        [--trainers reliev3r,rewis3d]

One command for every machine: on a GPU or TPU `--scale auto` runs the paper configs as they are
(one scene of 8 x 518^2 views per device for Reliev3R, one 512^2 image + 120k points for Rewis3d);
on a CPU it runs them "reduced": the paper widths, image sizes and view counts, but one
transformer block (2 layers) for the FFRM, and for Rewis3d one block per SegFormer-B4 stage and
per point-transformer level with 16k points, because a paper-depth step takes many minutes on
2 cores (the paper Rewis3d step had not finished one step in 22 minutes there). Writes
experiments/bench_train_step.{md,json} (suffixed with the backend when it is not the CPU); the
table goes between the .md's RESULTS markers, the hand-written notes around it are kept.

Columns:
- steps/s, images/s: median over `--steps` timed steps after the compiling one (images = views
  for Reliev3R, frames for Rewis3d).
- compile s: lowering + XLA compilation of the step, timed separately.
- memory: XLA's memory analysis of the compiled step (arguments + outputs + temporaries, per
  device; aliased, i.e. donated, buffers counted once).
- MFU: the matmul FLOPs of one step (`jaxrecon.flops.matmul_flops` of the step's jaxpr: every
  dot_general and convolution, 2 FLOPs per multiply-add, scanned layers times their count, the
  recomputed (remat) forward included), divided by the step time and by the device's peak,
  measured in the same run as the best of square matmuls in the model's compute dtype. XLA's
  `cost_analysis()["flops"]` is kept in the JSON ("xla_flops") but not used: it counts a scanned
  stack of layers as one layer. Rows measured before 2026-12-07 (one block per stage, so nothing
  scanned more than once) carry XLA's count, marked "(XLA)".
- losses: each objective's forward + backward (with respect to the network outputs) at the same
  shapes, alone, as a fraction of the measured step (goal < 5 %).
- pipeline: Reliev3R samples (8 views, 518^2, 2048 tracks) per second of one worker process, and
  the worker processes a host needs to feed the measured step rate.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import pathlib
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from configs import reliev3r as reliev3r_config  # noqa: E402
from configs import rewis3d as rewis3d_config  # noqa: E402
from jaxrecon.data.cache import cache_scenes  # noqa: E402
from jaxrecon.flops import matmul_flops  # noqa: E402
from jaxrecon.losses.segmentation import cmc_loss, student_teacher_loss  # noqa: E402
from jaxrecon.reliev3r.objective import ObjectiveConfig, objective  # noqa: E402
from jaxrecon.reliev3r.pipeline import NpzSource, PipelineConfig, make_dataset  # noqa: E402
from jaxrecon.reliev3r.records import build_jobs, default_expert_settings  # noqa: E402
from jaxrecon.reliev3r.step import train_step  # noqa: E402
from jaxrecon.reliev3r.task import build, predict  # noqa: E402
from jaxrecon.rewis3d.step import SegObjectiveConfig, seg_train_step  # noqa: E402
from jaxrecon.rewis3d.task import build_seg  # noqa: E402
from ablation_table import write_block  # noqa: E402  (experiments/, the script's folder)
from timing import median_seconds  # noqa: E402


def matmul_peak(dtype, n: int) -> float:
  """Best FLOP/s of an n x n matmul in `dtype` (2 n^3 FLOPs)."""
  a = jax.random.normal(jax.random.key(0), (n, n), dtype)
  b = jax.random.normal(jax.random.key(1), (n, n), dtype)
  f = jax.jit(lambda x, y: x @ y)
  f(a, b).block_until_ready()
  best = min(median_seconds(lambda: f(a, b).block_until_ready(), 3) for _ in range(3))
  return 2 * n**3 / best


def compiled_step(jitted, state, batch, **static):
  """(compiled executable, compile seconds, flops, memory bytes, XLA's flops) of a jitted step;
  flops from the jaxpr (scanned layers counted times their number), see the module docstring."""
  count = matmul_flops(jax.make_jaxpr(functools.partial(jitted, **static))(state, batch))
  if count.uncounted_loops:
    print(f"warning: {count.uncounted_loops} while loop(s) counted once", flush=True)
  start = time.perf_counter()
  compiled = jitted.lower(state, batch, **static).compile()
  seconds = time.perf_counter() - start
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  mem = compiled.memory_analysis()
  total = (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
           - mem.alias_size_in_bytes)
  return compiled, seconds, count.flops, total, float(cost.get("flops", float("nan")))


def run_steps(compiled, state, batch, steps: int) -> float:
  """Median seconds of `steps` calls after one warm-up call (the state is donated: rebound)."""
  state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def reliev3r_records(folder: pathlib.Path, size: int, num_scenes: int = 2) -> list:
  """Procedural-world scenes of 8 views at size x size with simulated experts (cached .npz)."""
  settings = {**default_expert_settings(), "source": "synthetic", "tracker": "simulated",
              "depth_expert": "simulated",
              "synthetic": dict(num_scenes=num_scenes, seed=0, num_views=8, height=size,
                                width=size, path="orbit")}
  settings["simulated_tracker"]["num_tracks"] = 4096
  cache_scenes(build_jobs(settings), folder, provenance=settings, progress=False)
  return sorted(folder.glob("*.npz"))


def reliev3r_row(args, paths, peaks) -> tuple[dict, dict]:
  config = reliev3r_config.get_config("paper")
  config.unlock()
  if args.scale == "reduced":
    config.model.depth = 1
  pipeline = PipelineConfig(**{**config.pipeline.to_dict(), "batch_size": jax.device_count(),
                               "worker_count": 0})
  batch = next(iter(make_dataset(NpzSource(paths), pipeline)))
  graphdef, tx, init_state = build(config)
  state = jax.jit(init_state)()
  objective_config = ObjectiveConfig(**config.objective.to_dict())
  static = dict(graphdef=graphdef, tx=tx, config=objective_config)
  compiled, compile_s, flops, memory, xla_flops = compiled_step(train_step, state, batch,
                                                                **static)
  seconds = run_steps(compiled, state, batch, args.steps)
  images = pipeline.batch_size * pipeline.num_views
  row = dict(trainer="Reliev3R", scale=args.scale, layers=2 * config.model.depth,
             shapes=f"{pipeline.batch_size} x {pipeline.num_views} x {pipeline.height}^2",
             steps_per_s=1 / seconds, images_per_s=images / seconds, compile_s=compile_s,
             memory_gib=memory / 2**30, flops=flops, xla_flops=xla_flops, flops_source="jaxpr",
             mfu=flops / seconds / peaks[config.model.dtype])

  # Each objective variant alone: forward + backward with respect to the network outputs.
  model_outputs = predict(graphdef, jax.jit(init_state)(), batch["images"])
  outputs = {k: jnp.asarray(model_outputs[k]) for k in ("depth", "confidence", "world_from_cam")}
  losses = {}
  for form in ("angular", "pixel", "triangulation", "l2_3d"):
    cfg = dataclasses.replace(objective_config, registration=form)
    grad = jax.jit(jax.grad(lambda o, b, cfg=cfg: objective(o, b, cfg)[0]))
    jax.block_until_ready(grad(outputs, batch))
    t = median_seconds(lambda: jax.block_until_ready(grad(outputs, batch)), 5)
    losses[f"Reliev3R objective, registration={form}"] = t / seconds
  return row, losses


def seg_batch(config, num_points: int, batch_size: int, key) -> dict:
  """A batch with the layout and dtypes of jaxrecon.rewis3d.pipeline at the config's shapes
  (random values: the step's cost does not depend on them)."""
  h, w, k = config.pipeline.height, config.pipeline.width, len(config.class_names)
  keys = jax.random.split(key, 8)
  image = jax.random.uniform(keys[0], (batch_size, h, w, 3))
  points = jax.random.normal(keys[1], (batch_size, num_points, 3))
  return {"image_strong": image, "image_weak": image,
          "labels": jax.random.randint(keys[2], (batch_size, h, w), -1, k),
          "points_strong": points, "points_weak": points,
          "points_rgb": jax.random.uniform(keys[3], (batch_size, num_points, 3)),
          "points_valid": jnp.ones((batch_size, num_points), bool),
          "points_label": jax.random.randint(keys[4], (batch_size, num_points), -1, k),
          "points_pixel": jax.random.randint(keys[5], (batch_size, num_points), -1, h * w),
          "points_confidence": jax.random.uniform(keys[6], (batch_size, num_points))}


def rewis3d_row(args, peaks) -> tuple[dict, dict]:
  config = rewis3d_config.get_config("paper")
  config.unlock()
  num_points = 16_384 if args.scale == "reduced" else config.pipeline.num_points
  if args.scale == "reduced":     # one block per stage / level, as the FFRM's one block
    config.model2d.depths = tuple(min(d, 1) for d in config.model2d.depths)
    for key in ("enc_depths", "dec_depths"):
      config.model3d[key] = tuple(min(d, 1) for d in config.model3d[key])
  batch_size = jax.device_count()
  batch = seg_batch(config, num_points, batch_size, jax.random.key(0))
  graphdefs, txs, init_state = build_seg(config, "rewis3d")
  objective_config = SegObjectiveConfig(**config.objective.to_dict())
  state = jax.jit(init_state)()
  static = dict(graphdefs=graphdefs, txs=txs, config=objective_config)
  compiled, compile_s, flops, memory, xla_flops = compiled_step(seg_train_step, state, batch,
                                                                **static)
  seconds = run_steps(compiled, state, batch, args.steps)
  blocks = (f"SegFormer-B4 {sum(config.model2d.depths)} + PTv3 "
            f"{sum(config.model3d.enc_depths) + sum(config.model3d.dec_depths)} blocks")
  row = dict(trainer="Rewis3d", scale=args.scale, layers=blocks,
             shapes=f"{batch_size} x {config.pipeline.height}^2 + {num_points} points",
             steps_per_s=1 / seconds, images_per_s=batch_size / seconds, compile_s=compile_s,
             memory_gib=memory / 2**30, flops=flops, xla_flops=xla_flops, flops_source="jaxpr",
             mfu=flops / seconds / peaks["float32"])

  name = "Rewis3d student-teacher 2D + 3D + both cross-modal terms"
  return row, {name: rewis3d_losses_seconds(config, batch, num_points) / seconds}


def rewis3d_losses_seconds(config, batch, num_points: int) -> float:
  """Median seconds of the Rewis3d losses alone: student-teacher in 2D and 3D and both cross-modal
  terms, forward + backward with respect to the student logits. Every array is an argument of
  the jitted function: closed-over arrays are constants that XLA folds at compile time (it did,
  and the first measurement read 0.01 % of the step)."""
  objective_config = SegObjectiveConfig(**config.objective.to_dict())
  batch_size = batch["labels"].shape[0]
  k = len(config.class_names)
  hw = config.pipeline.height * config.pipeline.width
  keys = jax.random.split(jax.random.key(1), 4)
  s2, t2 = (jax.random.normal(x, (batch_size, hw, k)) for x in keys[:2])
  s3, t3 = (jax.random.normal(x, (batch_size, num_points, k)) for x in keys[2:])

  def losses_fn(s2, s3, t2, t3, batch):
    pixel = jnp.clip(batch["points_pixel"], 0, hw - 1)[..., None]
    linked = batch["points_valid"] & (batch["points_pixel"] >= 0)
    conf = batch["points_confidence"]
    total = student_teacher_loss(s2, t2, batch["labels"].reshape(batch_size, hw),
                                 tau=objective_config.tau)[0]
    total += student_teacher_loss(s3, t3, batch["points_label"], tau=objective_config.tau,
                                  valid=batch["points_valid"])[0]
    options = dict(normalise=objective_config.cmc_normalise,
                   balance_classes=objective_config.cmc_balance)
    total += cmc_loss(jnp.take_along_axis(s2, pixel, 1), t3, conf, linked, **options)[0]
    return total + cmc_loss(s3, jnp.take_along_axis(t2, pixel, 1), conf, linked, **options)[0]

  grad = jax.jit(jax.grad(losses_fn, argnums=(0, 1)))
  jax.block_until_ready(grad(s2, s3, t2, t3, batch))
  return median_seconds(lambda: jax.block_until_ready(grad(s2, s3, t2, t3, batch)), 5)


def pipeline_rate(paths, samples: int) -> float:
  """Reliev3R samples/s of one process (worker_count=0) at paper shapes, after one warm-up."""
  config = reliev3r_config.get_config("paper")
  pipeline = PipelineConfig(**{**config.pipeline.to_dict(), "batch_size": 1, "worker_count": 0})
  it = iter(make_dataset(NpzSource(paths), pipeline))
  next(it)
  start = time.perf_counter()
  for _ in range(samples):
    next(it)
  return samples / (time.perf_counter() - start)


def recount(result: dict) -> None:
  """Replaces the XLA FLOP count of stored reduced-scale rows by the jaxpr count (tracing only: the
  step's program, not its measured time, changes) and scales their MFU by the same factor."""
  from bench_sharding_memory import reliev3r_case, rewis3d_case   # the steps' abstract inputs
  for name, case, points in (("reliev3r", reliev3r_case, 0), ("rewis3d", rewis3d_case, 16_384)):
    row = result["trainers"].get(name, {}).get("row")
    if not row or row.get("flops_source") == "jaxpr" or row["scale"] != "reduced":
      continue
    step, static, state, sample, _ = case(1, points)
    batch = {k: jax.ShapeDtypeStruct((1, *shape), dtype) for k, (shape, dtype) in sample.items()}
    flops = matmul_flops(jax.make_jaxpr(functools.partial(step, **static))(state, batch)).flops
    print(f"{name}: {row['flops'] / 1e9:.0f} GFLOP (XLA) -> {flops / 1e9:.0f} (jaxpr)", flush=True)
    row.update(mfu=row["mfu"] * flops / row["flops"], xla_flops=row["flops"], flops=flops,
               flops_source="jaxpr")


def markdown(runs, pipeline, args) -> str:
  """runs: [{"row", "losses", "peaks"}] of each trainer (each measured with its own peak)."""
  rows = [run["row"] for run in runs]
  losses = {k: v for run in runs for k, v in run["losses"].items()}
  lines = [f"# Train step of the paper configs on {jax.devices()[0].device_kind} "
           f"({jax.default_backend()}, {jax.device_count()} device(s), scale={args.scale})", "",
           "Commands: " + "; ".join(
               f"{r['trainer']}: `python experiments/bench_train_step.py --trainers="
               f"{r['trainer'].lower()} --scale={a['scale']} --steps={a['steps']}`"
               for r, a in ((run["row"], run.get("args", vars(args))) for run in runs)), "",
           "Peak (best square matmul, measured in the same run as each row): " + "; ".join(
               f"{r['trainer']}: " + ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s"
                                                for k, v in run["peaks"].items())
               for r, run in zip(rows, runs)), "",
           "| trainer | scale | layers | batch | steps/s | images/s | compile s | memory GiB "
           "| GFLOP/step | MFU |", "|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['trainer']} | {r['scale']} | {r['layers']} | {r['shapes']} | "
                 f"{r['steps_per_s']:.4f} | {r['images_per_s']:.3f} | {r['compile_s']:.1f} | "
                 f"{r['memory_gib']:.2f} | {r['flops'] / 1e9:.0f}"
                 f"{'' if r.get('flops_source') == 'jaxpr' else ' (XLA)'} | "
                 f"{100 * r['mfu']:.1f} % |")
  lines += ["", "| loss (forward + backward, alone) | share of the step |", "|---|---|"]
  lines += [f"| {name} | {100 * share:.2f} % |" for name, share in losses.items()]
  if rows and rows[0]["trainer"] == "Reliev3R":
    rate = rows[0]["steps_per_s"] * jax.device_count()          # scenes per second
    lines += ["", f"Input pipeline (Reliev3R, 8 views of 518^2, 2048 tracks): "
              f"{pipeline:.2f} samples/s per worker process. At the measured step rate "
              f"({rate:.4f} samples/s) a host needs {math.ceil(rate / pipeline)} worker "
              f"process(es); a host whose accelerators train S samples/s needs "
              f"ceil(S / {pipeline:.2f})."]
  return "\n".join(lines) + "\n"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--scale", choices=("auto", "paper", "reduced"), default="auto")
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--pipeline_samples", type=int, default=20)
  parser.add_argument("--trainers", default="reliev3r,rewis3d",
                      help="comma-separated; a trainer left out keeps its row of the last run")
  parser.add_argument("--recount", action="store_true",
                      help="recount the FLOPs of the stored CPU rows (see recount), re-measure the "
                      "Rewis3d losses against the stored step time, rewrite the table")
  args = parser.parse_args()
  if args.recount:
    out = REPO / "experiments" / "bench_train_step"
    result = json.loads(out.with_suffix(".json").read_text())
    recount(result)
    rewis3d = result["trainers"].get("rewis3d")
    if rewis3d and rewis3d["row"]["scale"] == "reduced":   # its losses were constant-folded
      config = rewis3d_config.get_config("paper")
      batch = seg_batch(config, 16_384, 1, jax.random.key(0))
      share = rewis3d_losses_seconds(config, batch, 16_384) * rewis3d["row"]["steps_per_s"]
      rewis3d["losses"] = {name: share for name in rewis3d["losses"]}
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    runs = [result["trainers"][t] for t in ("reliev3r", "rewis3d") if t in result["trainers"]]
    write_block(out.with_suffix(".md"), markdown(runs, result["pipeline_samples_per_s"],
                                                 argparse.Namespace(**result["args"])).rstrip("\n"))
    return
  if args.scale == "auto":
    args.scale = "reduced" if jax.default_backend() == "cpu" else "paper"
  n = 2048 if jax.default_backend() == "cpu" else 8192
  peaks = {"float32": matmul_peak(jnp.float32, n), "bfloat16": matmul_peak(jnp.bfloat16, n)}
  print("peaks (GFLOP/s):", {k: round(v / 1e9, 1) for k, v in peaks.items()}, flush=True)
  suffix = "" if jax.default_backend() == "cpu" else f"_{jax.default_backend()}"
  out = REPO / "experiments" / f"bench_train_step{suffix}"
  # Each trainer's results are kept per trainer, so one can be re-measured alone.
  result = (json.loads(out.with_suffix(".json").read_text())
            if out.with_suffix(".json").exists() else {"trainers": {}})
  result.update(peaks=peaks, args=vars(args))
  trainers = args.trainers.split(",")
  if "reliev3r" in trainers:
    with tempfile.TemporaryDirectory() as tmp:
      paths = reliev3r_records(pathlib.Path(tmp), 560)
      result["pipeline_samples_per_s"] = pipeline_rate(paths, args.pipeline_samples)
      print(f"pipeline: {result['pipeline_samples_per_s']:.2f} samples/s per worker", flush=True)
      row, losses = reliev3r_row(args, paths, peaks)
    result["trainers"]["reliev3r"] = dict(row=row, losses=losses, peaks=peaks, args=vars(args))
    print(row, losses, flush=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
  if "rewis3d" in trainers:
    row, losses = rewis3d_row(args, peaks)
    result["trainers"]["rewis3d"] = dict(row=row, losses=losses, peaks=peaks, args=vars(args))
    print(row, losses, flush=True)
  out.with_suffix(".json").write_text(json.dumps(result, indent=1))
  runs = [result["trainers"][t] for t in ("reliev3r", "rewis3d") if t in result["trainers"]]
  text = markdown(runs, result.get("pipeline_samples_per_s", float("nan")), args)
  md = out.with_suffix(".md")
  if not md.exists():    # the notes around the generated block are written by hand
    md.write_text("<!-- RESULTS START -->\n<!-- RESULTS END -->\n")
  write_block(md, text.rstrip("\n"))
  print(text)


if __name__ == "__main__":
  main()
