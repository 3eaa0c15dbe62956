"""The Reliev3R training loop and its evaluation, driven by a config (configs/reliev3r.py).

train(config, workdir): data cache -> grain pipeline -> model + AdamW -> resume (workdir ->
config.init_from -> fresh) -> sharded steps with console progress, metrics.jsonl, periodic
held-out evaluation and Orbax checkpoints of {state, data iterator}. Only process 0 logs.
evaluate_run(config, workdir): the latest checkpoint on the held-out scenes -> metrics.json,
metrics.md and one figure per scene in <workdir>/eval.
"""
from __future__ import annotations

import functools
import pathlib
import sys
from typing import Mapping

import jax
import numpy as np
import optax
from flax import nnx

from jaxrecon.data.cache import cache_scenes
from jaxrecon.data.pipeline import NpzSource, PipelineConfig, make_dataset, make_sample
from jaxrecon.data.records import build_jobs
from jaxrecon.evaluate.metrics import depth_metrics
from jaxrecon.evaluate.report import plot_scene, write_report
from jaxrecon.evaluate.scene import scene_metrics
from jaxrecon.models.config import ModelConfig
from jaxrecon.models.reliev3r import Reliev3R
from jaxrecon.train.checkpoint import Checkpointer, restore_or_init
from jaxrecon.train.objective import ObjectiveConfig
from jaxrecon.train.progress import MetricsLog, Progress, log
from jaxrecon.train.step import (TrainState, check_finite, create_state, make_mesh, replicate,
                                 shard_batch, train_step)


def cached_split(config, workdir: pathlib.Path, build_jobs_fn) -> tuple[list, list]:
  """(train, held-out) .npz paths of a run: config.data.cache, or a cache built in
  <workdir>/cache from config.data.prepare by build_jobs_fn(settings) -> jobs; the last
  config.data.num_eval_scenes files (sorted by name) are held out."""
  if config.data.cache:
    folder = pathlib.Path(config.data.cache)
  else:
    folder = workdir / "cache"
    settings = config.data.prepare.to_dict()
    report = cache_scenes(build_jobs_fn(settings), folder, provenance=settings,
                          progress=jax.process_index() == 0)
    if report.failed:
      raise RuntimeError(f"{folder}: scenes failed: {report.failed}")
  paths = sorted(folder.glob("*.npz"))
  held_out = config.data.num_eval_scenes
  if len(paths) <= held_out:
    raise ValueError(f"{folder}: {len(paths)} scenes, need more than {held_out} held out")
  return paths[:len(paths) - held_out], paths[len(paths) - held_out:]


def scene_files(config, workdir: pathlib.Path) -> tuple[list, list]:
  """(train, held-out) pseudo-label records of a Reliev3R run (see `cached_split`)."""
  return cached_split(config, workdir, build_jobs)


def make_optimizer(optim: Mapping, steps: int) -> optax.GradientTransformation:
  """Gradient clipping + AdamW with linear warm-up and cosine decay to 1 % over `steps`."""
  if not 0 <= optim["warmup_steps"] < steps:
    raise ValueError(f"optim.warmup_steps ({optim['warmup_steps']}) must be in [0, steps "
                     f"({steps}))")
  schedule = optax.warmup_cosine_decay_schedule(0.0, optim["learning_rate"],
                                                optim["warmup_steps"], max(steps, 1),
                                                end_value=0.01 * optim["learning_rate"])
  return optax.chain(optax.clip_by_global_norm(optim["clip_norm"]),
                     optax.adamw(schedule, weight_decay=optim["weight_decay"]))


def build(config):
  """(model graphdef, optimiser, fresh-state function) of a config."""
  model_config = ModelConfig(**config.model.to_dict())
  tx = make_optimizer(config.optim.to_dict(), config.steps)

  def init_state():
    return create_state(Reliev3R(model_config, rngs=nnx.Rngs(config.seed)), tx)[1]

  graphdef = nnx.graphdef(nnx.eval_shape(lambda: Reliev3R(model_config, rngs=nnx.Rngs(0))))
  return graphdef, tx, init_state


def eval_samples(paths, pipeline: PipelineConfig):
  """One deterministic sample per held-out scene: the first views, full frame, no jitter."""
  cfg = PipelineConfig(**{**pipeline.__dict__, "zoom": (1.0, 1.0), "photometric": 0.0,
                          "view_selection": "window"})
  return [make_sample(NpzSource([p])[0], np.random.default_rng(0), cfg) for p in paths]


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _forward(params, rest, images, *, graphdef):
  return nnx.merge(graphdef, params, rest)(images)


