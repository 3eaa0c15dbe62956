"""A simulated point tracker: ground-truth projections of surface points, with noise and outliers.

For synthetic scenes. Each track starts at a pixel centre with valid depth in a reference view,
is back-projected with that view's depth and camera to a world point, and projected into every
view. It is visible in a view when the point lies in front of the camera, inside the image
([-0.5, w - 0.5] x [-0.5, h - 0.5]) and not occluded: the view's ground-truth depth at the nearest
pixel agrees with the projected depth within `occlusion_rel_tol` (relative). Visible observations
get isotropic Gaussian pixel noise; then exactly round(`outlier_fraction` * number of visible
observations) of them, chosen at random, are replaced by uniformly random pixels of the image.

Conventions of `jaxrecon.geometry`: OpenCV axes, pixel centres at integers, depth = camera z,
`cam_from_world` maps world to camera. Host-side numpy; seeded by `numpy.random.default_rng`.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np


class SimulatedTracks(NamedTuple):
  """Output of `SimulatedTracker` (the layout of `jaxrecon.experts.tracks.Tracks`).

  pixels: (t, v, 2) float32 observed (u, v) pixels; NaN where not visible or padding.
  visible: (t, v) bool.
  mask: (t,) bool, the row is a real track.
  outliers: (t, v) bool, the observation was replaced by a random pixel.
  points: (t, 3) float64 world points of the tracks (NaN for padding).
  reference: (t,) int32 the view each track was sampled in (-1 for padding).
  """
  pixels: np.ndarray
  visible: np.ndarray
  mask: np.ndarray
  outliers: np.ndarray
  points: np.ndarray
  reference: np.ndarray


@dataclasses.dataclass(frozen=True)
class SimulatedTracker:
  """Samples noisy tracks from ground-truth depth and cameras (see the module docstring).

  num_tracks: t, rows of the output (padded with mask False when too few points qualify).
  min_views: a track must be visible in at least this many views (the reference counts).
  reference_view: sample every track in this view; None draws a view per track uniformly.
  noise_px: standard deviation of the Gaussian pixel noise, pixels.
  outlier_fraction: fraction in [0, 1] of visible observations replaced by random pixels.
  occlusion_rel_tol: |projected z - depth map| <= tol * depth map counts as the same surface.
  max_attempts: rounds of candidate sampling before giving up on filling all rows.
  seed: seed of the numpy Generator.
  """
  num_tracks: int = 1024
  min_views: int = 2
  reference_view: int | None = None
  noise_px: float = 0.5
  outlier_fraction: float = 0.1
  occlusion_rel_tol: float = 0.02
  max_attempts: int = 8
  seed: int = 0

  def __post_init__(self):
    if self.num_tracks < 0 or self.min_views < 1 or self.max_attempts < 1:
      raise ValueError(f"need num_tracks >= 0, min_views >= 1, max_attempts >= 1: {self}")
    if self.noise_px < 0 or not 0.0 <= self.outlier_fraction <= 1.0 or self.occlusion_rel_tol < 0:
      raise ValueError(f"need noise_px >= 0, outlier_fraction in [0, 1], occlusion_rel_tol >= 0: "
                       f"{self}")

  def __call__(self, depth: np.ndarray, intrinsics: np.ndarray,
               cam_from_world: np.ndarray) -> SimulatedTracks:
    """Tracks of one scene.

    Args:
      depth: (v, h, w) ground-truth depth, world units; <= 0 or non-finite is invalid (sky).
      intrinsics: (v, 3, 3) K, pixels.
      cam_from_world: (v, 4, 4) (or (v, 3, 4)) world -> camera transforms.
    Returns:
      `SimulatedTracks` with t = num_tracks.
    """
    depth = np.asarray(depth, np.float64)
    intrinsics = np.asarray(intrinsics, np.float64)
    poses = np.asarray(cam_from_world, np.float64)[:, :3, :]
    num_views, height, width = depth.shape
    if intrinsics.shape != (num_views, 3, 3) or poses.shape != (num_views, 3, 4):
      raise ValueError(f"expected intrinsics ({num_views}, 3, 3) and cam_from_world "
                       f"({num_views}, 4, 4), got {intrinsics.shape} and {poses.shape}")
    if self.reference_view is not None and not 0 <= self.reference_view < num_views:
      raise ValueError(f"reference_view {self.reference_view} not in 0..{num_views - 1}")
    valid = np.isfinite(depth) & (depth > 0)
    rng = np.random.default_rng(self.seed)

    # Start with empty blocks so that num_tracks = 0 (no sampling round) still concatenates.
    points, references = [np.zeros((0, 3))], [np.zeros(0, np.int32)]
    uv_all, seen_all = [np.zeros((0, num_views, 2))], [np.zeros((0, num_views), bool)]
    found = 0
    for _ in range(self.max_attempts):
      if found >= self.num_tracks:
        break
      # Over-sample: some candidates are seen by too few views.
      world, reference = self._sample_points(rng, depth, valid, intrinsics, poses,
                                             2 * (self.num_tracks - found) + 16)
      uv, seen = self._observe(world, depth, valid, intrinsics, poses)
      keep = seen.sum(axis=1) >= self.min_views
      points.append(world[keep])
      references.append(reference[keep])
      uv_all.append(uv[keep])
      seen_all.append(seen[keep])
      found += int(keep.sum())
    count = min(found, self.num_tracks)
    world = np.concatenate(points)[:count]
    reference = np.concatenate(references)[:count]
    uv = np.concatenate(uv_all)[:count]
    seen = np.concatenate(seen_all)[:count]

    uv = uv + self.noise_px * rng.standard_normal(uv.shape)
    outliers = np.zeros(seen.shape, bool)
    observed = np.flatnonzero(seen)
    num_outliers = int(round(self.outlier_fraction * len(observed)))
    chosen = rng.choice(observed, size=num_outliers, replace=False)
    outliers.reshape(-1)[chosen] = True
    random_pixels = rng.uniform([-0.5, -0.5], [width - 0.5, height - 0.5], size=(num_outliers, 2))
    uv.reshape(-1, 2)[chosen] = random_pixels

    t = self.num_tracks
    pixels = np.full((t, num_views, 2), np.nan, np.float32)
    pixels[:count] = np.where(seen[..., None], uv, np.nan)
    visible = np.zeros((t, num_views), bool)
    visible[:count] = seen
    out_mask = np.zeros((t, num_views), bool)
    out_mask[:count] = outliers
    out_points = np.full((t, 3), np.nan)
    out_points[:count] = world
    out_reference = np.full(t, -1, np.int32)
    out_reference[:count] = reference
    return SimulatedTracks(pixels, visible, np.arange(t) < count, out_mask, out_points,
                           out_reference)

  def _sample_points(self, rng, depth, valid, intrinsics, poses, n):
    """(n, 3) world points at random valid pixel centres, and their (n,) reference views."""
    num_views, height, width = depth.shape
    if self.reference_view is None:
      views = np.flatnonzero(valid.reshape(num_views, -1).any(axis=1))
      if len(views) == 0:
        return np.zeros((0, 3)), np.zeros(0, np.int32)
      reference = rng.choice(views, size=n)
    else:
      reference = np.full(n, self.reference_view)
    flat = np.zeros(n, np.int64)
    for view in np.unique(reference):
      pixels = np.flatnonzero(valid[view])
      rows = np.flatnonzero(reference == view)
      if len(pixels) == 0:
        reference[rows] = -1
        continue
      flat[rows] = rng.choice(pixels, size=len(rows))
    ok = reference >= 0
    reference, flat = reference[ok], flat[ok]
    rows, cols = np.divmod(flat, width)
    z = depth[reference, rows, cols]
    homogeneous = np.stack([cols, rows, np.ones_like(cols)], axis=-1).astype(np.float64)
    camera = np.einsum("nij,nj->ni", np.linalg.inv(intrinsics[reference]), homogeneous) * z[:, None]
    rotation, translation = poses[reference, :, :3], poses[reference, :, 3]
    # world = R^T (camera - t) for camera = R world + t.
    world = np.einsum("nji,nj->ni", rotation, camera - translation)
    return world, reference.astype(np.int32)

  def _observe(self, world, depth, valid, intrinsics, poses):
    """Noise-free (n, v, 2) projections and (n, v) visibility of world points (n, 3)."""
    num_views, height, width = depth.shape
    camera = np.einsum("vij,nj->nvi", poses[:, :, :3], world) + poses[None, :, :, 3]
    z = camera[..., 2]
    front = z > 0
    safe_z = np.where(front, z, 1.0)
    pixel = np.einsum("vij,nvj->nvi", intrinsics, camera / safe_z[..., None])[..., :2]
    inside = (front & (pixel[..., 0] >= -0.5) & (pixel[..., 0] <= width - 0.5)
              & (pixel[..., 1] >= -0.5) & (pixel[..., 1] <= height - 0.5))
    cols = np.clip(np.rint(np.where(inside, pixel[..., 0], 0)), 0, width - 1).astype(np.int64)
    rows = np.clip(np.rint(np.where(inside, pixel[..., 1], 0)), 0, height - 1).astype(np.int64)
    view = np.broadcast_to(np.arange(num_views), z.shape)
    surface = depth[view, rows, cols]
    surface_valid = valid[view, rows, cols]
    tolerance = self.occlusion_rel_tol * np.where(surface_valid, surface, 1.0)
    unoccluded = surface_valid & (np.abs(z - surface) <= tolerance)
    return pixel, inside & unoccluded
