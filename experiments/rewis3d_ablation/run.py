"""Rewis3d ablation on the synthetic world: the paper's ablations, same budget and batches each.

Usage:
  python experiments/rewis3d_ablation/run.py [--out runs/seg_ablation] [--steps 400] [--seeds 0,1,2]
      [--only ema,dual] [--report-only]

Every variant is `configs/rewis3d.py:demo` trained for one method ("ema" = the 2D mean teacher
alone, "rewis3d" = both branches with cross-modal consistency) with the overrides in VARIANTS, by
the same `jaxrecon.rewis3d.task.train_segmentation` the main command uses. Variants that change
the labels or the reconstruction use their own segmentation cache (<out>/cache-<recon>-<labels>,
built once); all others share the scribble / simulated-reconstruction cache of the demo. The
held-out mIoU of the 2D student (and of its EMA teacher) is appended to <out>/results.json as runs
finish (a re-run skips finished variants), then README.md (between the RESULTS markers),
results.json and ablation.png next to this script are regenerated.
"""
from __future__ import annotations

import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

import ablation_table  # noqa: E402
from configs import rewis3d  # noqa: E402
from jaxrecon.data.cache import cache_scenes  # noqa: E402
from jaxrecon.rewis3d.records import build_seg_jobs, seg_provenance  # noqa: E402
from jaxrecon.rewis3d.task import train_segmentation  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent

# name -> (method, overrides of the demo config, what the row tests)
VARIANTS = {
    "ema": ("ema", {}, "EMA baseline: 2D mean teacher alone (scribbles)"),
    "cmc_none": ("rewis3d", {"objective.confidence": "none"}, "+ CMC without filtering"),
    "cmc_prediction": ("rewis3d", {"objective.confidence": "prediction"},
                       "+ CMC, prediction confidence q"),
    "cmc_reconstruction": ("rewis3d", {"objective.confidence": "reconstruction"},
                           "+ CMC, reconstruction confidence c"),
    "dual": ("rewis3d", {}, "Rewis3d: CMC with dual confidence q * c, view-aware sampling"),
    "random_sampling": ("rewis3d", {"pipeline.sampling": "random"},
                        "dual, random instead of view-aware sampling"),
    "target_view_cloud": ("rewis3d", {"pipeline.context": "target_view"},
                          "dual, the scene's cloud restricted to the target view's points"),
    "gt_3d": ("rewis3d", {"data.prepare.recon": "gt"},
              "dual, ground-truth depth and poses (confidence 1) instead of the reconstruction"),
    "points_ema": ("ema", {"data.prepare.label_kind": "points"}, "EMA baseline, point labels"),
    "points_dual": ("rewis3d", {"data.prepare.label_kind": "points"}, "Rewis3d, point labels"),
    "coarse_ema": ("ema", {"data.prepare.label_kind": "coarse"}, "EMA baseline, coarse labels"),
    "coarse_dual": ("rewis3d", {"data.prepare.label_kind": "coarse"}, "Rewis3d, coarse labels"),
    # The class-balanced cross-modal term, chosen on the validation split (../rewis3d_labels,
    # rows *_balance); the rows above keep the paper's unbalanced term.
    "balance": ("rewis3d", {"objective.cmc_balance": True},
                "dual, cross-modal term averaged per pseudo-class (scribbles)"),
    "points_balance": ("rewis3d", {"data.prepare.label_kind": "points",
                                   "objective.cmc_balance": True},
                       "Rewis3d, class-balanced cross-modal term, point labels"),
    "coarse_balance": ("rewis3d", {"data.prepare.label_kind": "coarse",
                                   "objective.cmc_balance": True},
                       "Rewis3d, class-balanced cross-modal term, coarse labels"),
    # The rows above ran before the models scanned their blocks (other initial weights for the
    # same seed): the baseline and the paper's term again, at the code of the balance rows.
    "ema_rerun": ("ema", {}, "EMA baseline, rerun at the code of the balance rows (scribbles)"),
    "dual_rerun": ("rewis3d", {}, "dual (paper's unbalanced term), rerun at the code of the "
                                  "balance rows"),
}


def pin_paper_term(variants: dict) -> None:
  """Rows that leave objective.cmc_balance unset train the paper's unbalanced term (the default of
  configs/rewis3d.py changed after they ran): pins it in their overrides."""
  for method, overrides, _ in variants.values():
    if method == "rewis3d":
      overrides.setdefault("objective.cmc_balance", False)


pin_paper_term(VARIANTS)
COLUMNS = (("miou", "mIoU student (%)", ".2f"), ("teacher_miou", "mIoU teacher (%)", ".2f"),
           ("pixel_accuracy", "pixel acc (%)", ".2f"), ("seconds", "time (s)", ".0f"))


