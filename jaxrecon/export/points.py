"""Fusing per-view depth maps into one coloured point cloud with per-point confidence."""
from __future__ import annotations

import numpy as np


def backproject(depth: np.ndarray, intrinsics: np.ndarray,
                world_from_cam: np.ndarray) -> np.ndarray:
  """World point of every pixel (float64 numpy twin of `geometry.backproject_depth`).

  Args:
    depth: (v, h, w) camera-frame z (model units).
    intrinsics: (v, 3, 3) K in pixels (top-left pixel centre at (0, 0)).
    world_from_cam: (v, 4, 4) or (v, 3, 4) camera-to-world poses, OpenCV axes.
  Returns:
    (v, h, w, 3) float64 world coordinates.
  """
  depth = np.asarray(depth, np.float64)
  v, h, w = depth.shape
  u, r = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
  pixels = np.stack([u, r, np.ones_like(u)], -1)                          # (h, w, 3)
  rays = np.einsum("vij,hwj->vhwi", np.linalg.inv(np.asarray(intrinsics, np.float64)), pixels)
  cam = rays * depth[..., None]
  pose = np.asarray(world_from_cam, np.float64)
  return np.einsum("vij,vhwj->vhwi", pose[:, :3, :3], cam) + pose[:, None, None, :3, 3]


def fuse_points(depth, confidence, colors, intrinsics, world_from_cam, *,
                min_confidence_percentile: float = 10.0):
  """One point per pixel of every view, minus each view's least confident pixels.

  As in Rewis3d's lifting: per view, pixels whose confidence is below that view's
  `min_confidence_percentile`-th percentile are dropped (0 keeps every pixel); non-finite or
  non-positive depths are always dropped.

  Args:
    depth: (v, h, w) camera-frame z (model units).
    confidence: (v, h, w) per-pixel confidence (higher = more reliable).
    colors: (v, h, w, 3) uint8 RGB of the same pixels.
    intrinsics: (v, 3, 3) K of these (h, w) maps.
    world_from_cam: (v, 4, 4) camera-to-world poses, OpenCV axes.
    min_confidence_percentile: in [0, 100].
  Returns:
    (xyz (n, 3) float32 world coordinates, rgb (n, 3) uint8, confidence (n,) float32,
    view (n,) int32 index of the source view), views in order, pixels row-major.
  """
  if not 0.0 <= min_confidence_percentile <= 100.0:
    raise ValueError(f"min_confidence_percentile must be in [0, 100], got "
                     f"{min_confidence_percentile}")
  depth = np.asarray(depth)
  confidence = np.asarray(confidence, np.float32)
  colors = np.asarray(colors)
  v = depth.shape[0]
  if confidence.shape != depth.shape or colors.shape != depth.shape + (3,):
    raise ValueError(f"fuse_points: depth {depth.shape}, confidence {confidence.shape} and colors "
                     f"{colors.shape} must be (v, h, w), (v, h, w), (v, h, w, 3)")
  points = backproject(depth, intrinsics, world_from_cam)
  threshold = np.percentile(confidence.reshape(v, -1), min_confidence_percentile, axis=1)
  keep = (confidence >= threshold[:, None, None]) & np.isfinite(depth) & (depth > 0)
  keep &= np.all(np.isfinite(points), -1)
  view = np.broadcast_to(np.arange(v, dtype=np.int32)[:, None, None], depth.shape)
  return (points[keep].astype(np.float32), colors[keep].astype(np.uint8),
          confidence[keep].astype(np.float32), view[keep])
