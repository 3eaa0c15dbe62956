"""Where the trained depth is biased: predicted / true depth at the tracked pixels, relative to the
whole view, for trained rows of the Reliev3R ablation.

Usage (after run.py, on its --out folder):
  python experiments/reliev3r_ablation/track_depth.py --out runs/ablation [--rows full,form_l2_3d]

For every held-out view with ground truth, r = predicted depth / true depth per valid pixel is
divided by its median over the view (the per-view scale the depth metrics also remove); the table
gives the median of that normalised ratio over the view's tracked pixels (the pixels the
registration loss sees), averaged over views and scenes, then mean +- sd over seeds. 1 = the
tracked pixels are as deep, relative to the truth, as the rest of the view; < 1 = pulled nearer.
Also given: the median |log r| over all valid pixels (0 = depth right up to scale). The table is
printed and written into README.md next to this script (between the TRACK DEPTH markers).
"""
from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

import ablation_table  # noqa: E402
from reliev3r_ablation.run import VARIANTS, make_config  # noqa: E402
from jaxrecon.reliev3r.pipeline import PipelineConfig  # noqa: E402
from jaxrecon.reliev3r.task import build, eval_samples, predict, scene_files  # noqa: E402
from jaxrecon.train.runs import restore_latest  # noqa: E402


def view_ratios(depth, gt_depth, tracks, visibility):
  """(median normalised ratio at tracked pixels, median |log ratio| over the view) per view."""
  out = []
  v, h, w = depth.shape
  for i in range(v):
    valid = (gt_depth[i] > 0) & np.isfinite(depth[i]) & (depth[i] > 0)
    if valid.sum() < 16:
      continue
    r = depth[i] / np.where(valid, gt_depth[i], 1.0)
    r = r / np.median(r[valid])
    seen = visibility[:, i]
    col = np.clip(np.rint(tracks[seen, i, 0]).astype(int), 0, w - 1)
    row = np.clip(np.rint(tracks[seen, i, 1]).astype(int), 0, h - 1)
    at = valid[row, col]
    if at.sum() < 4:
      continue
    out.append((np.median(r[row[at], col[at]]), np.median(np.abs(np.log(r[valid])))))
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default=str(ROOT / "runs" / "ablation"))
  parser.add_argument("--rows", default="full,depth_only,registration_only,form_l2_3d,supervised")
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--eval-scenes", type=int, default=16)
  args = parser.parse_args()
  out = pathlib.Path(args.out)
  lines = ["| row | tracked pixels' depth / view's (median ratio) | median abs log ratio | seeds |",
           "|---|---|---|---|"]
  for name in args.rows.split(","):
    per_seed = []
    for seed in [int(s) for s in args.seeds.split(",")]:
      workdir = out / f"{name}-s{seed}"
      config = make_config(VARIANTS[name][0], steps=args.steps, seed=seed,
                           cache=str(out / "cache"), num_eval_scenes=args.eval_scenes)
      _, eval_paths = scene_files(config, workdir)
      graphdef, _, init_state = build(config)
      state, _ = restore_latest(workdir / "checkpoints", init_state)
      values = []
      for sample in eval_samples(eval_paths, PipelineConfig(**config.pipeline.to_dict())):
        depth = predict(graphdef, state, sample["images"][None])["depth"][0]
        values += view_ratios(np.asarray(depth, np.float64), sample["depth"],
                              np.nan_to_num(sample["tracks"]), sample["visibility"])
      per_seed.append(np.mean(values, axis=0))
    per_seed = np.array(per_seed)
    mean, sd = per_seed.mean(0), per_seed.std(0, ddof=1) if len(per_seed) > 1 else [np.nan] * 2
    lines.append(f"| {name} | {mean[0]:.3f} ± {sd[0]:.3f} | {mean[1]:.3f} ± {sd[1]:.3f} | "
                 f"{len(per_seed)} |")
    print(lines[-1], flush=True)
  command = ("python experiments/reliev3r_ablation/track_depth.py --out <run.py's --out> --rows "
             f"{args.rows}")
  ablation_table.write_block(pathlib.Path(__file__).with_name("README.md"),
                             f"    {command}\n\n" + "\n".join(lines), marker="TRACK DEPTH")


if __name__ == "__main__":
  main()
