"""Plane-sweep MVS on ICL-NUIM living room: the supplied poses as given, and refined from the images.

Usage: python experiments/mvs_icl.py [--data ../shared/data] [--out experiments/mvs_icl]

The supplied poses miss the images by 0.3-1.2 degrees (2-10 px at these depths, see
../shared/data/README.md). Refined cameras: XFeat tracks of the full-resolution frames, then
`fit.fit_scene` initialised from the supplied poses (`init_cam_from_world`: every view refined by
the robust bundle adjuster, the result returned in the supplied frame and scale, so depths stay in
metres); the intrinsics are the dataset's, held. The depth range comes from the sparse points
(triangulated with the cameras of the variant), and, as a diagnosis, from a fixed room-scale prior
instead (0.5-10 m; not fitted to this scene's ground truth).
All 5 frames at half resolution (320 x 240, intrinsics scaled), `MVSSettings` as chosen on the
procedural world's validation scenes (experiments/mvs_synthetic.json); sparse points: SIFT tracks
triangulated with the supplied poses, or the refined fit's points.
Error: |depth - gt| / gt against the rendered depth (downsampled by nearest pixel); coverage over
(a) all pixels with ground truth, (b) those some other frame sees: the ground truth passes a loose
check (5 px, 5 %, loose because the supplied poses are off) in at least one of the neighbours
used, with the cameras of the variant (so the refined rows are scored on the pixels the refined
cameras say another frame sees).
"""
from __future__ import annotations

import dataclasses
import json

import jax.numpy as jnp
import numpy as np

from mvs_common import (error_coverage, half_resolution, real_scene_setup,  # noqa: E402
                        sparse_points)

from jaxrecon import geometry, mvs  # noqa: E402
from jaxrecon.data.formats import read_tum  # noqa: E402
from jaxrecon.experts import MatcherSettings, track_images  # noqa: E402
from jaxrecon.fit import FitSettings, fit_scene  # noqa: E402

THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
K_ICL = np.array([[481.2, 0.0, 319.5], [0.0, -480.0, 239.5], [0.0, 0.0, 1.0]])


def main():
  args, settings, use_views = real_scene_setup("mvs_icl")
  scene = read_tum(f"{args.data}/icl_livingroom", K_ICL, depth_scale=5000.0)  # ICL-NUIM units
  images, k = half_resolution(scene.images, scene.intrinsics)
  gt = scene.depth[:, ::2, ::2]
  refined, fitted_points, refine_report = refine_cameras(scene.images, scene.intrinsics,
                                                         scene.cam_from_world)
  prior = dataclasses.replace(settings, near=0.5, far=10.0)
  report = {"settings": dataclasses.asdict(settings), "refinement": refine_report,
            "gt_range": [[float(x) for x in np.percentile(g[g > 0], [1, 99])] for g in gt],
            "sparse_points": {}, "variants": {}}
  # The sparse points that set the swept range: SIFT tracks triangulated with the supplied poses
  # (the baseline), and the refined fit's own points (what a sparse-then-dense pipeline has).
  for cams_name, cams, (pts, views) in (
      ("supplied poses", scene.cam_from_world,
       sparse_points(images, k, scene.cam_from_world, with_views=True)),
      ("refined cameras", refined, fitted_points)):
    report["sparse_points"][cams_name] = int(len(pts))
    views = views if use_views else None
    for name, (p, v, s) in {"range from the sparse points": (pts, views, settings),
                            "near/far 0.5-10 m given (room-scale prior)": (None, None,
                                                                           prior)}.items():
      report["variants"][f"{cams_name}, {name}"] = evaluate(images, k, cams, gt, p, v, s)
  with open(args.out + ".json", "w") as f:
    json.dump(report, f, indent=1)
  r = report["refinement"]
  lines = ["# Plane-sweep MVS on icl_livingroom: supplied poses vs cameras refined from the images",
           "", "    python experiments/mvs_icl.py", "", __doc__.split("\n\n", 1)[1].strip(), "",
           f"Refinement: {r['tracks']} XFeat tracks, {r['registered']} of 5 views registered, "
           f"median reprojection error {r['median_error_px_supplied']:.2f} px with the supplied "
           f"poses -> {r['median_error_px_refined']:.2f} px refined; the cameras turned by "
           f"{', '.join(f'{a:.2f}' for a in r['rotation_change_deg'])} deg and moved by "
           f"{', '.join(f'{1000 * c:.0f}' for c in r['centre_change_m'])} mm; fit "
           f"{r['seconds']:.1f} s; warnings: {r['warnings'] or 'none'}.", "",
           f"Sparse points (supplied: SIFT tracks with >= 1 degree parallax; refined: the fit's "
           f"points): {report['sparse_points']}. The "
           "last two columns of each table rank by the photometric confidence alone (no "
           "geometric check: with poses off by 2-10 px the check rejects almost every pixel).", ""]
  for name, v in report["variants"].items():
    ranges = ", ".join(f"{a:.2f}-{b:.2f}" for a, b in v["depth_range"])
    truth = ", ".join(f"{a:.2f}-{b:.2f}" for a, b in report["gt_range"])
    lines += [f"## {name}", "", f"Depth range swept per frame (m): {ranges}; ground truth 1st-99th "
              f"percentile: {truth}. Co-visible: {100 * v['covisible_fraction']:.1f} % of the "
              "pixels with ground truth.", "",
              "| confidence > | coverage (all gt) | median rel. error | coverage (co-visible) | "
              "median rel. error | photometric only: coverage (co-visible) | median rel. error |",
              "|---|---|---|---|---|---|---|"]
    for a, c, p in zip(v["all"], v["covisible"], v["photometric_covisible"]):
      lines.append(f"| {a[0]:.2f} | {a[1]:.3f} | {100 * a[2]:.2f} % | {c[1]:.3f} | "
                   f"{100 * c[2]:.2f} % | {p[1]:.3f} | {100 * p[2]:.2f} % |")
    half = v["at_half_coverage"]
    lines += ["", f"At 50 % coverage of the co-visible pixels (the most confident half): median "
              f"relative error {100 * half['confidence']:.2f} % ranked by the full confidence, "
              f"{100 * half['photometric']:.2f} % by the photometric confidence.", ""]
  with open(args.out + ".md", "w") as f:
    f.write("\n".join(lines))
  print("\n".join(lines))


