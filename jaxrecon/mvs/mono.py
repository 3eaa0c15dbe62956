"""Dense depth from monocular depth maps aligned to a sparse model: the alternative to the plane
sweep when an external monocular model's predictions exist for a scene.

A monocular map is right only up to an unknown per-view scale and shift. The sparse model (points
triangulated by per-scene fitting, and which views observed each) supplies the metric in the
model's gauge: for each view, the points it observed are projected into it and their camera z is
regressed on the map's value there, robustly (a few outlier tracks or a mistaken depth on one
object must not tilt the fit). Alignment in inverse depth suits affine-invariant disparity models
(MiDaS / Depth Anything: 1 / z = a / m + b); in depth it suits models whose output is a depth up
to scale and offset (z = a m + b). Then every pixel has a depth, and the same multi-view
geometric check as the plane sweep's (`geometric_consistency`) says where neighbouring views'
aligned maps agree: a monocular map is smooth and complete but can be wrong in shape, and only
agreement across views separates its right parts from its wrong ones.

Host-side numpy for the per-view fits (a few hundred points each, float64), the jit-compiled
check for the dense part.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from jaxrecon.mvs.consistency import fuse_points, geometric_consistency
from jaxrecon.mvs.neighbours import select_neighbours, view_scores
from jaxrecon.mvs.reconstruct import VALIDATED

SPACES = ("inverse", "depth")


@dataclasses.dataclass(frozen=True)
class MonoSettings:
  """Settings of `dense_from_mono`.

  space: "inverse" (1 / z = a / m + b, for disparity-like models) or "depth" (z = a m + b).
  min_points: observed points a view needs for its fit; fewer and the view gets no depth.
  trim: a point whose residual exceeds trim x the robust spread (1.4826 x median absolute
    deviation) is dropped before the next refit; iterations: fits (the first on all points).
  num_neighbours: views each view is checked against (`select_neighbours` over `view_scores`).
  view_peak_degrees: triangulation angle the neighbour choice favours (as `MVSSettings`).
  pixel_tolerance, depth_tolerance, min_consistent: the geometric check (pixels; relative depth;
    confirming neighbours needed to keep a pixel); defaults: the plane sweep's validated ones.
  """
  space: str = "inverse"
  min_points: int = 10
  trim: float = 3.0
  iterations: int = 4
  num_neighbours: int = 4
  # The plane sweep's validated neighbour choice and check (`reconstruct.VALIDATED`).
  view_peak_degrees: float = VALIDATED["view_peak_degrees"]
  pixel_tolerance: float = VALIDATED["pixel_tolerance"]
  depth_tolerance: float = VALIDATED["depth_tolerance"]
  min_consistent: int = VALIDATED["min_consistent"]

  def __post_init__(self):
    if self.space not in SPACES:
      raise ValueError(f"MonoSettings.space: expected one of {SPACES}, got {self.space!r}")
    if self.min_points < 3 or self.iterations < 1 or self.trim <= 0:
      raise ValueError("MonoSettings: min_points must be >= 3, iterations >= 1, trim > 0")


class Alignment(NamedTuple):
  """Per-view result of `align_view` (scale a, shift b of the chosen space; NaN when not fitted).

  inliers: points kept by the last fit; points: points available; median_error: median relative
  depth error |z_aligned - z| / z over the inliers.
  """
  scale: float
  shift: float
  inliers: int
  points: int
  median_error: float


def _robust_line(x, y, trim, iterations):
  """a, b of y ~ a x + b by least squares (residuals in y), refitted `iterations` times on the
  points within trim x 1.4826 MAD of the last fit (float64); and the inlier mask."""
  keep = np.ones(len(x), bool)
  a = b = np.nan
  for _ in range(iterations):
    xk, yk = x[keep], y[keep]
    dx = xk - xk.mean()
    # No slope to fit: a (nearly) constant map says nothing about depth.
    if keep.sum() < 2 or np.sum(dx * dx) <= 1e-12 * np.sum(xk * xk):
      return np.nan, np.nan, keep
    a = float(np.sum(dx * (yk - yk.mean())) / np.sum(dx * dx))
    b = float(yk.mean() - a * xk.mean())
    r = y - (a * x + b)
    spread = 1.4826 * np.median(np.abs(r[keep] - np.median(r[keep])))
    # A floor of 0.1 % of the typical value (far below any monocular model's accuracy): on
    # near-exact data the spread is rounding noise, and trimming at a multiple of it would drop
    # good points until too few remain.
    keep = np.abs(r) <= trim * max(spread, 1e-3 * np.median(np.abs(y)))
  return float(a), float(b), keep


def align_view(mono, valid, intrinsics, cam_from_world, points, settings: MonoSettings):
  """Scale and shift that map one view's monocular map onto the depths of its observed points.

  Args:
    mono: (h, w) monocular depth-like values (positive where valid); valid: (h, w) bool.
    intrinsics: (3, 3) K; cam_from_world: (4, 4) of the view.
    points: (n, 3) world points the view observed (the sparse model's inliers in this view).
    settings: `MonoSettings`.
  Returns:
    `Alignment`; scale/shift NaN when fewer than settings.min_points usable points remain, when
    the fit is degenerate, or when it orders depth backwards (a <= 0).
  """
  h, w = mono.shape
  pts = np.asarray(points, np.float64).reshape(-1, 3)
  cam = pts @ cam_from_world[:3, :3].T + cam_from_world[:3, 3]
  cam = cam[cam[:, 2] > 0]
  uvw = cam @ np.asarray(intrinsics, np.float64).T
  uv = uvw[:, :2] / uvw[:, 2:]
  # Bilinear in the regression's feature (1 / m in inverse space, which is affine in the pixel on
  # a plane, as 1 / z is), over the 4 pixels around the point, all of which must be valid.
  m = np.asarray(mono, np.float64)
  good = np.asarray(valid, bool) & (m > 0) & np.isfinite(m)
  feature = np.where(good, 1.0 / np.where(good, m, 1.0) if settings.space == "inverse" else m, 0)
  inside = (uv[:, 0] >= 0) & (uv[:, 0] <= w - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= h - 1)
  uv, z = uv[inside], cam[inside, 2]
  u0 = np.minimum(np.floor(uv[:, 0]).astype(int), w - 2)
  v0 = np.minimum(np.floor(uv[:, 1]).astype(int), h - 2)
  fu, fv = uv[:, 0] - u0, uv[:, 1] - v0
  corners = [(v0, u0, (1 - fu) * (1 - fv)), (v0, u0 + 1, fu * (1 - fv)),
             (v0 + 1, u0, (1 - fu) * fv), (v0 + 1, u0 + 1, fu * fv)]
  x = sum(wt * feature[r, c] for r, c, wt in corners)
  ok = np.all([good[r, c] for r, c, _ in corners], axis=0)
  x, z = x[ok], z[ok]
  n = len(z)
  nothing = Alignment(np.nan, np.nan, 0, n, np.nan)
  if n < settings.min_points:
    return nothing
  y = 1.0 / z if settings.space == "inverse" else z
  # The map is the noisy variable (blurred edges, shape errors), the triangulated depth the
  # accurate one: regress the map on the depth and invert. The other way round, the map's noise
  # flattens the slope towards 0 (regression dilution): on a procedural walk whose points span
  # 3-7 m, that fit made every view a wall at 4 m.
  slope, offset, keep = _robust_line(y, x, settings.trim, settings.iterations)
  if not np.isfinite(slope) or slope <= 0 or keep.sum() < settings.min_points:
    return nothing
  a, b = 1.0 / slope, -offset / slope
  fitted = a * x[keep] + b
  z_hat = 1.0 / np.where(fitted > 0, fitted, np.nan) if settings.space == "inverse" else fitted
  error = np.abs(z_hat - z[keep]) / z[keep]
  if not np.any(np.isfinite(error)):       # the line puts every point behind the camera
    return nothing
  return Alignment(a, b, int(keep.sum()), n, float(np.nanmedian(error)))


def apply_alignment(mono, valid, alignment: Alignment, space: str):
  """(h, w) float32 depth of the aligned map; 0 where invalid, not fitted, or not in front."""
  m = np.asarray(mono, np.float64)
  if not np.isfinite(alignment.scale):
    return np.zeros(m.shape, np.float32)
  good = np.asarray(valid, bool) & (m > 0) & np.isfinite(m)
  safe = np.where(good, m, 1.0)
  if space == "inverse":
    inv = alignment.scale / safe + alignment.shift
    depth = np.where(inv > 0, 1.0 / np.where(inv > 0, inv, 1.0), 0.0)
  else:
    depth = alignment.scale * safe + alignment.shift
  return np.where(good & (depth > 0), depth, 0.0).astype(np.float32)


class MonoResult(NamedTuple):
  """Output of `dense_from_mono` (v views of h x w pixels, N neighbours).

  depth: (v, h, w) float32 aligned depth (0 where the view was not fitted or the map invalid);
    the mean with the confirming neighbours' depths where confidence > 0.
  confidence: (v, h, w) float32 in [0, 1]: fraction of neighbours confirming the depth, times the
    view's inlier fraction; 0 below min_consistent.
  alignments: tuple of v `Alignment`; neighbours: (v, N) int32.
  points, colors, point_confidence, point_view, point_pixel: the fused cloud (as `DenseResult`).
  """
  depth: np.ndarray
  confidence: np.ndarray
  alignments: tuple
  neighbours: np.ndarray
  points: np.ndarray
  colors: np.ndarray
  point_confidence: np.ndarray
  point_view: np.ndarray
  point_pixel: np.ndarray


def dense_from_mono(images, mono, valid, intrinsics, cam_from_world, points, point_views,
                    settings: MonoSettings = MonoSettings()) -> MonoResult:
  """Monocular maps aligned per view to a sparse model, checked across views, fused.

  Args:
    images: (v, h, w, 3) uint8 RGB (colours of the cloud).
    mono: (v, h, w) monocular depth-like maps (e.g. `experts.FileDepthExpert` output); valid:
      (v, h, w) bool.
    intrinsics: (v, 3, 3) K; cam_from_world: (v, 4, 4) (the fit's cameras and gauge).
    points: (n, 3) world points; point_views: (n, v) bool, which views observed each
      (`FitResult.model_points`).
    settings: `MonoSettings`.
  Returns:
    `MonoResult`.
  Raises:
    ValueError: shapes that do not agree, or fewer than 2 views.
  """
  images, mono = np.asarray(images), np.asarray(mono)
  v = images.shape[0]
  if v < 2 or images.ndim != 4 or mono.shape != images.shape[:3]:
    raise ValueError(f"dense_from_mono: expected images (v >= 2, h, w, 3) and mono (v, h, w) of "
                     f"the same size, got {images.shape} and {mono.shape}")
  if np.shape(valid) != mono.shape:
    raise ValueError(f"valid: expected shape {mono.shape}, got {np.shape(valid)}")
  points = np.asarray(points, np.float64).reshape(-1, 3)
  if np.shape(point_views) != (len(points), v):
    raise ValueError(f"point_views: expected shape ({len(points)}, {v}), got "
                     f"{np.shape(point_views)}")
  point_views = np.asarray(point_views, bool)
  intrinsics = np.asarray(intrinsics, np.float64)
  cam_from_world = np.asarray(cam_from_world, np.float64)
  alignments = tuple(align_view(mono[i], valid[i], intrinsics[i], cam_from_world[i],
                                points[point_views[:, i]], settings) for i in range(v))
  depth = np.stack([apply_alignment(mono[i], valid[i], alignments[i], settings.space)
                    for i in range(v)])
  h, w = mono.shape[1:]
  k, cams = jnp.asarray(intrinsics, jnp.float32), jnp.asarray(cam_from_world, jnp.float32)
  num = min(settings.num_neighbours, v - 1)
  scores = view_scores(jnp.asarray(points, jnp.float32), k, cams, image_size=(h, w),
                       observed=point_views, peak_degrees=settings.view_peak_degrees)
  neighbours, _ = select_neighbours(scores, num=num)
  count, fused = geometric_consistency(jnp.asarray(depth), k, cams, neighbours,
                                       pixel_tolerance=settings.pixel_tolerance,
                                       depth_tolerance=settings.depth_tolerance)
  count, fused = np.asarray(count), np.asarray(fused)
  share = np.array([a.inliers / a.points if a.points else 0.0 for a in alignments], np.float32)
  keep = (count >= settings.min_consistent) & (depth > 0)
  confidence = np.where(keep, share[:, None, None] * count / num, 0.0).astype(np.float32)
  depth = np.where(keep, fused, depth).astype(np.float32)
  cloud = fuse_points(depth, confidence, images, k, cams)
  return MonoResult(depth=depth, confidence=confidence, alignments=alignments,
                    neighbours=np.asarray(neighbours), points=cloud["points"],
                    colors=cloud["colors"], point_confidence=cloud["confidence"],
                    point_view=cloud["view"], point_pixel=cloud["pixel"])
