"""Fusing per-view depth maps into one coloured point cloud with per-point confidence."""
from __future__ import annotations

import jax
import numpy as np

from jaxrecon.data.pointcloud import confident_pixels
from jaxrecon.geometry.cameras import backproject_depth


def fuse_points(depth, confidence, colors, intrinsics, world_from_cam, *,
                min_confidence_percentile: float = 10.0):
  """One point per pixel of every view, minus each view's least confident pixels.

  As in Rewis3d's lifting (`data.pointcloud.confident_pixels`, the same function): per view,
  pixels whose confidence is below that view's `min_confidence_percentile`-th percentile over its
  valid pixels (finite depth > 0, finite confidence) are dropped (0 keeps every valid pixel); a
  NaN confidence drops its pixel only.

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
  with jax.enable_x64(True):  # float64 on the host, like the readers' poses
    points = np.asarray(backproject_depth(np.asarray(depth, np.float64),
                                          np.asarray(intrinsics, np.float64),
                                          np.asarray(world_from_cam, np.float64)))
  valid = np.isfinite(depth) & (depth > 0) & np.all(np.isfinite(points), -1)
  keep = confident_pixels(confidence, valid, min_confidence_percentile)
  view = np.broadcast_to(np.arange(v, dtype=np.int32)[:, None, None], depth.shape)
  return (points[keep].astype(np.float32), colors[keep].astype(np.uint8),
          confidence[keep].astype(np.float32), view[keep])
