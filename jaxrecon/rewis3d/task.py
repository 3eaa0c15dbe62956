"""Rewis3d as a task of the training engine: the EMA baseline and Rewis3d, same budget and data.

train_segmentation(config, workdir): segmentation cache (sparse labels + a reconstruction of each
scene) -> for each method of config.methods ("ema": the 2D mean teacher alone; "rewis3d": 2D + 3D
mean teachers with cross-modal consistency) a `jaxrecon.train.engine.run` of a `Rewis3dTask` in
<workdir>/<method> (grain pipeline, models, one optimiser per branch, resume, sharded steps,
periodic held-out mIoU, checkpoints) -> final held-out mIoU of each method in
<workdir>/summary.{json,md}.
"""
from __future__ import annotations

import json
import pathlib
from typing import Mapping

import jax
import numpy as np
import optax
from flax import nnx

from jaxrecon.errors import UserError
from jaxrecon.evaluate.segmentation import (confusion_matrix, plot_segmentation,
                                            segmentation_report, sliding_window_logits)
from jaxrecon.models.point_transformer import PointTransformer, PointTransformerConfig
from jaxrecon.models.segformer import SegFormer, SegFormerConfig
from jaxrecon.optim.ema import ema_teacher, rewis3d_decay, teacher_params
from jaxrecon.rewis3d.pipeline import (SegNpzSource, SegPipelineConfig, make_seg_dataset,
                                       seg_eval_samples)
from jaxrecon.rewis3d.records import (RECONS, SOURCES, build_seg_jobs, label_options,
                                      seg_provenance)
from jaxrecon.rewis3d.step import (SegObjectiveConfig, SegState, create_seg_state, predict_2d,
                                   seg_train_step)
from jaxrecon.train import engine
from jaxrecon.train import config_check, datasplit
from jaxrecon.train.progress import MetricsLog, log
from jaxrecon.train.runs import restore_latest
from jaxrecon.train.workdir import checkpoint_steps, write_text_atomic

METHODS = ("ema", "rewis3d")


def methods_of(config) -> list[str]:
  methods = [m.strip() for m in config.methods.split(",") if m.strip()]
  bad = [m for m in methods if m not in METHODS]
  if not methods or bad:
    raise ValueError(f"methods: expected a comma-separated subset of {METHODS}, got "
                     f"{config.methods!r}")
  return methods


def _seg_jobs(settings):
  if settings["recon"] == "ffrm":
    from jaxrecon.rewis3d.ffrm_records import build_ffrm_jobs  # noqa: PLC0415 (loads a checkpoint)
    return build_ffrm_jobs(settings)
  if settings["recon"] == "mvs":
    from jaxrecon.rewis3d.mvs_records import build_mvs_jobs  # noqa: PLC0415 (the fitting stack)
    return build_mvs_jobs(settings)
  return build_seg_jobs(settings)


def seg_scene_files(config, workdir: pathlib.Path) -> tuple[list, list]:
  """(train, held-out) segmentation records of a run (see `datasplit.cached_split`)."""
  return datasplit.cached_split(config, workdir, _seg_jobs, seg_provenance)


def build_seg(config, method: str):
  """(graphdefs, txs, fresh-state function) for a method: tuples of (branch, value) pairs, the
  hashable form the jitted step takes."""
  names = ("2d", "3d") if method == "rewis3d" else ("2d",)
  model_fns = {"2d": lambda rngs: SegFormer(SegFormerConfig(**config.model2d.to_dict()), rngs=rngs),
               "3d": lambda rngs: PointTransformer(
                   PointTransformerConfig(**config.model3d.to_dict()), rngs=rngs)}
  optim = {"2d": config.optim2d.to_dict(), "3d": config.optim3d.to_dict()}
  # Teacher = EMA of the student, chained last so it sees the parameters after the update.
  txs = {n: optax.chain(engine.make_optimizer(optim[n], config.steps),
                        ema_teacher(rewis3d_decay(config.ema_decay))) for n in names}

  def init_state():
    rngs = nnx.Rngs(config.seed)
    return create_seg_state({n: model_fns[n](rngs) for n in names}, txs)[1]

  graphdefs = {n: nnx.graphdef(nnx.eval_shape(lambda n=n: model_fns[n](nnx.Rngs(0))))
               for n in names}
  return tuple(graphdefs.items()), tuple(txs.items()), init_state