def make_config(method: str, overrides: dict, *, steps: int, seed: int):
  """`configs/rewis3d.py:demo` training one method ("ema" / "rewis3d") with dotted overrides."""
  config = rewis3d.get_config("demo")
  with config.unlocked():
    config.steps = steps
    config.seed = seed
    config.methods = method
    config.eval_every = 0
    config.checkpoint_every = steps
  return ablation_table.override(config, overrides)


def ensure_cache(config, out: pathlib.Path) -> None:
  """Points config.data.cache at the shared cache of its (reconstruction, label kind, label options
  other than the rule's defaults)."""
  settings = config.data.prepare.to_dict()
  provenance = seg_provenance(settings)
  changed = provenance.get("label_options", {}).get(settings["label_kind"], {})
  folder = out / "-".join([f"cache-{settings['recon']}-{settings['label_kind']}",
                           *(f"{k}{v}" for k, v in sorted(changed.items()))])
  report = cache_scenes(build_seg_jobs(settings), folder, provenance=provenance, progress=True)
  if report.failed:
    raise RuntimeError(f"{folder}: scenes failed: {report.failed}")
  config.data.cache = str(folder)


def run_segmentation(name: str, method: str, overrides: dict, *, out: pathlib.Path, steps: int,
                     seed: int) -> dict:
  """Trains one row in <out>/<name>-s<seed> and returns its results.json row (mIoU in percent of
  the 2D student and its EMA teacher on the run's held-out views)."""
  config = make_config(method, overrides, steps=steps, seed=seed)
  ensure_cache(config, out)
  start = time.perf_counter()
  report = train_segmentation(config, out / f"{name}-s{seed}")
  final = report[config.methods]
  return {"variant": name, "seed": seed, "steps": steps,
          "seconds": time.perf_counter() - start,
          "miou": 100 * final["student"]["miou"], "teacher_miou": 100 * final["teacher"]["miou"],
          "pixel_accuracy": 100 * final["student"]["pixel_accuracy"],
          "iou": final["student"]["iou"],
          # mIoU is the mean over the classes present in the held-out views (IoU not nan)
          "miou_valid": int(sum(np.isfinite(v) for v in final["student"]["iou"].values())),
          "miou_total": len(final["student"]["iou"])}


def run_variant(name: str, args) -> dict:
  method, overrides, _ = VARIANTS[name]
  return run_segmentation(name, method, overrides, out=pathlib.Path(args.out), steps=args.steps,
                          seed=args.seed)


# (variant, reference) pairs compared seed by seed: each method against its label kind's EMA
# baseline, each confidence filter against none, the sampling / cloud / geometry rows against dual.
PAIRS = [("cmc_none", "ema"), ("cmc_prediction", "ema"), ("cmc_reconstruction", "ema"),
         ("dual", "ema"), ("cmc_prediction", "cmc_none"), ("cmc_reconstruction", "cmc_none"),
         ("dual", "cmc_none"), ("dual", "cmc_prediction"), ("dual", "cmc_reconstruction"),
         ("random_sampling", "dual"), ("target_view_cloud", "dual"),
         ("gt_3d", "dual"), ("points_dual", "points_ema"), ("coarse_dual", "coarse_ema"),
         ("balance", "ema"), ("balance", "dual"), ("points_balance", "points_ema"),
         ("points_balance", "points_dual"), ("coarse_balance", "coarse_ema"),
         ("coarse_balance", "coarse_dual"), ("balance", "ema_rerun"), ("balance", "dual_rerun"),
         ("dual_rerun", "ema_rerun")]
PAIR_METRICS = (("miou", "mIoU student", ".2f", True), ("teacher_miou", "mIoU teacher", ".2f", True))


def report(rows: list) -> None:
  descriptions = {name: what for name, (_, _, what) in VARIANTS.items()}
  ablation_table.report(rows, descriptions, COLUMNS,
                        (("miou", "held-out mIoU of the 2D student (%)"),), HERE,
                        {"ema": "0.6", "points_ema": "0.6", "coarse_ema": "0.6", "dual": "tab:blue"},
                        unit="classes", pairs=PAIRS, metrics=PAIR_METRICS,
                        footer="Per-class IoU of the 2D student (%, mean over seeds):\n\n"
                        + ablation_table.class_table(rows, list(VARIANTS)))


def main():
  args = ablation_table.arguments(__doc__, ROOT / "runs" / "seg_ablation", 400).parse_args()
  descriptions = {name: what for name, (_, _, what) in VARIANTS.items()}
  ablation_table.run_seeds(args, descriptions, lambda name: run_variant(name, args), report,
                           folder=HERE)


if __name__ == "__main__":
  main()
