"""Helpers shared by the experiments/mvs_*.py scripts: sparse points from SIFT tracks triangulated
with the given cameras (what a sparse reconstruction supplies to `mvs.reconstruct_dense`), the
error-vs-coverage measure of depth maps against ground truth, and the set-up of the real-scene
scripts (arguments, the settings chosen on the procedural world, half-resolution images)."""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

import cv2
import jax.numpy as jnp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxrecon import geometry, mvs  # noqa: E402
from jaxrecon.experts import MatcherSettings, track_images  # noqa: E402


def sparse_points(images, intrinsics, cam_from_world, max_features=2000, with_views=False):
  """(n, 3) world points of the SIFT tracks of the images, triangulated with the given cameras
  (tracks with under 1 degree of parallax or behind a camera are dropped); with_views: also the
  (n, v) bool views that observed each point (`reconstruct_dense`'s point_views)."""
  tracks = track_images(list(images), intrinsics, MatcherSettings(max_features=max_features))
  proj = geometry.projection_matrix(jnp.asarray(intrinsics), jnp.asarray(cam_from_world))
  pix = np.nan_to_num(tracks.pixels.transpose(1, 0, 2))
  weights = (tracks.visible & tracks.mask[:, None]).T.astype(np.float64)
  pts, info = geometry.triangulate_with_info(jnp.asarray(proj), jnp.asarray(pix),
                                             jnp.asarray(weights),
                                             min_parallax=float(np.deg2rad(1.0)))
  keep = np.asarray(info.valid) & tracks.mask
  if with_views:
    return np.asarray(pts)[keep], weights[:, keep].T > 0
  return np.asarray(pts)[keep]


def error_coverage(depth, confidence, gt, thresholds):
  """Rows (threshold, coverage, median relative error, 90th percentile) over the pixels with
  ground truth (gt > 0): coverage is the fraction of them whose confidence exceeds the threshold."""
  valid = gt > 0
  rel = np.abs(depth - gt) / np.where(valid, gt, 1.0)
  rows = []
  for t in thresholds:
    m = valid & (confidence > t)
    rows.append((float(t), float(m.sum() / max(valid.sum(), 1)),
                 float(np.median(rel[m])) if m.any() else float("nan"),
                 float(np.percentile(rel[m], 90)) if m.any() else float("nan")))
  return rows


def real_scene_setup(name):
  """Parsed arguments (--data, --out, --synthetic-report) of a real-scene script, the
  `MVSSettings` chosen on the procedural world's validation scenes (never on a real scene), and
  whether that choice gives the sparse points' observations to `reconstruct_dense`
  (point_views)."""
  parser = argparse.ArgumentParser()
  parser.add_argument("--data", default="../shared/data")
  parser.add_argument("--out", default=f"experiments/{name}")
  parser.add_argument("--synthetic-report", default="experiments/mvs_synthetic.json")
  args = parser.parse_args()
  with open(args.synthetic_report) as f:
    report = json.load(f)
  return args, mvs.MVSSettings(**report["settings"]), bool(report.get("point_views", False))


def half_resolution(images, intrinsics):
  """Images (v, h, w, 3) and intrinsics (v, 3, 3) at half size (area filter; K with the
  package's pixel-centre convention)."""
  h, w = images.shape[1:3]
  small = np.stack([cv2.resize(im, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
                    for im in images])
  return small, np.asarray(geometry.scale_intrinsics(jnp.asarray(intrinsics), 0.5, 0.5))
