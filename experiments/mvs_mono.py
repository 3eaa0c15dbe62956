"""Dense depth from monocular maps aligned to a sparse model (`mvs.dense_from_mono`) beside the
plane sweep, on scenes with ground-truth depth.

Usage: python experiments/mvs_mono.py [--data ../shared/data] [--out experiments/mvs_mono]

No monocular depth model can be installed here (no weights ship in a package), so the maps are
simulated: `experts.SimulatedDepthExpert` (seed = scene seed) degrades the true depth the way real
models fail (an unknown scale and shift per view, a monotone gamma distortion of 0.9-1.1, a smooth
multiplicative error of 5 %, blurred depth edges, sky painted as a far wall, mirrors painted with
the surrounding surface). The alignment is in depth space (what the simulated maps are); the
inverse-depth alignment, the wrong model for these maps, is shown for contrast.

Scenes: the procedural world's test scenes of experiments/mvs_synthetic.md (seeds 0, 1, 2 x orbit,
walk, random; 8 views, 160 x 120; exact cameras; SIFT tracks triangulated with them as the sparse
model, with the views that observed each point), and icl_livingroom (5 frames at half size, the
cameras refined from XFeat tracks as in experiments/mvs_icl.md, the fit's points). Settings: the
library defaults (`MonoSettings`: the plane sweep's validated check) and, for the sweep,
experiments/mvs_synthetic.json's choice. Nothing was tuned on these scenes.
Error: |depth - gt| / gt over the pixels with ground truth and confidence > 0; coverage: their
share of the pixels with ground truth.
"""
from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np

from mvs_common import error_coverage, half_resolution, sparse_points  # noqa: E402

from jaxrecon import mvs  # noqa: E402
from jaxrecon.data.formats import read_tum  # noqa: E402
from jaxrecon.data.synthetic import MIRROR, SKY, make_scene  # noqa: E402
from jaxrecon.experts import SimulatedDepthExpert  # noqa: E402

PATHS = ("orbit", "walk", "random")
TEST = (0, 1, 2)


def measure(res, gt, labels=None):
  (_, coverage, median, p90), = error_coverage(res.depth, res.confidence, gt, (0.0,))
  row = {"coverage": coverage, "median": median, "p90": p90}
  if labels is not None:
    row["sky_kept"] = float(np.mean(res.confidence[labels == SKY] > 0))
  return row


def run(images, k, cams, points, views, gt, mono, settings, labels=None):
  """Rows of the sweep and both alignments for one scene."""
  rows = {"plane sweep": measure(mvs.reconstruct_dense(images, k, cams, points,
                                                        settings=settings, point_views=views),
                                 gt, labels)}
  for space in ("depth", "inverse"):
    res = mvs.dense_from_mono(images, mono, mono > 0, k, cams, points, views,
                              mvs.MonoSettings(space=space))
    rows[f"mono, {space} alignment"] = {
        **measure(res, gt, labels),
        "aligned_views": int(sum(np.isfinite(a.scale) for a in res.alignments)),
        "fit_error": float(np.nanmedian([a.median_error for a in res.alignments]))}
  return rows


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--data", default="../shared/data")
  parser.add_argument("--out", default="experiments/mvs_mono")
  parser.add_argument("--synthetic-report", default="experiments/mvs_synthetic.json")
  args = parser.parse_args()
  with open(args.synthetic_report) as f:
    settings = mvs.MVSSettings(**json.load(f)["settings"])
  report = {"scenes": []}
  for path in PATHS:
    for seed in TEST:
      scene = make_scene(seed, num_views=8, height=120, width=160, path=path)
      pts, views = sparse_points(scene.images, scene.intrinsics, scene.cam_from_world,
                                 with_views=True)
      s = settings if len(pts) >= 20 else dataclasses.replace(settings, near=1.0, far=100.0)
      mono = SimulatedDepthExpert(seed=seed)(scene.depth, scene.labels == MIRROR).depth
      rows = run(scene.images, scene.intrinsics, scene.cam_from_world, pts, views, scene.depth,
                 mono, s, scene.labels)
      report["scenes"].append({"scene": f"{path} {seed}", "points": int(len(pts)), "rows": rows})
      print(path, seed, {n: round(r["median"], 4) for n, r in rows.items()}, flush=True)
  from mvs_icl import K_ICL, refine_cameras  # noqa: E402  (the same cameras as mvs_icl.md)
  scene = read_tum(f"{args.data}/icl_livingroom", K_ICL, depth_scale=5000.0)
  images, k = half_resolution(scene.images, scene.intrinsics)
  refined, (pts, views), _ = refine_cameras(scene.images, scene.intrinsics, scene.cam_from_world)
  gt = scene.depth[:, ::2, ::2]
  mono = SimulatedDepthExpert(seed=0)(gt).depth
  rows = run(images, k, refined, pts, views, gt, mono, settings)
  report["scenes"].append({"scene": "icl_livingroom (refined cameras)", "points": int(len(pts)),
                           "rows": rows})
  with open(args.out + ".json", "w") as f:
    json.dump(report, f, indent=1)
  write_markdown(report, args.out + ".md")


def write_markdown(report, path):
  names = list(report["scenes"][0]["rows"])
  lines = ["# Monocular maps aligned to the sparse model vs the plane sweep", "",
           "    python experiments/mvs_mono.py", "", __doc__.split("\n\n", 1)[1].strip(), "",
           "| scene | sparse points | " + " | ".join(
               f"{n}: coverage | median error" for n in names) + " | sky kept (sweep / mono "
           "depth) |", "|---|---|" + "---|---|" * len(names) + "---|"]
  for s in report["scenes"]:
    cells = " | ".join(f"{s['rows'][n]['coverage']:.3f} | {100 * s['rows'][n]['median']:.2f} %"
                       for n in names)
    sky = (f"{100 * s['rows'][names[0]]['sky_kept']:.1f} % / "
           f"{100 * s['rows'][names[1]]['sky_kept']:.1f} %" if "sky_kept" in s["rows"][names[0]]
           else "-")
    lines.append(f"| {s['scene']} | {s['points']} | {cells} | {sky} |")
  synthetic = [s for s in report["scenes"] if not s["scene"].startswith("icl")]
  lines += ["", "Procedural test scenes, mean coverage and median of the scenes' median errors:",
            "", "| method | coverage | median error |", "|---|---|---|"]
  for n in names:
    lines.append(f"| {n} | {np.mean([s['rows'][n]['coverage'] for s in synthetic]):.3f} | "
                 f"{100 * np.median([s['rows'][n]['median'] for s in synthetic]):.2f} % |")
  lines.append("")
  with open(path, "w") as f:
    f.write("\n".join(lines))
  print("\n".join(lines))


if __name__ == "__main__":
  main()
