"""A second sweep direction for the ground: planes parallel to the dominant plane below the cameras.

Fronto-parallel planes fit a road seen from a car badly: along the road the depth changes fast
from one image row to the next, so a ZNCC window warped through one fronto-parallel plane is
sheared in the neighbour and the correct depth matches poorly. Sweeping planes parallel to the
ground as well, and keeping per pixel the direction whose best cost is lower, matches slanted
windows where the surface is slanted (Gallup, Frahm, Mordohai, Yang, Pollefeys, "Real-time
plane-sweeping stereo with multiple sweeping directions", CVPR 2007).

The ground is found from the sparse points alone (no scene knowledge): a RANSAC plane whose normal
lies within `max_tilt_deg` of the cameras' mean up direction (-y of OpenCV cameras) and which lies
below all cameras. Where there is none (an object on a plain background, cameras with mixed roll,
or a road with too little texture for tracks: CamVid's training clip has 7 of 513 sparse points on
it), `ground_plane` returns None and only the fronto-parallel sweep runs.

A plane of the family is n_c . X_c = d in reference-camera coordinates (n_c the plane normal
pointing down, away from the camera; d > 0 its distance below the camera centre). A pixel's ray
r = K^-1 (u, v, 1) (z = 1) meets it at depth z = d / (n_c . r), so its inverse depth is
(n_c . r) q with q = 1 / d: one (h, w) map of inverse depths per hypothesis q, which `sweep_cost`
takes as it is. Pixels at or above the horizon (n_c . r <= 0) never meet the plane. The planes
swept lie between half and twice the camera's height above the fitted ground (kerbs, pavements,
a road that rises or falls), evenly spaced in q.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import jax.numpy as jnp
import numpy as np

from jaxrecon.geometry import inverse_intrinsics, pixel_grid


class GroundPlane(NamedTuple):
  """A world plane {X : normal . X = offset}.

  normal: (3,) float64 unit normal pointing up (towards the cameras); offset: float, world units.
  inliers: (n,) bool, the sparse points within the RANSAC tolerance of it.
  """
  normal: np.ndarray
  offset: float
  inliers: np.ndarray


def camera_up(cam_from_world) -> np.ndarray:
  """(v, 3) world directions of the cameras' up axes (-y of OpenCV cameras), unit."""
  rot = np.asarray(cam_from_world, np.float64)[:, :3, :3]
  return -rot[:, 1, :]          # row 1 of R is the camera's y axis in world coordinates


def ground_plane(points, cam_from_world, *, max_tilt_deg: float = 30.0, tolerance: float = 0.01,
                 min_inlier_fraction: float = 0.05, min_inliers: int = 20, iterations: int = 500,
                 seed: int = 0) -> Optional[GroundPlane]:
  """The dominant plane below the cameras, or None.

  Args:
    points: (n, 3) sparse world points (e.g. the fit's triangulated tracks).
    cam_from_world: (v, 4, 4) extrinsics of the views, OpenCV axes.
    max_tilt_deg: largest angle between the plane normal and the cameras' mean up direction; also
      the largest spread of the cameras' up directions around their mean (cameras that roll or
      look in all directions have no common "down").
    tolerance: inlier distance as a fraction of the median camera-to-point distance.
    min_inlier_fraction, min_inliers: a plane needs at least this many inlier points.
    iterations: RANSAC samples (3 points each); seed: its generator.
  Returns:
    `GroundPlane` refitted to its inliers (least squares), or None when no plane qualifies or all
    cameras are not on its up side.
  """
  points = np.asarray(points, np.float64)
  points = points[np.all(np.isfinite(points), axis=1)]
  cams = np.asarray(cam_from_world, np.float64)
  centres = -np.einsum("vji,vj->vi", cams[:, :3, :3], cams[:, :3, 3])
  ups = camera_up(cams)
  up = ups.mean(0)
  if len(points) < max(min_inliers, 3) or np.linalg.norm(up) < 1e-9:
    return None
  up /= np.linalg.norm(up)
  cos_tilt = np.cos(np.radians(max_tilt_deg))
  if np.min(ups @ up) < cos_tilt:
    return None
  scale = np.median(np.linalg.norm(points[:, None] - centres[None], axis=-1))
  tol = tolerance * scale
  rng = np.random.default_rng(seed)
  best, best_count = None, 0
  for _ in range(iterations):
    a, b, c = points[rng.choice(len(points), 3, replace=False)]
    normal = np.cross(b - a, c - a)
    norm = np.linalg.norm(normal)
    if norm < 1e-12:
      continue
    normal /= norm
    if normal @ up < 0:
      normal = -normal
    if normal @ up < cos_tilt:
      continue
    inliers = np.abs(points @ normal - normal @ a) < tol
    count = int(inliers.sum())
    if count > best_count:
      best, best_count = inliers, count
  if best is None or best_count < max(min_inliers, min_inlier_fraction * len(points)):
    return None
  # Least-squares refit: the normal is the direction of least spread of the inliers.
  mean = points[best].mean(0)
  normal = np.linalg.svd(points[best] - mean)[2][-1]
  normal = normal if normal @ up >= 0 else -normal
  if normal @ up < cos_tilt:
    return None
  offset = float(normal @ mean)
  inliers = np.abs(points @ normal - offset) < tol
  if np.any(centres @ normal - offset <= tol):   # every camera must be above the plane
    return None
  return GroundPlane(normal, offset, inliers)


def view_ground(plane: GroundPlane, cam_from_world) -> tuple[np.ndarray, np.ndarray]:
  """The plane in each camera's coordinates: (v, 3) unit normals pointing down (away from the
  camera) and (v,) distances d > 0 of the camera centres above it, world units."""
  cams = np.asarray(cam_from_world, np.float64)
  down_c = -cams[:, :3, :3] @ plane.normal
  centres = -np.einsum("vji,vj->vi", cams[:, :3, :3], cams[:, :3, 3])
  return down_c, centres @ plane.normal - plane.offset


def ground_hypotheses(down_c, height, intrinsics, h, w, num, band=(0.5, 2.0)):
  """Per-pixel inverse depths of D planes parallel to the ground, for one reference view.

  Args:
    down_c: (3,) unit plane normal in the reference camera's coordinates, pointing down;
    height: scalar d > 0, camera height above the ground plane (world units).
    intrinsics: (3, 3) K; h, w: image size; num: D hypotheses (static).
    band: the planes swept lie band[0] * height to band[1] * height below the camera, evenly
      spaced in q = 1 / d (equal steps are equal disparities, as for the fronto-parallel sweep).
  Returns:
    inv_depths: (D, h, w) float32 inverse depths, decreasing along D (a tiny positive value at
    pixels that never meet the planes); meets: (h, w) bool, pixels below the horizon.
  """
  grid = pixel_grid(h, w, jnp.float32)
  rays = jnp.concatenate([grid, jnp.ones_like(grid[..., :1])], -1) @ inverse_intrinsics(
      jnp.asarray(intrinsics, jnp.float32)).T
  slope = rays @ jnp.asarray(down_c, jnp.float32)                     # n_c . r, (h, w)
  meets = slope > 1e-3
  q = jnp.linspace(1.0 / band[0], 1.0 / band[1], num) / height       # decreasing
  inv = q[:, None, None] * jnp.where(meets, slope, 1e-3)[None]
  return inv.astype(jnp.float32), meets
