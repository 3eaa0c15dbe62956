"""Reliev3R as a task of the training engine, and the evaluation of a run (configs/reliev3r.py).

train(config, workdir): pseudo-label cache -> `jaxrecon.train.engine.run` of a `Reliev3RTask`
(grain pipeline, model + AdamW, sharded steps, held-out evaluation, checkpoints, resume).
evaluate_run(config, workdir): the latest checkpoint on the held-out scenes -> metrics.json,
metrics.md and one figure per scene in <workdir>/eval.
The held-out evaluation reports what the records allow (`jaxrecon.reliev3r.heldout`): depth and
pose metrics where they carry ground truth, the reprojection of held-out tracks always.
"""
from __future__ import annotations

import functools
import pathlib
import sys

import jax
import numpy as np
from flax import nnx

from jaxrecon.errors import UserError
from jaxrecon.evaluate.metrics import depth_metrics
from jaxrecon.evaluate.report import plot_scene, summarize, write_report
from jaxrecon.evaluate.scene import scene_metrics
from jaxrecon.models.config import ModelConfig
from jaxrecon.models.reliev3r import Reliev3R
from jaxrecon.reliev3r import heldout
from jaxrecon.reliev3r.objective import ObjectiveConfig
from jaxrecon.reliev3r.pipeline import NpzSource, PipelineConfig, make_dataset, make_sample
from jaxrecon.reliev3r.records import DEPTH_EXPERTS, SOURCES, TRACKERS, build_jobs, provenance
from jaxrecon.reliev3r.step import TrainState, create_state, train_step
from jaxrecon.train import engine
from jaxrecon.train import config_check, datasplit
from jaxrecon.train.progress import MetricsLog
from jaxrecon.train.runs import restore_latest
from jaxrecon.train.workdir import checkpoint_steps


def scene_files(config, workdir: pathlib.Path) -> tuple[list, list]:
  """(train, held-out) pseudo-label records of a Reliev3R run (see `datasplit.cached_split`)."""
  return datasplit.cached_split(config, workdir, build_jobs, provenance)


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


def scene_names(paths) -> list[str]:
  """Held-out scene names in reports: the cache file names without .npz."""
  return [pathlib.Path(p).stem for p in paths]


def evaluate_samples(graphdef, state, samples, names) -> dict:
  """{scene name: metrics} with what each record allows: pose metrics (RRA/RTA/AUC@30, ATE) where
  it has poses, depth rel/tau (after per-scene scale) where it has depth, and always the
  reprojection of its held-out tracks through the predicted geometry (`heldout`)."""
  results = {}
  for name, sample in zip(names, samples):
    out = predict(graphdef, state, sample["images"][None])
    depth, world_from_cam = out["depth"][0], out["world_from_cam"][0].astype(np.float64)
    row = {}
    if "cam_from_world" in sample and "depth" in sample:
      # Poses and depth: the protocol's point-map rel / tau too (both depths back-projected with
      # their own cameras); depth_rel / depth_tau as depth_metrics gives them.
      gt_depth = sample["depth"]
      row.update(scene_metrics(np.linalg.inv(world_from_cam), sample["cam_from_world"], depth,
                               gt_depth, gt_depth > 0, intrinsics=sample["intrinsics"]))
    elif "cam_from_world" in sample:
      row.update(scene_metrics(np.linalg.inv(world_from_cam), sample["cam_from_world"]))
    elif "depth" in sample:
      gt_depth = sample["depth"]
      row.update({f"depth_{k}": v for k, v in
                  depth_metrics(depth, gt_depth, gt_depth > 0).items()})
    row.update(heldout.track_reprojection(depth, world_from_cam, sample["intrinsics"],
                                          sample["tracks"], sample["visibility"]))
    results[name] = row
  return results


def _mean(results: dict) -> dict:
  """Mean over scenes of each metric, NaN / missing left out (`summarize`; `write_report` records
  how many scenes each mean is over)."""
  return dict(sorted(summarize(results).items()))


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
    self.names = scene_names(eval_paths)

  def dataset(self):
    return make_dataset(NpzSource(self.train_paths), self.pipeline,
                        process_index=jax.process_index(), process_count=jax.process_count())

  def step(self, state, batch, mesh):
    return train_step(state, batch, graphdef=self.graphdef, tx=self.tx, config=self.objective,
                      mesh=mesh)

  def describe(self) -> str:
    return (f"{len(self.train_paths)} train / {len(self.eval_paths)} held-out scenes; "
            f"{heldout.describe_report(self.samples)}")

  def evaluate(self, state):
    mean = _mean(evaluate_samples(self.graphdef, state, self.samples, self.names))
    return mean, _metrics_text(mean)

  def finish(self, state, *, ran_last_step: bool, metrics_log: MetricsLog) -> dict:
    """The held-out evaluation of the last step (mean over scenes), if this call trained it."""
    if not (self.config.eval_every and ran_last_step):
      return {}
    mean, text = self.evaluate(state)
    engine.log_evaluation(self, int(state.step), mean, text, metrics_log)
    return mean