def predict(graphdef, state: TrainState, images):
  """Model outputs for (b, v, h, w, 3) images, as numpy."""
  return jax.device_get(_forward(state.params, state.rest, images, graphdef=graphdef))


def evaluate_samples(graphdef, state, samples) -> dict:
  """Per-scene metrics (depth rel/tau after per-scene scale, RRA/RTA/AUC@30, ATE)."""
  results = {}
  for i, sample in enumerate(samples):
    out = predict(graphdef, state, sample["images"][None])
    depth = out["depth"][0]
    gt_depth = sample["depth"]
    pred_cam_from_world = np.linalg.inv(out["world_from_cam"][0].astype(np.float64))
    row = scene_metrics(pred_cam_from_world, sample["cam_from_world"])
    row.update({f"depth_{k}": v for k, v in
                depth_metrics(depth, gt_depth, gt_depth > 0).items()})
    results[f"scene{i}"] = row
  return results


def _mean(results: dict) -> dict:
  keys = sorted({k for row in results.values() for k in row})
  return {k: float(np.nanmean([row.get(k, np.nan) for row in results.values()])) for k in keys}


def train(config, workdir) -> dict:
  """Trains (or resumes) a run; returns the final held-out evaluation (mean over scenes)."""
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  if jax.process_index() == 0:  # what this run was trained with (read by jaxrecon.reconstruct)
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2, sort_keys=True))
  train_paths, eval_paths = scene_files(config, workdir)
  pipeline = PipelineConfig(**config.pipeline.to_dict())
  dataset = make_dataset(NpzSource(train_paths), pipeline, process_index=jax.process_index(),
                         process_count=jax.process_count())
  data_iter = iter(dataset)
  graphdef, tx, init_state = build(config)
  objective_config = ObjectiveConfig(**config.objective.to_dict())
  checkpointer = Checkpointer(workdir / "checkpoints", keep=config.keep_checkpoints)
  state, origin = restore_or_init(checkpointer, init_state, data_iterator=data_iter,
                                  init_from=config.init_from or None)
  mesh = make_mesh()
  state = replicate(state, mesh)
  samples = eval_samples(eval_paths, pipeline)
  start_step = int(state.step)
  log(f"run {workdir}: {origin}, step {start_step} of {config.steps}, {len(train_paths)} train / "
       f"{len(eval_paths)} held-out scenes, {jax.device_count()} devices")
  metrics_log = MetricsLog(workdir / "metrics.jsonl", start_step)
  progress = Progress(start_step, config.steps)
  final = {}
  for step in range(start_step + 1, config.steps + 1):
    batch = shard_batch(next(data_iter), mesh)
    state, metrics = train_step(state, batch, graphdef=graphdef, tx=tx, config=objective_config)
    metrics = jax.device_get(metrics)
    check_finite(step, metrics)
    if step % config.log_every == 0 or step == config.steps:
      log(progress.line(step, metrics))
      metrics_log.write(step, metrics)
    if config.eval_every and (step % config.eval_every == 0 or step == config.steps):
      final = _mean(evaluate_samples(graphdef, state, samples))
      log(f"eval {step:6d}  " + "  ".join(f"{k} {v:.4g}" for k, v in final.items()))
      metrics_log.write(step, final, prefix="eval/")
    if step % config.checkpoint_every == 0 or step == config.steps:
      checkpointer.save(step, state, data_iter)
  checkpointer.wait()
  metrics_log.close()
  return final


def evaluate_run(config, workdir) -> dict:
  """Evaluates the run's latest checkpoint (or the untrained model if none) on the held-out
  scenes; writes <workdir>/eval/{metrics.json, metrics.md, scene*.png}."""
  workdir = pathlib.Path(workdir)
  _, eval_paths = scene_files(config, workdir)
  graphdef, _, init_state = build(config)
  state, origin = restore_or_init(Checkpointer(workdir / "checkpoints"), init_state)
  samples = eval_samples(eval_paths, PipelineConfig(**config.pipeline.to_dict()))
  results = evaluate_samples(graphdef, state, samples)
  out = workdir / "eval"
  write_report(results, out)
  for (name, _), sample in zip(results.items(), samples):
    pred = predict(graphdef, state, sample["images"][None])
    plot_scene(sample["images"], pred["depth"][0], sample["depth"],
               np.linalg.inv(pred["world_from_cam"][0].astype(np.float64)),
               sample["cam_from_world"], out / f"{name}.png", gt_valid=sample["depth"] > 0,
               intrinsics=sample["intrinsics"], title=f"{name} ({origin})")
  mean = _mean(results)
  print(f"evaluated {origin} on {len(results)} scenes -> {out}: " +
        "  ".join(f"{k} {v:.4g}" for k, v in mean.items()), file=sys.stderr)
  return mean
