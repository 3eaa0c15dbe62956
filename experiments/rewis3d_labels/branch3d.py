"""What the 3D branch learns from each label kind: the 3D and 2D students scored at the same points.

Usage:
  python experiments/rewis3d_labels/branch3d.py [--out runs/seg_labels] [--steps 400]
      [--variants scribbles_dual,points_dual,coarse_dual]

The hypothesis under test (README, coarse and point rows): at lambda 0.1 the cross-modal term pulls
the 2D student towards a 3D branch that is worse on the classes the labels under-represent. For
every finished run of the label study (<out>/<variant>-s<seed>/<method>, trained by `run.py`),
each VALIDATION view is sampled as the trainer samples it (`make_seg_sample`, one fixed
random stream per (scene, view), so every run of a geometry sees the same points), with the scene's
cloud lifted from the DENSE labels so each point carries its true class. Three predictors are
scored on the points that link to a pixel of the crop (the only points the cross-modal terms
use): the 3D student, the 3D teacher (what L_C_2D trains the 2D student on) and the 2D student at
the point's pixel; an EMA run (no 3D branch) gives the 2D student alone, the counterfactual. Per class: IoU, and the share of the points each predicts as that class next
to the true share, so a branch that over-predicts the labels' dominant class shows as a share
above the truth.

Writes the tables between the BRANCH3D markers of README.md and the per-run numbers to
branch3d.json next to this script (merged: variants not scored in this call keep their numbers).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

import ablation_table  # noqa: E402
from rewis3d_ablation.run import ensure_cache, make_config  # noqa: E402
from rewis3d_labels.run import VALIDATION, VARIANTS  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
PREDICTORS = ("3d_student", "3d_teacher", "2d_student")


def validation_samples(config, out: pathlib.Path) -> list[dict]:
  """The trainer's samples of every validation view (fixed random stream per view), from clouds
  lifted with the dense labels: points_label is each point's true class (255: unknown)."""
  from jaxrecon.data.cache import read_npz
  from jaxrecon.rewis3d.pipeline import SegPipelineConfig, lift_record, make_seg_sample
  from jaxrecon.rewis3d.records import build_seg_jobs
  from jaxrecon.train.datasplit import cached_split
  ensure_cache(config, out)
  _, validation = cached_split(config, out, build_seg_jobs)
  pipeline = SegPipelineConfig(**config.pipeline.to_dict())
  samples = []
  for s, path in enumerate(validation):
    record = dict(read_npz(path, "segmentation record"))
    record["sparse_labels"] = record["dense_labels"]
    cloud = lift_record(record, min_confidence_percentile=pipeline.min_confidence_percentile)
    for t in range(record["images"].shape[0]):
      rng = np.random.default_rng([s, t])
      samples.append(make_seg_sample(record, cloud, t, rng, pipeline))
  return samples


def score_run(config, method: str, run_dir: pathlib.Path, samples: list[dict]) -> dict:
  """{predictor: (k, k) confusion matrix} over the linked points of `samples` for the last
  checkpoint of the run's `method` ("ema" runs have the 2D student only)."""
  import jax
  from flax import nnx
  from jaxrecon.evaluate.segmentation import confusion_matrix
  from jaxrecon.optim.ema import teacher_params
  from jaxrecon.rewis3d.step import predict_2d
  from jaxrecon.rewis3d.task import build_seg
  from jaxrecon.train.runs import restore_latest
  graphdefs, _, init_state = build_seg(config, method)
  graphdefs = dict(graphdefs)
  state, _ = restore_latest(run_dir / method / "checkpoints", init_state)
  b2, b3 = state.branches["2d"], state.branches.get("3d")

  @jax.jit
  def forward3d(params, points, rgb, valid):
    return nnx.merge(graphdefs["3d"], params, b3.rest)(points, rgb, valid)

  k = config.model2d.num_classes
  conf = {p: np.zeros((k, k), np.int64) for p in PREDICTORS if b3 is not None or p[:2] == "2d"}
  for sample in samples:
    linked = sample["points_valid"] & (sample["points_pixel"] >= 0)
    truth = sample["points_label"][linked]
    args = (sample["points_weak"][None], sample["points_rgb"][None], sample["points_valid"][None])
    logits2d = np.asarray(predict_2d(b2.params, b2.rest, sample["image_weak"][None],
                                     graphdef=graphdefs["2d"]))[0].reshape(-1, k)
    preds = {"2d_student": logits2d[sample["points_pixel"].clip(0)]}
    if b3 is not None:
      preds["3d_student"] = np.asarray(forward3d(b3.params, *args))[0]
      preds["3d_teacher"] = np.asarray(forward3d(teacher_params(b3.opt_state), *args))[0]
    for name, logits in preds.items():
      conf[name] += confusion_matrix(logits[linked].argmax(-1), truth, k)
  return conf


