"""Accuracy of the fast CamVid-size setting: plane-sweep MVS on the procedural world at 480 x 360
with D = 32 (the setting that fits the 2-minute budget of experiments/mvs_speed.md) and D = 64.

Usage: python experiments/mvs_fullsize.py [--out experiments/mvs_fullsize]

One test scene per camera path (seed 0; 8 views, 60 degree field of view, exact cameras), sparse
points from SIFT tracks triangulated with the exact cameras, the settings chosen on the validation
scenes of experiments/mvs_synthetic.json except for D. Error and coverage as there (pixels with
ground truth, confidence > 0). Time: `reconstruct_dense` wall clock for the 8 views after a
warm-up scene of the same size (compilation excluded), on 2 shared CPU cores.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time

from mvs_common import error_coverage, sparse_points  # noqa: E402  (sets sys.path)

from jaxrecon import mvs  # noqa: E402
from jaxrecon.data.synthetic import make_scene  # noqa: E402

PATHS = ("orbit", "walk", "random")


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", default="experiments/mvs_fullsize")
  parser.add_argument("--synthetic-report", default="experiments/mvs_synthetic.json")
  args = parser.parse_args()
  with open(args.synthetic_report) as f:
    report = json.load(f)
  chosen = mvs.MVSSettings(**report["settings"])
  use_views = bool(report.get("point_views", False))
  scenes = {p: make_scene(0, num_views=8, height=360, width=480, path=p) for p in PATHS}
  sparse = {p: sparse_points(s.images, s.intrinsics, s.cam_from_world, max_features=4000,
                             with_views=True) for p, s in scenes.items()}
  points = {p: pts for p, (pts, _) in sparse.items()}
  views = {p: (v if use_views else None) for p, (_, v) in sparse.items()}
  rows = []
  for num in (32, 64):
    settings = dataclasses.replace(chosen, num_hypotheses=num)
    warm = scenes[PATHS[0]]
    mvs.reconstruct_dense(warm.images, warm.intrinsics, warm.cam_from_world, points[PATHS[0]],
                          settings=settings, point_views=views[PATHS[0]])
    for p, s in scenes.items():
      t0 = time.time()
      res = mvs.reconstruct_dense(s.images, s.intrinsics, s.cam_from_world, points[p],
                                  settings=settings, point_views=views[p])
      seconds = time.time() - t0
      _, cov, err, p90 = error_coverage(res.depth, res.confidence, s.depth, (0.0,))[0]
      rows.append({"path": p, "hypotheses": num, "coverage": cov, "median": err, "p90": p90,
                   "seconds": seconds, "points": int(len(points[p]))})
      print(rows[-1], flush=True)
  with open(args.out + ".json", "w") as f:
    json.dump(rows, f, indent=1)
  lines = ["# Plane-sweep MVS at 480 x 360 on the procedural world: D = 32 vs 64", "",
           "    python experiments/mvs_fullsize.py", "", __doc__.split("\n\n", 1)[1].strip(), "",
           "| path (seed 0) | D | sparse points | coverage | median rel. error | p90 | "
           "seconds (8 views) |", "|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['path']} | {r['hypotheses']} | {r['points']} | {r['coverage']:.3f} | "
                 f"{100 * r['median']:.2f} % | {100 * r['p90']:.1f} % | {r['seconds']:.1f} |")
  with open(args.out + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
  main()