def refine_cameras(images, intrinsics, supplied):
  """(v, 4, 4) cameras refined from full-resolution XFeat tracks, initialised from (and expressed
  in the frame and scale of) the supplied ones; the fit's (n, 3) points and their (n, v)
  observations; a report of what moved."""
  # XFeat, not SIFT: on these weakly textured renders SIFT verifies too few pairs (61 tracks, 2 of
  # 5 frames connected even at a 2 px / 8 inlier verification); XFeat connects all 5 (1153 tracks).
  tracks = track_images(list(images), intrinsics, MatcherSettings(), tracker="xfeat")
  visible = tracks.visible & tracks.mask[:, None]
  fit = fit_scene(tracks.pixels, visible, intrinsics, init_cam_from_world=supplied,
                  settings=FitSettings())
  cams = np.where(fit.registered[:, None, None], fit.cam_from_world, supplied)
  rel = cams[:, :3, :3] @ np.swapaxes(supplied[:, :3, :3], 1, 2)
  angle = np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))
  centre = lambda c: -np.einsum("vji,vj->vi", c[:, :3, :3], c[:, :3, 3])
  return cams, fit.model_points(np.arange(len(images))), {"tracks": int(tracks.mask.sum()), "registered": int(fit.registered.sum()),
                "median_error_px_supplied": _median_error(tracks, visible, intrinsics, supplied),
                "median_error_px_refined": _median_error(tracks, visible, intrinsics, cams),
                "rotation_change_deg": angle.tolist(),
                "centre_change_m": np.linalg.norm(centre(cams) - centre(supplied), axis=1).tolist(),
                "seconds": fit.init_seconds + fit.fit_seconds, "warnings": list(fit.warnings)}


def _median_error(tracks, visible, intrinsics, cams):
  """Median reprojection error (px) of the tracks triangulated with `cams` (>= 1 deg parallax)."""
  proj = np.asarray(geometry.projection_matrix(jnp.asarray(intrinsics), jnp.asarray(cams)))
  pix = np.nan_to_num(tracks.pixels.transpose(1, 0, 2))
  pts, info = geometry.triangulate_with_info(jnp.asarray(proj), jnp.asarray(pix),
                                             jnp.asarray(visible.T.astype(np.float64)),
                                             min_parallax=float(np.deg2rad(1.0)))
  pts, keep = np.asarray(pts, np.float64), np.asarray(info.valid)
  hom = np.einsum("vij,tj->tvi", proj, np.concatenate([pts, np.ones((len(pts), 1))], 1))
  err = np.linalg.norm(hom[..., :2] / hom[..., 2:] - tracks.pixels, axis=-1)
  return float(np.median(err[visible & keep[:, None]]))


def evaluate(images, k, cams, gt, points, point_views, settings):
  """Curves of one reconstruction: all pixels with gt, co-visible ones, photometric-only."""
  res = mvs.reconstruct_dense(images, k, cams, points, settings=settings, point_views=point_views)
  count, _ = mvs.geometric_consistency(jnp.asarray(gt), jnp.asarray(k, jnp.float32),
                                       jnp.asarray(cams, jnp.float32),
                                       jnp.asarray(res.neighbours), pixel_tolerance=5.0,
                                       depth_tolerance=0.05)
  covisible = np.asarray(count) >= 1
  seen = np.where(covisible, gt, 0.0)
  return {"depth_range": res.depth_range.tolist(),
          "covisible_fraction": float(covisible.sum() / (gt > 0).sum()),
          "all": error_coverage(res.depth, res.confidence, gt, THRESHOLDS),
          "covisible": error_coverage(res.depth, res.confidence, seen, THRESHOLDS),
          "photometric_covisible": error_coverage(res.depth, res.photometric_confidence, seen,
                                                  THRESHOLDS),
          "at_half_coverage": {"confidence": at_coverage(res.depth, res.confidence, seen),
                               "photometric": at_coverage(res.depth, res.photometric_confidence,
                                                          seen)}}


def at_coverage(depth, confidence, gt, coverage=0.5):
  """Median relative error of the `coverage` most confident of the pixels with ground truth."""
  valid = gt > 0
  order = np.argsort(-confidence[valid], kind="stable")
  keep = order[:int(round(coverage * valid.sum()))]
  return float(np.median((np.abs(depth - gt)[valid] / gt[valid])[keep]))


if __name__ == "__main__":
  main()