def tables(results: dict, class_names: list[str]) -> str:
  """Markdown: per variant, IoU and predicted share per class of each predictor (mean over
  seeds), and the true share of the points."""
  from jaxrecon.evaluate.segmentation import segmentation_report
  lines = []
  for variant, runs in results.items():
    seeds = sorted(runs)
    present = [p for p in PREDICTORS if p in runs[seeds[0]]]
    lines += [f"**{variant}** ({VARIANTS[variant][2]}; seeds {', '.join(map(str, seeds))}; "
              f"{int(np.sum(runs[seeds[0]]['2d_student']))} linked points per seed)", "",
              "| class | true share (%) | " + " | ".join(
                  f"{p} IoU | {p} share" for p in present) + " |",
              "|---|---|" + "---|---|" * len(present)]
    confs = {p: [np.asarray(runs[s][p], np.float64) for s in seeds] for p in present}
    truth = confs["2d_student"][0].sum(1)
    iou = {p: np.mean([[segmentation_report(c, class_names)["iou"][n] for n in class_names]
                       for c in confs[p]], 0) for p in present}
    share = {p: np.mean([c.sum(0) / c.sum() for c in confs[p]], 0) for p in present}
    for i, name in enumerate(class_names):
      lines.append(f"| {name} | {100 * truth[i] / truth.sum():.1f} | " + " | ".join(
          f"{100 * iou[p][i]:.1f} | {100 * share[p][i]:.1f}" for p in present) + " |")
    lines.append("| **mIoU** | | " + " | ".join(f"{100 * np.nanmean(iou[p]):.1f} | "
                                                 for p in present) + " |")
    lines.append("")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default=str(ROOT / "runs" / "seg_labels"))
  parser.add_argument("--steps", type=int, default=400)
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--variants", default=",".join(VARIANTS),
                      help="comma-separated variants (default: all; untrained runs are skipped)")
  args = parser.parse_args()
  out = pathlib.Path(args.out)
  results, samples_of = {}, {}
  for variant in args.variants.split(","):
    method, overrides, _ = VARIANTS[variant]
    for seed in map(int, args.seeds.split(",")):
      run_dir = out / f"{variant}-s{seed}"
      if not (run_dir / method / "checkpoints").is_dir():
        print(f"{run_dir}: not trained, skipped")
        continue
      config = make_config(method, {**VALIDATION, **overrides}, steps=args.steps, seed=seed)
      geometry = (config.data.prepare.recon, config.data.prepare.label_kind)
      if geometry not in samples_of:
        samples_of[geometry] = validation_samples(config, out)
      conf = score_run(config, method, run_dir, samples_of[geometry])
      results.setdefault(variant, {})[seed] = {p: c.tolist() for p, c in conf.items()}
      print(f"{variant} seed {seed}: " + ", ".join(
          f"{p} acc {100 * np.trace(c) / max(c.sum(), 1):.1f}%" for p, c in conf.items()))
  if not results:
    raise SystemExit(f"{out}: no trained run of {args.variants}")
  # The variants not scored in this call keep their stored numbers.
  stored = HERE / "branch3d.json"
  results = {**(json.loads(stored.read_text()) if stored.exists() else {}), **results}
  class_names = list(make_config("rewis3d", {}, steps=1, seed=0).class_names)
  text = tables(results, class_names)
  print(text)
  (HERE / "branch3d.json").write_text(json.dumps(results, indent=1))
  ablation_table.write_block(HERE / "README.md", text, marker="BRANCH3D")


if __name__ == "__main__":
  main()
