"""Why Rewis3d loses to its EMA baseline with point and coarse labels: a study on a validation split.

Usage:
  python experiments/rewis3d_labels/run.py [--out runs/seg_labels] [--steps 400] [--seeds 0,1,2]
      [--only points_ema,points_dual] [--report-only]

The scribble-trained demo gains over the EMA baseline; with point or coarse labels it did not
(experiments/rewis3d_ablation). Each row here changes one thing that could explain it, against
the same label kind's baseline, and is trained by `jaxrecon.rewis3d.task.train_segmentation`
exactly as in the ablation (`run_segmentation` there). Choices are made on a VALIDATION split:
only the demo's 16 training scenes are built (seeds 1000-1015) and the last 4 of them are
evaluated; the demo's held-out scenes (1016-1019) are never built or looked at here.

Before training, the script measures the label density each kind gives the two branches (labelled
pixels of a 2D crop, labelled points of a 3D sample), from the same pipeline the trainer uses.
"""
from __future__ import annotations

import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

import ablation_table  # noqa: E402
from rewis3d_ablation.run import (ensure_cache, make_config, pin_paper_term,  # noqa: E402
                                  run_segmentation)

HERE = pathlib.Path(__file__).resolve().parent

# The validation split: the demo's first 16 scenes (its training scenes), the last 4 evaluated.
VALIDATION = {"data.prepare.synthetic.num_scenes": 16, "data.num_eval_scenes": 4}
POINTS = {"data.prepare.label_kind": "points"}
COARSE = {"data.prepare.label_kind": "coarse"}
MARGIN3 = {"data.prepare.label_options.coarse.margin": 3.0}
# The label sets whose density is measured (overrides of the demo config).
LABEL_SETS = {"scribbles": {}, "points": POINTS, "coarse": COARSE,
              "coarse, 3 px margin": {**COARSE, **MARGIN3}}