def check_config(config) -> None:
  """Validates a Reliev3R config before anything is built or read (UserError naming the key):
  the engine's fields, the model / objective / pipeline sections, and the data to build the
  cache from when no data.cache is given."""
  config_check.check_loop(config)
  config_check.check_sections(config, {"model": ModelConfig, "objective": ObjectiveConfig,
                                       "pipeline": PipelineConfig})
  if config.data.cache:
    return
  prepare = config.data.prepare
  for key, allowed in (("source", SOURCES), ("tracker", TRACKERS),
                       ("depth_expert", DEPTH_EXPERTS)):
    if prepare[key] not in allowed:
      raise UserError(f"config.data.prepare.{key}: expected one of {allowed}, got "
                      f"{prepare[key]!r}")
  held_out = config.data.num_eval_scenes
  if prepare.source == "folder":
    root = config_check.require_folder("data.prepare.folder.root", prepare.folder.root,
                                       "data.prepare.source='folder'")
    scenes = [p for p in root.iterdir() if (p / "images").is_dir()]
    if len(scenes) <= held_out:
      raise UserError(f"config.data.prepare.folder.root={root}: {len(scenes)} scene folders "
                      f"(a scene is a sub-folder with an images/ folder), but "
                      f"config.data.num_eval_scenes={held_out} are held out, so at least "
                      f"{held_out + 1} are needed")
  elif prepare.synthetic.num_scenes <= held_out:
    raise UserError(f"config.data.prepare.synthetic.num_scenes={prepare.synthetic.num_scenes}: "
                    f"must exceed config.data.num_eval_scenes={held_out}")


def train(config, workdir) -> dict:
  """Trains (or resumes) a run; returns the final held-out evaluation (mean over scenes).
  Validates the config and its fit with the workdir's run before building anything; config.json
  (what jaxrecon.reconstruct reads) is written once the state is restored or created."""
  workdir = pathlib.Path(workdir)
  check_config(config)
  engine.open_workdir(config, workdir)
  train_paths, eval_paths = scene_files(config, workdir)
  record = config.to_json_best_effort(indent=2, sort_keys=True)
  return engine.run(Reliev3RTask(config, train_paths, eval_paths), config, workdir,
                    records={workdir / "config.json": record})


def evaluate_run(config, workdir, *, allow_untrained: bool = False) -> dict:
  """Evaluates the run's latest checkpoint on the held-out scenes; writes
  <workdir>/eval/{metrics.json, metrics.md, <scene>.png}. Without a checkpoint it refuses
  (before writing anything) unless allow_untrained, which evaluates the freshly initialised model."""
  workdir = pathlib.Path(workdir)
  check_config(config)
  has_checkpoint = bool(checkpoint_steps(workdir / "checkpoints"))
  if not has_checkpoint and not allow_untrained:
    raise UserError(f"{workdir}: no checkpoint to evaluate (train it first, or pass "
                    f"--allow_untrained to evaluate the untrained model)")
  _, eval_paths = scene_files(config, workdir)
  graphdef, _, init_state = build(config)
  if has_checkpoint:
    state, step = restore_latest(workdir / "checkpoints", init_state)
    origin = f"workdir:{step}"
  else:
    state, origin = init_state(), "untrained"
  samples = eval_samples(eval_paths, PipelineConfig(**config.pipeline.to_dict()))
  results = evaluate_samples(graphdef, state, samples, scene_names(eval_paths))
  out = workdir / "eval"
  write_report(results, out)
  for name, sample in zip(results, samples):
    pred = predict(graphdef, state, sample["images"][None])
    gt_depth = sample.get("depth")
    plot_scene(sample["images"], pred["depth"][0], gt_depth,
               np.linalg.inv(pred["world_from_cam"][0].astype(np.float64)),
               sample.get("cam_from_world"), out / f"{name}.png",
               gt_valid=None if gt_depth is None else gt_depth > 0,
               intrinsics=sample["intrinsics"], title=f"{name} ({origin})")
  mean = _mean(results)
  print(f"evaluated {origin} on {len(results)} scenes -> {out}: " + _metrics_text(mean),
        file=sys.stderr)
  return mean
