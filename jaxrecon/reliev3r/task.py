"""Reliev3R as a task of the training engine, and the evaluation of a run (configs/reliev3r.py).

train(config, workdir): pseudo-label cache -> `jaxrecon.train.engine.run` of a `Reliev3RTask`
(grain pipeline, model + AdamW, sharded steps, held-out evaluation, checkpoints, resume).
evaluate_run(config, workdir): the latest checkpoint on the held-out scenes -> metrics.json,
metrics.md and one figure per scene in <workdir>/eval.
"""
from __future__ import annotations

import functools
import pathlib
import sys

import jax
import numpy as np
from flax import nnx

from jaxrecon.evaluate.metrics import depth_metrics
from jaxrecon.evaluate.report import plot_scene, write_report
from jaxrecon.evaluate.scene import scene_metrics
from jaxrecon.models.config import ModelConfig
from jaxrecon.models.reliev3r import Reliev3R
from jaxrecon.reliev3r.objective import ObjectiveConfig
from jaxrecon.reliev3r.pipeline import NpzSource, PipelineConfig, make_dataset, make_sample
from jaxrecon.reliev3r.records import build_jobs
from jaxrecon.reliev3r.step import TrainState, create_state, train_step
from jaxrecon.train import engine
from jaxrecon.train.checkpoint import Checkpointer, restore_or_init
from jaxrecon.train.progress import MetricsLog


def scene_files(config, workdir: pathlib.Path) -> tuple[list, list]:
  """(train, held-out) pseudo-label records of a Reliev3R run (see `engine.cached_split`)."""
  return engine.cached_split(config, workdir, build_jobs)


def build(config):
  """(model graphdef, optimiser, fresh-state function) of a config."""
  model_config = ModelConfig(**config.model.to_dict())
  tx = engine.make_optimizer(config.optim.to_dict(), config.steps)

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


def _metrics_text(metrics: dict) -> str:
  return "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())


class Reliev3RTask:
  """The engine's view of a Reliev3R run (see `jaxrecon.train.engine.Task`)."""
  label = ""

  def __init__(self, config, train_paths, eval_paths):
    self.config = config
    self.train_paths, self.eval_paths = train_paths, eval_paths
    self.pipeline = PipelineConfig(**config.pipeline.to_dict())
    self.graphdef, self.tx, self.init_state = build(config)
    self.objective = ObjectiveConfig(**config.objective.to_dict())
    self.samples = eval_samples(eval_paths, self.pipeline)

  def dataset(self):
    return make_dataset(NpzSource(self.train_paths), self.pipeline,
                        process_index=jax.process_index(), process_count=jax.process_count())

  def step(self, state, batch):
    return train_step(state, batch, graphdef=self.graphdef, tx=self.tx, config=self.objective)

  def describe(self) -> str:
    return f"{len(self.train_paths)} train / {len(self.eval_paths)} held-out scenes"

  def evaluate(self, state):
    mean = _mean(evaluate_samples(self.graphdef, state, self.samples))
    return mean, _metrics_text(mean)

  def finish(self, state, *, ran_last_step: bool, metrics_log: MetricsLog) -> dict:
    """The held-out evaluation of the last step (mean over scenes), if this call trained it."""
    if not (self.config.eval_every and ran_last_step):
      return {}
    mean, text = self.evaluate(state)
    engine.log_evaluation(self, int(state.step), mean, text, metrics_log)
    return mean


def train(config, workdir) -> dict:
  """Trains (or resumes) a run; returns the final held-out evaluation (mean over scenes)."""
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  if jax.process_index() == 0:  # what this run was trained with (read by jaxrecon.reconstruct)
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2, sort_keys=True))
  train_paths, eval_paths = scene_files(config, workdir)
  return engine.run(Reliev3RTask(config, train_paths, eval_paths), config, workdir)


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
  print(f"evaluated {origin} on {len(results)} scenes -> {out}: " + _metrics_text(mean),
        file=sys.stderr)
  return mean