# name -> (method, overrides of the demo config, the question the row answers)
VARIANTS = {
    "scribbles_ema": ("ema", {}, "EMA baseline, scribbles (the demo's labels)"),
    "scribbles_dual": ("rewis3d", {}, "Rewis3d (demo recipe), scribbles"),
    "scribbles_lambda0.03": ("rewis3d", {"objective.cmc_weight": 0.03},
                             "lambda 0.03, scribbles: does the lower weight cost the scribble gain?"),
    "points_ema": ("ema", POINTS, "EMA baseline, point labels"),
    "points_dual": ("rewis3d", POINTS, "Rewis3d (demo recipe), point labels"),
    "points_base250": ("rewis3d", {**POINTS, "objective.base_steps": 250},
                       "longer base stage (250 of 400 steps): is the 3D branch too young?"),
    "points_lambda0.03": ("rewis3d", {**POINTS, "objective.cmc_weight": 0.03},
                          "lambda 0.03 instead of 0.1: does CMC outweigh the sparse labels?"),
    "points_4096pts": ("rewis3d", {**POINTS, "pipeline.num_points": 4096},
                       "4x the 3D sample (1024 -> 4096 points): too few labelled 3D points?"),
    "points_gt3d": ("rewis3d", {**POINTS, "data.prepare.recon": "gt"},
                    "ground-truth geometry: is it the reconstruction's error?"),
    "coarse_ema": ("ema", COARSE, "EMA baseline, coarse labels"),
    "coarse_dual": ("rewis3d", COARSE, "Rewis3d (demo recipe), coarse labels"),
    "coarse_lambda0.03": ("rewis3d", {**COARSE, "objective.cmc_weight": 0.03},
                          "lambda 0.03, coarse labels"),
    "coarse_gt3d": ("rewis3d", {**COARSE, "data.prepare.recon": "gt"},
                    "ground-truth geometry, coarse labels"),
    # A 3 px margin (about the demo's 10 px scaled from 320 to 96 px frames) keeps labels in
    # regions down to about 7 px wide: a label set closer to the pixels' class shares.
    "coarse_margin3_ema": ("ema", {**COARSE, **MARGIN3}, "EMA baseline, coarse labels, 3 px margin"),
    "coarse_margin3_dual": ("rewis3d", {**COARSE, **MARGIN3},
                            "Rewis3d, coarse labels, 3 px margin: is the loss the labels' class "
                            "prior?"),
    # The paper's L_C is a weighted sum: a teacher's low max-probability q lowers the term itself.
    # The recipe's weighted mean (divided by sum q c) keeps its full strength however unsure the
    # other branch's teacher is; cmc_normalise="reconstruction" divides by sum c instead.
    "scribbles_qsum": ("rewis3d", {"objective.cmc_normalise": "reconstruction"},
                       "CMC divided by sum c, not sum q c (q keeps its scale), scribbles"),
    "points_qsum": ("rewis3d", {**POINTS, "objective.cmc_normalise": "reconstruction"},
                    "CMC divided by sum c, not sum q c, point labels"),
    "coarse_qsum": ("rewis3d", {**COARSE, "objective.cmc_normalise": "reconstruction"},
                    "CMC divided by sum c, not sum q c, coarse labels"),
    # The reading above: the 3D branch inherits the labels' class prior and the cross-modal term
    # hands it on through the many entries of its dominant pseudo-class. Balanced, each
    # pseudo-class counts once (objective.cmc_balance).
    "scribbles_balance": ("rewis3d", {"objective.cmc_balance": True},
                          "CMC averaged per pseudo-class (each class counts once), scribbles"),
    "points_balance": ("rewis3d", {**POINTS, "objective.cmc_balance": True},
                       "CMC averaged per pseudo-class, point labels"),
    "coarse_balance": ("rewis3d", {**COARSE, "objective.cmc_balance": True},
                       "CMC averaged per pseudo-class, coarse labels"),
    # The scribble rows above ran before the models scanned their blocks (other initial draws):
    # reruns at the code of the balance rows, so that pairs by seed share initial weights too.
    "scribbles_ema_rerun": ("ema", {}, "EMA baseline, scribbles, rerun at the code of the "
                            "balance rows"),
    "scribbles_dual_rerun": ("rewis3d", {}, "Rewis3d (paper's unbalanced term), scribbles, rerun "
                             "at the code of the balance rows"),
}
pin_paper_term(VARIANTS)
PAIRS = [("scribbles_dual", "scribbles_ema"), ("scribbles_lambda0.03", "scribbles_ema"),
         ("scribbles_lambda0.03", "scribbles_dual"), ("points_dual", "points_ema"), ("points_base250", "points_ema"),
         ("points_lambda0.03", "points_ema"), ("points_4096pts", "points_ema"),
         ("points_gt3d", "points_ema"), ("points_4096pts", "points_dual"),
         ("points_base250", "points_dual"), ("points_lambda0.03", "points_dual"),
         ("points_gt3d", "points_dual"), ("coarse_dual", "coarse_ema"),
         ("coarse_lambda0.03", "coarse_ema"), ("coarse_gt3d", "coarse_ema"),
         ("coarse_lambda0.03", "coarse_dual"), ("coarse_gt3d", "coarse_dual"),
         ("coarse_margin3_dual", "coarse_margin3_ema"), ("coarse_margin3_ema", "coarse_ema"),
         ("scribbles_qsum", "scribbles_ema"), ("scribbles_qsum", "scribbles_dual"),
         ("points_qsum", "points_ema"), ("points_qsum", "points_dual"),
         ("coarse_qsum", "coarse_ema"), ("coarse_qsum", "coarse_dual"),
         ("scribbles_balance", "scribbles_ema"), ("scribbles_balance", "scribbles_dual"),
         ("points_balance", "points_ema"), ("points_balance", "points_dual"),
         ("coarse_balance", "coarse_ema"), ("coarse_balance", "coarse_dual"),
         ("scribbles_balance", "scribbles_ema_rerun"), ("scribbles_balance", "scribbles_dual_rerun"),
         ("scribbles_dual_rerun", "scribbles_ema_rerun")]
COLUMNS = (("miou", "mIoU student (%)", ".2f"), ("teacher_miou", "mIoU teacher (%)", ".2f"),
           ("pixel_accuracy", "pixel acc (%)", ".2f"), ("seconds", "time (s)", ".0f"))
PAIR_METRICS = (("miou", "mIoU student", ".2f", True),)


