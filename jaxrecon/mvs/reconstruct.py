"""`reconstruct_dense`: the whole plane-sweep pipeline for a calibrated image set.

Per reference view: neighbours and depth range (`neighbours`), cost volume (`cost`), depth and
photometric confidence (`depth`); then across views the geometric consistency check and the fused
point cloud (`consistency`). Every step is a jit-compiled function of fixed shapes, so one
compilation serves all views; this module only loops over the views and gathers the results.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import jax.numpy as jnp
import numpy as np

from jaxrecon import xla_options
from jaxrecon.mvs.consistency import fuse_points, geometric_consistency
from jaxrecon.mvs.cost import sweep_cost
from jaxrecon.mvs.depth import (inverse_depth_hypotheses, median_filter, refinement_hypotheses,
                                winner_take_all)
from jaxrecon.mvs.ground import GroundPlane, ground_hypotheses, ground_plane, view_ground
from jaxrecon.mvs.neighbours import (covering_neighbours, depth_ranges, frustum_points,
                                     select_neighbours, view_scores)


@dataclasses.dataclass(frozen=True)
class MVSSettings:
  """Settings of `reconstruct_dense` (pixels, world units and counts as named).

  num_neighbours: N views matched against each reference view (capped at v - 1).
  view_peak_degrees: triangulation angle the neighbour choice favours most (`pair_weights`).
  cover_neighbours: choose the neighbours by greedy cover of the reference view's points
    (`select_covering_neighbours`, each point counted until top_k chosen views see it) instead of
    by the plain pair score.
  top_k: the k best neighbours' costs averaged per pixel and hypothesis (occlusion robustness).
  num_hypotheses: D inverse depths swept, evenly spaced between near and far.
  refine_hypotheses: R per-pixel hypotheses of a second sweep across one coarse step either side
    of the first estimate (0: no second sweep).
  window_radius: ZNCC window half-size r (a (2r+1)^2 window), pixels.
  min_std: grey-level standard deviation (images in [0, 1]) below which a window is textureless.
  chunk: hypotheses warped at a time (memory: chunk x N images of h x w).
  near, far: depth range (world units); required when no sparse points are given, and when given
    they override the range the points imply.
  depth_margin: widening of the points' range, as a fraction of its inverse-depth span.
  filter_depth: 3 x 3 median filter of each depth map over its photometrically trusted pixels.
  min_photometric_confidence: a pixel below it is neither used by the filter nor kept.
  pixel_tolerance, depth_tolerance: geometric consistency (pixels; relative depth).
  min_consistent: neighbours that must confirm a depth for it to be kept.
  ground_sweep: also sweep planes parallel to the ground found in the sparse points
    (`mvs.ground`), keeping per pixel the direction with the lower best cost; no effect without
    sparse points or where no ground plane qualifies.
  ground_band: the ground-parallel planes lie band[0] to band[1] camera heights below the camera.
  ground_max_tilt_deg: the ground normal's largest angle from the cameras' mean up direction.
  """
  num_neighbours: int = 4
  view_peak_degrees: float = 8.0
  cover_neighbours: bool = False
  top_k: int = 2
  num_hypotheses: int = 64
  refine_hypotheses: int = 8
  window_radius: int = 3
  min_std: float = 2e-3
  chunk: int = 8
  near: Optional[float] = None
  far: Optional[float] = None
  depth_margin: float = 0.25
  filter_depth: bool = True
  min_photometric_confidence: float = 0.05
  pixel_tolerance: float = 1.0
  depth_tolerance: float = 0.01
  min_consistent: int = 2
  ground_sweep: bool = False
  ground_band: tuple = (0.5, 2.0)
  ground_max_tilt_deg: float = 30.0

  def __post_init__(self):
    # A list (from JSON or a config file) would make the settings unhashable, and they are a
    # static argument of the jit-compiled `view_depth`.
    band = tuple(float(x) for x in self.ground_band)
    if len(band) != 2 or not 0.0 < band[0] < band[1]:
      raise ValueError(f"ground_band: expected (low, high) with 0 < low < high, got {band}")
    object.__setattr__(self, "ground_band", band)


# The settings chosen on the procedural world's validation scenes (never on a test or real scene;
# experiments/mvs_synthetic.md), with the sparse model's observations given as point_views: a
# geometric check looser than MVSSettings' default, neighbours that favour 4 rather than 8 degrees
# of triangulation angle, and the ground-parallel second sweep direction; 0.31 % median relative
# error at 59.4 % coverage on the test scenes. Used by the commands (`MVSSettings(**VALIDATED)`).
VALIDATED = dict(pixel_tolerance=3.0, depth_tolerance=0.03, min_consistent=1,
                 view_peak_degrees=4.0, ground_sweep=True)


@dataclasses.dataclass(frozen=True)
class DenseResult:
  """Output of `reconstruct_dense` (numpy arrays; v views of h x w pixels, N neighbours).

  depth: (v, h, w) float32 camera z (world units): the fused depth where `confidence` > 0, the
    view's own filtered winner elsewhere (kept for inspection; not trustworthy there).
  confidence: (v, h, w) float32 in [0, 1]: photometric confidence x fraction of neighbours that
    confirm the depth; 0 where the pixel failed min_photometric_confidence or min_consistent.
  photometric_confidence: (v, h, w) float32 from the cost profile alone.
  consistent_views: (v, h, w) int32 neighbours confirming the depth.
  neighbours: (v, N) int32; depth_range: (v, 2) (near, far) swept, world units.
  points: (n, 3) float32 world points of the pixels with confidence > 0; colors: (n, 3) uint8;
    point_confidence: (n,) float32; point_view: (n,) int32 source view; point_pixel: (n, 2) int32
    source (u, v).
  ground: the `mvs.ground.GroundPlane` swept as a second direction (world frame), or None.
  """
  depth: np.ndarray
  confidence: np.ndarray
  photometric_confidence: np.ndarray
  consistent_views: np.ndarray
  neighbours: np.ndarray
  depth_range: np.ndarray
  points: np.ndarray
  colors: np.ndarray
  point_confidence: np.ndarray
  point_view: np.ndarray
  point_pixel: np.ndarray
  ground: Optional[GroundPlane] = None


def grey_images(images):
  """(..., h, w, 3) uint8 RGB -> (..., h, w) float32 luma (Rec. 601 weights) in [0, 1]."""
  return np.asarray(images, np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255.0


@functools.partial(xla_options.jit, static_argnames=("settings",))
def view_depth(ref, srcs, k_ref, k_srcs, cam_ref, cam_srcs, near_far, settings: MVSSettings,
               ground=None):
  """Depth and photometric confidence of one reference view against its neighbours.

  Coarse sweep over settings.num_hypotheses planes, winner-take-all, a per-pixel refinement sweep
  (settings.refine_hypotheses), then the median filter over the photometrically trusted pixels.
  With `ground`, a second coarse sweep over planes parallel to the ground (`mvs.ground`) and, per
  pixel, the winner of the direction with the lower best cost.

  Args:
    ref: (h, w) grey reference image; srcs: (N, h, w) grey neighbours (`grey_images`).
    k_ref: (3, 3) K; k_srcs: (N, 3, 3); cam_ref: (4, 4) and cam_srcs: (N, 4, 4) cam_from_world.
    near_far: (2,) depth range swept, world units (settings.near/far are not read here).
    settings: `MVSSettings` (static: one compilation per settings value and shape).
    ground: None, or ((3,) ground normal in the reference camera's coordinates pointing down,
      scalar camera height above the ground, world units) from `mvs.ground.view_ground`.
  Returns:
    depth: (h, w) camera z of the reference view, world units; confidence: (h, w) in [0, 1] from
    the coarse cost profile.
  """
  s = settings
  h, w = ref.shape
  sweep = functools.partial(sweep_cost, ref, srcs, k_ref, k_srcs, cam_ref, cam_srcs,
                            radius=s.window_radius, top_k=min(s.top_k, srcs.shape[0]),
                            chunk=s.chunk, min_std=s.min_std)
  inv_depths = inverse_depth_hypotheses(near_far[0], near_far[1], s.num_hypotheses)
  out = winner_take_all(sweep(inv_depths), inv_depths)
  inv_depth, confidence = out["inv_depth"], out["confidence"]
  step = inv_depths[1] - inv_depths[0]
  if ground is not None:
    planes, meets = ground_hypotheses(ground[0], ground[1], k_ref, h, w, s.num_hypotheses,
                                      band=s.ground_band)
    # Pixels at or above the horizon never meet a ground-parallel plane: worst cost there.
    flat = winner_take_all(jnp.where(meets[None], sweep(planes), 2.0), planes)
    use = meets & (flat["confidence"] > 0) & (flat["best_cost"] < out["best_cost"])
    inv_depth = jnp.where(use, flat["inv_depth"], inv_depth)
    confidence = jnp.where(use, flat["confidence"], confidence)
    step = jnp.where(use, planes[1] - planes[0], step)
  if s.refine_hypotheses:
    fine = refinement_hypotheses(inv_depth, step, s.refine_hypotheses)
    inv_depth = winner_take_all(sweep(fine), fine)["inv_depth"]
  if s.filter_depth:
    inv_depth = median_filter(inv_depth, confidence >= s.min_photometric_confidence)
  return 1.0 / inv_depth, confidence


def _check_inputs(images, intrinsics, cam_from_world, points, point_views):
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
    raise ValueError(f"images: expected uint8 (v, h, w, 3), got {images.dtype} {images.shape}")
  v = images.shape[0]
  if v < 2:
    raise ValueError(f"images: multi-view stereo needs at least 2 views, got {v}")
  for name, x, shape in (("intrinsics", intrinsics, (v, 3, 3)),
                         ("cam_from_world", cam_from_world, (v, 4, 4))):
    if np.shape(x) != shape:
      raise ValueError(f"{name}: expected shape {shape}, got {np.shape(x)}")
  if points is not None and (np.ndim(points) != 2 or np.shape(points)[1] != 3):
    raise ValueError(f"points: expected shape (n, 3), got {np.shape(points)}")
  if point_views is not None and (points is None
                                  or np.shape(point_views) != (len(points), v)):
    raise ValueError(f"point_views: expected shape (n, v) = ({'?' if points is None else len(points)}"
                     f", {v}) with the points, got {np.shape(point_views)}")
  return images


def reconstruct_dense(images, intrinsics, cam_from_world, points=None,
                      settings: MVSSettings = MVSSettings(), point_views=None) -> DenseResult:
  """Dense depth, confidence and a fused point cloud of a calibrated, static image set.

  Args:
    images: (v, h, w, 3) uint8 RGB, one size.
    intrinsics: (v, 3, 3) K, pixels (conventions of `jaxrecon.geometry`).
    cam_from_world: (v, 4, 4) extrinsics, OpenCV axes, any world unit.
    points: optional (n, 3) sparse world points (e.g. triangulated tracks); they choose the
      neighbours and the depth range. Without them, settings.near and settings.far are required and
      the neighbours are chosen from the cameras' frusta between them.
    settings: `MVSSettings`.
    point_views: optional (n, v) bool, which views observed each point (a sparse model's inlier
      observations). The neighbours are then scored on the points two views both observed rather
      than on those both could see by projection: projection ignores occlusion and, on a camera
      driving ahead, makes every earlier frame look as if it saw all of a later one.
  Returns:
    `DenseResult`.
  Raises:
    ValueError: wrong shapes, fewer than 2 views, or neither points nor near/far.
  """
  images = _check_inputs(images, intrinsics, cam_from_world, points, point_views)
  v, h, w = images.shape[:3]
  s = settings
  k = jnp.asarray(intrinsics, jnp.float32)
  cams = jnp.asarray(cam_from_world, jnp.float32)
  given_range = s.near is not None and s.far is not None
  if points is not None and len(points) == 0:
    points, point_views = None, None
  given_points = points is not None
  if points is None:
    if not given_range:
      raise ValueError("reconstruct_dense: without sparse points (none given, or an empty set), "
                       "settings.near and settings.far must give the depth range")
    points = frustum_points(k, cams, s.near, s.far, image_size=(h, w))
  points = jnp.asarray(points, jnp.float32)
  num_neighbours = min(s.num_neighbours, v - 1)
  if s.cover_neighbours:
    neighbours, _ = covering_neighbours(points, k, cams, image_size=(h, w), num=num_neighbours,
                                        cover=min(s.top_k, num_neighbours), observed=point_views,
                                        peak_degrees=s.view_peak_degrees)
  else:
    neighbours, _ = select_neighbours(
        view_scores(points, k, cams, image_size=(h, w), observed=point_views,
                    peak_degrees=s.view_peak_degrees), num=num_neighbours)
  if given_range:
    ranges = jnp.tile(jnp.asarray([s.near, s.far], jnp.float32), (v, 1))
  else:
    ranges = depth_ranges(points, k, cams, image_size=(h, w), margin=s.depth_margin)

  plane, ground = None, [None] * v
  if s.ground_sweep and given_points:
    plane = ground_plane(np.asarray(points), np.asarray(cam_from_world),
                         max_tilt_deg=s.ground_max_tilt_deg)
    if plane is not None:
      down, heights = view_ground(plane, np.asarray(cam_from_world))
      ground = [(jnp.asarray(down[r], jnp.float32), jnp.float32(heights[r])) for r in range(v)]

  grey = jnp.asarray(grey_images(images))
  # The range travels in `ranges`; without it in the static settings, runs with and without a
  # given near/far share one compilation.
  per_view = dataclasses.replace(s, near=None, far=None)
  depth, photo = [], []
  for r in range(v):
    nbrs = neighbours[r]
    d, c = view_depth(grey[r], grey[nbrs], k[r], k[nbrs], cams[r], cams[nbrs], ranges[r],
                      settings=per_view, ground=ground[r])
    depth.append(d)
    photo.append(c)
  depth, photo = jnp.stack(depth), jnp.stack(photo)
  trusted = jnp.where(photo >= s.min_photometric_confidence, depth, 0.0)
  count, fused = geometric_consistency(trusted, k, cams, neighbours,
                                       pixel_tolerance=s.pixel_tolerance,
                                       depth_tolerance=s.depth_tolerance)
  keep = (count >= s.min_consistent) & (photo >= s.min_photometric_confidence)
  confidence = jnp.where(keep, photo * count / num_neighbours, 0.0)
  depth = jnp.where(keep, fused, depth)
  cloud = fuse_points(depth, confidence, images, k, cams)
  return DenseResult(
      depth=np.asarray(depth, np.float32), confidence=np.asarray(confidence, np.float32),
      photometric_confidence=np.asarray(photo, np.float32),
      consistent_views=np.asarray(count, np.int32), neighbours=np.asarray(neighbours),
      depth_range=np.asarray(ranges, np.float32), points=cloud["points"], colors=cloud["colors"],
      point_confidence=cloud["confidence"], point_view=cloud["view"],
      point_pixel=cloud["pixel"], ground=plane)
