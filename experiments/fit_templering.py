"""Per-scene fit of templeRing (Middlebury) from SIFT tracks alone: a table per form and init.

Usage: python experiments/fit_templering.py [--data ../shared/data/templeRing] [--out
experiments/fit_templering_table.md] [--quick]

For each registration form (angular, triangulation, pixel, l2_3d; essential-matrix init) and for
the angular form from the "rotation_only" and "identity" inits, runs `jaxrecon.fit.fit_scene` and
reports, before (init) and after the fit: the median per-camera rotation error after a sim(3)
alignment of the camera centres to the ground truth (degrees), pose AUC@30 and RRA@30 over all
view pairs (percent), the optimiser steps taken and the run times (the fit's includes its
compilation: one per run, since each form is its own objective). Writes a markdown table (stdout
and --out).
"""
from __future__ import annotations

import argparse
import pathlib
import time

import numpy as np

from jaxrecon.data.formats.middlebury import read_middlebury
from jaxrecon.evaluate.metrics import align_cameras_sim3, pose_auc, relative_pose_errors, rra
from jaxrecon.experts import MatcherSettings, TrackSettings, track_images
from jaxrecon.fit import FitSettings, fit_scene

ROOT = pathlib.Path(__file__).resolve().parent.parent


def rotation_errors_deg(pred_cam_from_world, gt_cam_from_world):
  """(v,) geodesic angle (degrees) between aligned predicted and ground-truth rotations."""
  aligned = align_cameras_sim3(pred_cam_from_world, gt_cam_from_world)
  rel = aligned[:, :3, :3] @ np.swapaxes(gt_cam_from_world[:, :3, :3], -1, -2)
  cos = np.clip((np.trace(rel, axis1=-2, axis2=-1) - 1.0) / 2.0, -1.0, 1.0)
  return np.degrees(np.arccos(cos))


def pose_scores(pred_cam_from_world, gt_cam_from_world):
  """dict: rot_median_deg (after sim(3)), auc30, rra30 (percent)."""
  rot, trans = relative_pose_errors(pred_cam_from_world, gt_cam_from_world)
  return {"rot_median_deg": float(np.median(rotation_errors_deg(pred_cam_from_world,
                                                                 gt_cam_from_world))),
          "auc30": float(pose_auc(rot, trans, max_threshold=30)), "rra30": float(rra(rot, 30))}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "templeRing"))
  parser.add_argument("--out", default=str(ROOT / "experiments" / "fit_templering_table.md"))
  parser.add_argument("--quick", action="store_true", help="the default run only")
  args = parser.parse_args()

  scene = read_middlebury(args.data)
  start = time.perf_counter()
  tracks = track_images(list(scene.images), scene.intrinsics, MatcherSettings(), TrackSettings())
  sift_seconds = time.perf_counter() - start
  visible = tracks.visible & tracks.mask[:, None]
  print(f"{len(scene.images)} views, {int(tracks.mask.sum())} tracks, SIFT {sift_seconds:.1f} s")

  runs = [("angular", "essential"), ("triangulation", "essential"), ("pixel", "essential"),
          ("l2_3d", "essential"), ("angular", "rotation_only"), ("angular", "identity")]
  if args.quick:
    runs = runs[:1]
  lines = ["| form | init | rot med before (deg) | rot med after (deg) | AUC@30 before | "
           "AUC@30 after | RRA@30 before | RRA@30 after | steps | init s | fit s |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
  for form, init in runs:
    try:
      result = fit_scene(tracks.pixels, visible, scene.intrinsics,
                         settings=FitSettings(form=form, init=init))
    except FloatingPointError as error:   # reported, not hidden
      lines.append(f"| {form} | {init} | failed: {error} |")
      print(lines[-1], flush=True)
      continue
    before = pose_scores(result.init_cam_from_world, scene.cam_from_world)
    after = pose_scores(result.cam_from_world, scene.cam_from_world)
    lines.append(f"| {form} | {init} | {before['rot_median_deg']:.3f} | "
                 f"{after['rot_median_deg']:.3f} | {before['auc30']:.2f} | {after['auc30']:.2f} | "
                 f"{before['rra30']:.1f} | {after['rra30']:.1f} | "
                 f"{len(result.history['loss']) - 1} | {result.init_seconds:.1f} | "
                 f"{result.fit_seconds:.1f} |")
    print(lines[-1], flush=True)
  table = "\n".join(lines) + "\n"
  print(table)
  pathlib.Path(args.out).write_text(
      f"templeRing, {len(scene.images)} views, {int(tracks.mask.sum())} SIFT tracks "
      f"(SIFT + matching {sift_seconds:.1f} s), default FitSettings except form / init.\n\n" + table)


if __name__ == "__main__":
  main()
