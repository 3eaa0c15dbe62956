"""What the held-out evaluation of a Reliev3R run can report, given what its records hold.

Real footage has no ground truth: a record always has images, intrinsics and tracks, and only
sometimes depth (`depth`) or poses (`cam_from_world`). Depth metrics need the first, pose metrics
the second; `track_reprojection` needs neither: it asks whether the predicted depth and poses agree
with the held-out tracks (a self-consistency check of the geometry, in pixels, blind to the global
scale and rigid motion the weak losses cannot see either). Host-side numpy.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

TRACK_INLIER_PX = 2.0


def track_reprojection(depth, world_from_cam, intrinsics, tracks, visibility) -> dict:
  """Median reprojection error of held-out tracks through the predicted geometry.

  For every track seen in views i and j (i != j), the pixel in view j is lifted with the predicted
  depth there (nearest pixel) and the predicted pose of j, and projected into view i with the
  predicted pose of i; the error is its distance to the track's pixel in view i.

  Args:
    depth: (v, h, w) predicted depth. world_from_cam: (v, 4, 4) predicted camera-to-world.
    intrinsics: (v, 3, 3) pixels. tracks: (t, v, 2) pixels (x, y), NaN where unseen.
    visibility: (t, v) bool.
  Returns:
    {"track_px": median error (px; NaN with no pair), "track_2px": fraction of pairs within
    TRACK_INLIER_PX (pairs landing behind camera i count as misses)}.
  """
  depth = np.asarray(depth, np.float64)
  world_from_cam = np.asarray(world_from_cam, np.float64)
  k = np.asarray(intrinsics, np.float64)
  uv = np.nan_to_num(np.asarray(tracks, np.float64))
  vis = np.asarray(visibility, bool)
  v, h, w = depth.shape
  col = np.clip(np.rint(uv[..., 0]).astype(int), 0, w - 1)
  row = np.clip(np.rint(uv[..., 1]).astype(int), 0, h - 1)
  d = depth[np.arange(v)[None, :], row, col]                                  # (t, v)
  rays = np.einsum("vij,tvj->tvi", np.linalg.inv(k), np.concatenate(
      [uv, np.ones(uv.shape[:-1] + (1,))], -1))
  cam_points = rays * d[..., None]
  world = np.einsum("vij,tvj->tvi", world_from_cam[:, :3, :3], cam_points) + world_from_cam[:, :3, 3]
  cam_from_world = np.linalg.inv(world_from_cam)
  # in_i[t, i, j]: track t's point from view j, in camera i.
  in_i = np.einsum("iab,tjb->tija", cam_from_world[:, :3, :3], world) + \
      cam_from_world[None, :, None, :3, 3]
  pix = np.einsum("iab,tijb->tija", k, in_i)
  z = pix[..., 2]
  front = z > 1e-9
  proj = pix[..., :2] / np.where(front, z, 1.0)[..., None]
  error = np.linalg.norm(proj - uv[:, :, None, :], axis=-1)                  # (t, i, j)
  pairs = vis[:, :, None] & vis[:, None, :] & ~np.eye(v, dtype=bool)[None] & (d[:, None, :] > 0)
  if not pairs.any():
    return {"track_px": float("nan"), "track_2px": float("nan")}
  seen = error[pairs & front]
  inliers = np.sum(seen <= TRACK_INLIER_PX)
  return {"track_px": float(np.median(seen)) if seen.size else float("inf"),
          "track_2px": float(inliers / pairs.sum())}


def ground_truth_counts(samples: Sequence[Mapping]) -> dict:
  """{"depth": n, "poses": n}: held-out samples carrying ground-truth depth / poses."""
  return {"depth": sum("depth" in s for s in samples),
          "poses": sum("cam_from_world" in s for s in samples)}


def describe_report(samples: Sequence[Mapping]) -> str:
  """One line saying what the held-out evaluation will report, and on how many scenes."""
  n = len(samples)
  counts = ground_truth_counts(samples)
  parts = []
  for what, metrics in (("depth", "depth rel/tau"), ("poses", "RRA/RTA/AUC@30/ATE")):
    if counts[what]:
      scope = "" if counts[what] == n else f" on the {counts[what]} of {n} scenes with it"
      parts.append(f"{metrics}{scope}")
  parts.append("track reprojection (track_px, track_2px)")
  note = "" if counts["depth"] or counts["poses"] else \
      " (held-out records have no ground-truth depth or poses)"
  return "held-out evaluation: " + ", ".join(parts) + note