def label_density(out: pathlib.Path, samples: int = 64) -> str:
  """Two markdown tables over `samples` training samples of the validation split: per label set
  (LABEL_SETS), labelled pixels per 64x64 crop and labelled points per sample of the 3D branch;
  then per class, its share of the labelled pixels of each set beside its share of all pixels
  (dense truth)."""
  from jaxrecon.evaluate.segmentation import IGNORE_LABEL
  from jaxrecon.rewis3d.pipeline import SegNpzSource, SegPipelineConfig, make_seg_sample
  from jaxrecon.rewis3d.records import build_seg_jobs
  from jaxrecon.train.datasplit import cached_split
  names = list(make_config("ema", {}, steps=1, seed=0).class_names)
  shares, dense = {}, []
  lines = ["| labels | labelled pixels per crop | of the crop (%) | labelled points per 3D "
           "sample | of the valid points (%) |", "|---|---|---|---|---|"]
  for kind, overrides in LABEL_SETS.items():
    config = ablation_table.override(make_config("ema", {}, steps=1, seed=0),
                                     {**VALIDATION, **overrides})
    ensure_cache(config, out)
    train, _ = cached_split(config, out, build_seg_jobs)
    pipeline = SegPipelineConfig(**config.pipeline.to_dict())
    source = SegNpzSource([str(p) for p in train],
                          min_confidence_percentile=pipeline.min_confidence_percentile)
    rng = np.random.default_rng(0)
    pix, pts, valid, classes = [], [], [], []
    for i in rng.choice(len(source), samples, replace=False):
      element = source[int(i)]
      s = make_seg_sample(element["record"], element["cloud"], element["target_view"], rng,
                          pipeline)
      pix.append(np.sum(s["labels"] != IGNORE_LABEL))
      pts.append(np.sum(s["points_valid"] & (s["points_label"] != IGNORE_LABEL)))
      valid.append(np.sum(s["points_valid"]))
      classes.append(s["labels"][s["labels"] != IGNORE_LABEL])
      if kind == "scribbles":  # the dense truth of the first set's draws
        dense.append(s["dense_labels"][s["dense_labels"] != IGNORE_LABEL])
    crop = pipeline.height * pipeline.width
    lines.append(f"| {kind} | {np.mean(pix):.0f} | {100 * np.mean(pix) / crop:.1f} | "
                 f"{np.mean(pts):.0f} | {100 * np.sum(pts) / np.sum(valid):.1f} |")
    shares[kind] = np.bincount(np.concatenate(classes), minlength=len(names))[:len(names)]
  shares["all pixels"] = np.bincount(np.concatenate(dense), minlength=len(names))[:len(names)]
  lines += ["", "| class | " + " | ".join(f"{k} (% of labelled)" for k in shares
                                        if k in LABEL_SETS)
            + " | all pixels (% of them) |",
            "|---" * (len(shares) + 1) + "|"]
  for c, name in enumerate(names):
    lines.append(f"| {name} | " + " | ".join(f"{100 * v[c] / max(v.sum(), 1):.1f}"
                                             for v in shares.values()) + " |")
  return "\n".join(lines)


def main():
  args = ablation_table.arguments(__doc__, ROOT / "runs" / "seg_labels", 400).parse_args()
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  descriptions = {name: what for name, (_, _, what) in VARIANTS.items()}
  if not args.report_only:
    density = label_density(out)
    print(density)
    ablation_table.write_block(HERE / "README.md", density, marker="DENSITY")

  def publish(rows):
    ablation_table.report(rows, descriptions, COLUMNS,
                          (("miou", "validation mIoU of the 2D student (%)"),), HERE,
                          {"scribbles_ema": "0.6", "points_ema": "0.6", "coarse_ema": "0.6",
                           "coarse_margin3_ema": "0.6"}, unit="classes",
                          pairs=PAIRS, metrics=PAIR_METRICS,
                          footer="Per-class IoU of the 2D student (%, mean over seeds):\n\n"
                          + ablation_table.class_table(rows, list(VARIANTS)))

  def run(name):
    method, overrides, _ = VARIANTS[name]
    return run_segmentation(name, method, {**VALIDATION, **overrides}, out=out,
                            steps=args.steps, seed=args.seed)

  ablation_table.run_seeds(args, descriptions, run, publish, folder=HERE)


if __name__ == "__main__":
  main()