def predict_logits(graphdef, params, rest, image, window, num_classes) -> np.ndarray:
  """(h, w, k) logits of one full frame by sliding windows of the training crop size."""
  def fn(tiles):
    return np.asarray(predict_2d(params, rest, tiles, graphdef=graphdef))
  stride = (max(window[0] // 2, 1), max(window[1] // 2, 1))
  return sliding_window_logits(fn, image, window=window, stride=stride, num_classes=num_classes)


def evaluate_2d(graphdef, params, rest, samples, *, window, num_classes, class_names,
                figures=None, max_figures=4) -> dict:
  """mIoU, per-class IoU and pixel accuracy of a 2D model on (image, dense labels) samples;
  optionally writes image / prediction / ground truth figures of the first samples."""
  conf = np.zeros((num_classes, num_classes), np.int64)
  for i, (image, dense) in enumerate(samples):
    pred = predict_logits(graphdef, params, rest, image, window, num_classes).argmax(-1)
    conf += confusion_matrix(pred, dense, num_classes)
    if figures is not None and i < max_figures:
      plot_segmentation(image, pred, dense, pathlib.Path(figures) / f"view{i}.png",
                        class_names=class_names)
  return segmentation_report(conf, class_names)


def _summary_line(report: Mapping) -> str:
  return f"mIoU {100 * report['miou']:.2f}  pixel acc {100 * report['pixel_accuracy']:.2f}"


class Rewis3dTask:
  """The engine's view of one method's run (see `jaxrecon.train.engine.Task`)."""

  def __init__(self, config, method: str, workdir: pathlib.Path, train_paths, eval_paths):
    self.config, self.method, self.workdir = config, method, workdir
    self.label = f"{method} "
    self.train_paths, self.eval_paths = train_paths, eval_paths
    self.pipeline = SegPipelineConfig(**config.pipeline.to_dict())
    self.graphdefs, self.txs, self.init_state = build_seg(config, method)
    self.graphdef2d = dict(self.graphdefs)["2d"]
    self.objective = SegObjectiveConfig(**config.objective.to_dict())
    self.samples = seg_eval_samples(eval_paths)
    self.eval_kwargs = dict(window=(self.pipeline.height, self.pipeline.width),
                            num_classes=config.model2d.num_classes,
                            class_names=list(config.class_names))

  def dataset(self):
    return make_seg_dataset(SegNpzSource(self.train_paths), self.pipeline,
                            process_index=jax.process_index(), process_count=jax.process_count())

  def step(self, state, batch, mesh):
    return seg_train_step(state, batch, graphdefs=self.graphdefs, txs=self.txs,
                          config=self.objective, mesh=mesh)

  def describe(self) -> str:
    return (f"{len(self.train_paths)} train / {len(self.eval_paths)} held-out scenes "
            f"({len(self.samples)} views)")

  def evaluate(self, state):
    b = state.branches["2d"]
    report = evaluate_2d(self.graphdef2d, b.params, b.rest, self.samples, **self.eval_kwargs)
    return {"miou": report["miou"]}, _summary_line(report)

  def finish(self, state, *, ran_last_step: bool, metrics_log: MetricsLog) -> dict:
    """Final held-out report of the student and its teacher (always, also on a finished run)."""
    del ran_last_step
    final = final_report(state, self.graphdef2d, self.samples, self.workdir / "eval",
                         self.eval_kwargs)
    metrics_log.write(int(state.step), {"miou": final["student"]["miou"],
                                        "teacher_miou": final["teacher"]["miou"]}, prefix="eval/")
    log(f"{self.method} final (step {int(state.step)}): student "
        f"{_summary_line(final['student'])}; teacher {_summary_line(final['teacher'])}")
    return final


def train_method(config, method: str, workdir: pathlib.Path, train_paths, eval_paths,
                 *, records=None) -> dict:
  """Trains (or resumes) one method in `workdir`; returns its final held-out report. Its
  config.json (read by `python -m jaxrecon.segment`) and `records` are written once its state is
  restored or created."""
  workdir.mkdir(parents=True, exist_ok=True)
  with config.unlocked():
    mine = config.copy_and_resolve_references()
  mine.methods = method
  records = {workdir / "config.json": mine.to_json_best_effort(indent=2, sort_keys=True),
             **(records or {})}
  return engine.run(Rewis3dTask(config, method, workdir, train_paths, eval_paths), config,
                    workdir, records=records)


def final_report(state: SegState, graphdef2d, samples, out: pathlib.Path, eval_kwargs) -> dict:
  """Held-out report of the 2D student (the paper's number) and its EMA teacher; writes
  <out>/{metrics.json, view*.png}."""
  b = state.branches["2d"]
  out.mkdir(parents=True, exist_ok=True)
  student = evaluate_2d(graphdef2d, b.params, b.rest, samples, figures=out, **eval_kwargs)
  teacher = evaluate_2d(graphdef2d, teacher_params(b.opt_state), b.rest, samples, **eval_kwargs)
  report = {"step": int(state.step), "views": len(samples), "student": student,
            "teacher": teacher}
  if jax.process_index() == 0:
    write_text_atomic(out / "metrics.json", json.dumps(report, indent=2))
  return report


def evaluate_segmentation(config, workdir, *, allow_untrained: bool = False) -> dict:
  """Held-out report of the latest checkpoint of every method; writes <workdir>/<method>/eval and
  <workdir>/summary.{json,md}. A method without a checkpoint is refused (before anything is
  written) unless allow_untrained, which reports its freshly initialised model."""
  workdir = pathlib.Path(workdir)
  check_config(config)
  untrained = [m for m in methods_of(config)
               if not checkpoint_steps(workdir / m / "checkpoints")]
  if untrained and not allow_untrained:
    raise UserError(f"{workdir}: no checkpoint of {', '.join(untrained)} to evaluate (train it "
                    f"first, or pass --allow_untrained to evaluate the untrained model)")
  _, eval_paths = seg_scene_files(config, workdir)
  samples = seg_eval_samples(eval_paths)
  pipeline = SegPipelineConfig(**config.pipeline.to_dict())
  eval_kwargs = dict(window=(pipeline.height, pipeline.width),
                     num_classes=config.model2d.num_classes, class_names=list(config.class_names))
  results = {}
  for method in methods_of(config):
    graphdefs, _, init_state = build_seg(config, method)
    if method in untrained:
      state, origin = init_state(), "untrained"
    else:
      state, step = restore_latest(workdir / method / "checkpoints", init_state)
      origin = f"workdir:{step}"
    results[method] = final_report(state, dict(graphdefs)["2d"], samples,
                                   workdir / method / "eval", eval_kwargs)
    log(f"{method} ({origin}): student {_summary_line(results[method]['student'])}")
  _write_summary(config, workdir, results)
  return results


def summary_markdown(results: Mapping[str, Mapping], class_names) -> str:
  """Markdown table: one row per method, mIoU and per-class IoU of the 2D student (percent)."""
  head = "| method | step | mIoU (student) | mIoU (teacher) | pixel acc | " + \
         " | ".join(class_names) + " |"
  lines = [head, "|" + "---|" * (5 + len(class_names))]
  for method, r in results.items():
    per_class = " | ".join(f"{100 * r['student']['iou'][c]:.1f}"
                           if np.isfinite(r["student"]["iou"][c]) else "-" for c in class_names)
    lines.append(f"| {method} | {r['step']} | {100 * r['student']['miou']:.2f} | "
                 f"{100 * r['teacher']['miou']:.2f} | "
                 f"{100 * r['student']['pixel_accuracy']:.2f} | {per_class} |")
  return "\n".join(lines)


def check_config(config) -> None:
  """Validates a Rewis3d config before anything is built or read (UserError naming the key)."""
  config_check.check_loop(config)
  try:
    methods_of(config)
  except ValueError as e:
    raise UserError(f"config.{e}") from e
  config_check.check_sections(config, {"model2d": SegFormerConfig,
                                       "model3d": PointTransformerConfig,
                                       "objective": SegObjectiveConfig,
                                       "pipeline": SegPipelineConfig})
  if len(config.class_names) != config.model2d.num_classes:
    raise UserError(f"config.class_names: {len(config.class_names)} names, but "
                    f"config.model2d.num_classes={config.model2d.num_classes}")
  if config.data.cache:
    return
  prepare = config.data.prepare
  if prepare.source not in SOURCES:
    raise UserError(f"config.data.prepare.source: expected one of {SOURCES}, got "
                    f"{prepare.source!r}")
  if prepare.recon not in RECONS:
    raise UserError(f"config.data.prepare.recon: expected one of {RECONS}, got "
                    f"{prepare.recon!r}")
  try:
    label_options(prepare.to_dict())
  except ValueError as e:
    raise UserError(f"config.data.prepare.{e}") from e
  if prepare.source == "camvid":
    config_check.require_folder("data.prepare.camvid.root", prepare.camvid.root,
                                "data.prepare.source='camvid'")
  if prepare.recon == "ffrm":
    config_check.require_folder("data.prepare.ffrm.checkpoint", prepare.ffrm.checkpoint,
                                "data.prepare.recon='ffrm' (a Reliev3R run's workdir)")
  if prepare.recon == "mvs":
    from jaxrecon.rewis3d.mvs_records import check_mvs_settings  # noqa: PLC0415
    try:
      check_mvs_settings(prepare.mvs.to_dict())
    except ValueError as e:
      raise UserError(f"config.data.prepare.{e}") from e


def train_segmentation(config, workdir) -> dict:
  """Trains every method of config.methods with the same budget; returns {method: report}.
  Validates the config and its fit with the workdir's runs before building anything."""
  workdir = pathlib.Path(workdir)
  check_config(config)
  engine.open_workdir(config, workdir)
  train_paths, eval_paths = seg_scene_files(config, workdir)
  whole = {workdir / "config.json": config.to_json_best_effort(indent=2, sort_keys=True)}
  results = {m: train_method(config, m, workdir / m, train_paths, eval_paths, records=whole)
             for m in methods_of(config)}
  _write_summary(config, workdir, results)
  return results


def _write_summary(config, workdir: pathlib.Path, results: Mapping) -> None:
  table = summary_markdown(results, list(config.class_names))
  if jax.process_index() == 0:
    write_text_atomic(workdir / "summary.json", json.dumps(results, indent=2))
    write_text_atomic(workdir / "summary.md", table + "\n")
  log(table)
  if set(results) == set(METHODS):
    gain = 100 * (results["rewis3d"]["student"]["miou"] - results["ema"]["student"]["miou"])
    log(f"Rewis3d - EMA baseline: {gain:+.2f} mIoU points (held-out views, seed {config.seed})")
