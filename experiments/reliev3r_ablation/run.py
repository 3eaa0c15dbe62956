"""Reliev3R ablation on the synthetic world: which loss terms and weights matter, same budget each.

Usage:
  python experiments/reliev3r_ablation/run.py [--out runs/ablation] [--steps 300] [--seeds 0,1,2]
      [--only full,depth_only] [--report-only]

Every variant is `configs/reliev3r.py:demo` with a few fields overridden (listed in VARIANTS), trained
by the same `jaxrecon.reliev3r.task.train` the main command uses, on one shared pseudo-label cache
(SIFT tracks + the simulated monocular expert) and evaluated on the same held-out scenes. Results
are appended to <out>/results.json as they finish (a re-run skips variants already there with the
same steps and seed), then the table and the plot are regenerated next to this script:
README.md (between the RESULTS markers) and ablation.png.
"""
from __future__ import annotations

import json
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

import ablation_table  # noqa: E402
from configs import reliev3r  # noqa: E402
from jaxrecon.reliev3r.task import evaluate_run, train  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent

# name -> (overrides of the demo config, what the row tests)
VARIANTS = {
    "untrained": ({}, "the initial model (no step)"),
    "full": ({}, "paper recipe: ambiguity-aware depth (alpha 1) + angular registration (lambda 0.5)"),
    "depth_only": ({"objective.registration": "off"}, "relative depth loss only"),
    "registration_only": ({"objective.depth_loss": "off"}, "registration loss only"),
    "form_triangulation": ({"objective.registration": "triangulation"},
                           "registration by DLT triangulation + reprojection"),
    "form_pixel": ({"objective.registration": "pixel"},
                   "pixel reprojection of back-projected points (rejected by the paper)"),
    "form_l2_3d": ({"objective.registration": "l2_3d"},
                   "3D L2 between back-projected points (rejected by the paper)"),
    "alpha_0.2": ({"objective.alpha": 0.2}, "alpha 0.2"),
    "alpha_0.5": ({"objective.alpha": 0.5}, "alpha 0.5"),
    "alpha_2.0": ({"objective.alpha": 2.0}, "alpha 2.0"),
    "no_ambiguity": ({"objective.depth_loss": "plain"}, "depth loss with W = 1 (no ambiguity)"),
    "supervised": ({"objective.supervised": True},
                   "fully supervised sibling (ground-truth depth and poses)"),
}
METRICS = ("depth_rel", "depth_tau", "points_rel", "points_tau", "auc30", "rra30", "rta30", "ate")


def make_config(overrides: dict, *, steps: int, seed: int, cache: str, num_eval_scenes: int):
  config = reliev3r.get_config("demo")
  with config.unlocked():
    config.steps = steps
    config.seed = seed
    config.data.cache = cache
    config.data.num_eval_scenes = num_eval_scenes
    config.eval_every = steps
    config.checkpoint_every = steps
    config.optim.warmup_steps = min(config.optim.warmup_steps, steps // 4)
  return ablation_table.override(config, overrides)


def build_cache(out: pathlib.Path, num_scenes: int) -> str:
  """The shared pseudo-label cache (built once, as the demo run would)."""
  from jaxrecon.data.cache import cache_scenes
  from jaxrecon.reliev3r.records import build_jobs
  settings = reliev3r.get_config("demo").data.prepare.to_dict()
  settings["synthetic"]["num_scenes"] = num_scenes
  folder = out / "cache"
  report = cache_scenes(build_jobs(settings), folder, provenance=settings, progress=True)
  if report.failed:
    raise RuntimeError(f"{folder}: scenes failed: {report.failed}")
  return str(folder)


def run_variant(name, args, cache) -> dict:
  overrides, _ = VARIANTS[name]
  workdir = pathlib.Path(args.out) / f"{name}-s{args.seed}"
  config = make_config(overrides, steps=args.steps, seed=args.seed, cache=cache,
                       num_eval_scenes=args.eval_scenes)
  start = time.perf_counter()
  if name != "untrained":
    train(config, workdir)
  seconds = time.perf_counter() - start
  # evaluate_run writes eval/metrics.json, which also says over how many held-out scenes each
  # mean is (a scene whose metric is nan is left out of it).
  metrics = evaluate_run(config, workdir, allow_untrained=name == "untrained")
  num_valid = json.loads((workdir / "eval" / "metrics.json").read_text())
  return {"variant": name, "seed": args.seed, "steps": 0 if name == "untrained" else args.steps,
          "seconds": seconds, **{k: metrics[k] for k in metrics if k in METRICS},
          **{f"{k}_scene_sem": scene_sem(num_valid["scenes"], k) for k in METRICS},
          **{f"{k}_valid": num_valid["num_valid"][k] for k in METRICS
             if k in num_valid["num_valid"]},
          **{f"{k}_total": num_valid["num_scenes"] for k in METRICS
             if k in num_valid["num_valid"]}}


def scene_sem(scenes: dict, key: str) -> float:
  """Standard error of the mean of `key` over the held-out scenes (its finite values): how far the
  held-out mean could move with another draw of scenes of the same kind."""
  v = np.array([m.get(key) for m in scenes.values() if m.get(key) is not None], float)
  v = v[np.isfinite(v)]
  return float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")


COLUMNS = (("depth_rel", "depth rel", ".3f"), ("depth_tau", "depth tau@1.03 (%)", ".1f"),
           ("points_rel", "points rel", ".3f"), ("points_tau", "points tau@1.03 (%)", ".1f"),
           ("auc30", "AUC@30", ".1f"), ("rra30", "RRA@30", ".1f"), ("rta30", "RTA@30", ".1f"),
           ("ate", "ATE", ".3f"), ("seconds", "time (s)", ".0f"))


# (variant, reference) pairs compared seed by seed, and on which metrics.
PAIRS = [(name, "full") for name in VARIANTS if name != "full"]
PAIR_METRICS = (("depth_rel", "depth rel", ".3f", False), ("points_rel", "points rel", ".3f", False),
                ("auc30", "AUC@30", ".1f", True))


def report(rows: list) -> None:
  descriptions = {name: what for name, (_, what) in VARIANTS.items()}
  full = [r for r in rows if r["variant"] == "full" and "depth_rel_scene_sem" in r]
  footer = ""
  if full:
    sem = {k: np.mean([r[f"{k}_scene_sem"] for r in full]) for k in ("depth_rel", "auc30")}
    footer = (f"Held-out scenes: {full[0].get('depth_rel_total', '?')} per seed. Standard error "
              f"of the mean over them (the full row, mean over {len(full)} seeds): depth rel "
              f"{sem['depth_rel']:.3f}, AUC@30 {sem['auc30']:.1f}; the per-seed means above move "
              f"by about this much with another draw of scenes.")
  ablation_table.report(rows, descriptions, COLUMNS, (("depth_rel", "depth rel (lower is better)"),
                                                      ("auc30", "pose AUC@30 (higher is better)")),
                        HERE, {"untrained": "0.6", "supervised": "tab:green", "full": "tab:blue"},
                        pairs=PAIRS, metrics=PAIR_METRICS, footer=footer)


def main():
  parser = ablation_table.arguments(__doc__, ROOT / "runs" / "ablation", 300)
  parser.add_argument("--scenes", type=int, default=168, help="synthetic scenes in the cache")
  parser.add_argument("--cache", default="", help="an existing cache of the demo's settings "
                      "(e.g. <demo workdir>/cache) instead of building <out>/cache")
  parser.add_argument("--eval-scenes", type=int, default=16, help="of them held out")
  args = parser.parse_args()
  descriptions = {name: what for name, (_, what) in VARIANTS.items()}
  cache = {}

  def run(name):
    if "path" not in cache:  # built (or found) once, only when something has to run
      cache["path"] = args.cache or build_cache(pathlib.Path(args.out), args.scenes)
    return run_variant(name, args, cache["path"])

  ablation_table.run_seeds(args, descriptions, run, report, folder=HERE,
                           steps_of=lambda name: 0 if name == "untrained" else args.steps)


if __name__ == "__main__":
  main()
