"""Settings, result and warning class of per-scene fitting (`jaxrecon.fit.fit_scene`)."""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from jaxrecon.errors import UserError
from jaxrecon.losses.registration import FORMS

REFINERS = ("bundle", "registration")


class FitWarning(UserWarning):
  """A fit that returned but should not be trusted blindly (unregistered views, a stage that did not
  converge, a poor residual or inlier fraction, duplicate views, a rotation-only scene)."""


@dataclasses.dataclass(frozen=True)
class FitSettings:
  """Hyper-parameters of `fit_scene` (hashable).

  Two-view geometry and view graph (`fit.twoview`, `fit.viewgraph`):
    threshold_px: inlier threshold of the pair models, pixels.
    min_pair_inliers: a pair joins the view graph with at least this many inliers.
    max_rotation_inlier_ratio, min_pair_angle_deg, duplicate_px: a pair whose inliers a pure
      rotation explains this well (ratio to the essential matrix's), whose median triangulation
      angle is below min_pair_angle_deg, or whose median displacement is below duplicate_px
      pixels has no usable baseline (see `fit.twoview`).
    rotation_scale_deg: Cauchy scale of the rotation averaging's IRLS.
    max_rotation_residual_deg: pairs whose relative rotation the averaged rotations miss by more
      are dropped from the view graph (as global SfM systems filter their view graphs).
    conflict_ratio, conflict_min_expected: two groups of views (split along the view graph's
      spanning tree) are cut apart when they find fewer than conflict_ratio times the
      observations of each other's points that the scene's usual recall predicts, with at
      least conflict_min_expected predicted (`fit.conflicts`; ratio 0 turns the check off).
      Measured: correct splits find 0.39-1.0 times the prediction, lego's false ones 0-0.32.
  Refinement:
    refine: "bundle" (default: Levenberg-Marquardt bundle adjustment of poses and points,
      `fit.bundle`) or "registration" (the library's registration loss in `form`, L-BFGS over the
      poses with the tracks re-triangulated, `fit.lbfgs`; takes `depth_maps`).
    kernel: the bundle adjuster's robust kernel, "geman_mcclure" (default) or "cauchy" (see
      `fit.bundle`).
    stages_px: the bundle adjuster's robust schedule: one LM stage per kernel scale (pixels);
      after each stage at most max_error_px wide, observations off by more than max_error_px
      are dropped. Wide first (an initialisation a degree off misses by pixels), 0.5 px last:
      about three times the localisation noise of SIFT keypoints (0.1-0.2 px), so inliers keep
      nearly full weight while the remaining 1-4 px outliers stop pulling. (Measured with the
      Cauchy kernel on the 12 fit cases that register: the 0.5 px stage lowers every median
      rotation error or leaves it, e.g. templeRing 0.194 -> 0.153 deg.)
    refine_focal: the intrinsics are approximate (e.g. video without calibration): the bundle
      adjuster also refines one focal scale shared by every view (each view's fx, fy times the
      same factor; principal points held), after the positions-only stage. The fitted
      intrinsics are `FitResult.intrinsics`. Needs views that turn or move enough to make the
      focal observable; the refined scale is reported, not trusted blindly: when it leaves
      [0.5, 2] (a forward-moving camera that hardly turns leaves the focal unobservable, and the
      refinement drifts towards 0 or infinity) the fit is redone with the given focal and a
      warning says so.
    max_iterations: LM iterations per stage at most; tolerance: a stage has converged when the
      relative cost decrease (or the relative step) falls below it.
    max_error_px: observations with a larger final error are outliers (COLMAP's default 4 px).
    min_track_angle_deg: tracks whose rays spread less are not part of the model (depth
      unobservable; COLMAP filters at 1.5 degrees).
  Registration (which views are trusted, `fit.report`):
    min_view_observations: a registered view keeps at least this many inlier observations (30:
      COLMAP's incremental mapper registers an image with at least 30 2D-3D inliers,
      `abs_pose_min_num_inliers`; with 15, lego's view 6 was registered 10 deg off on the 18
      observations of one wrong pair).
    max_view_residual_px: ... and a median error at most this.
  Warnings:
    warn_residual_px, warn_inlier_fraction: a final median error above / inlier fraction below
      these raise a `FitWarning`.
  The "registration" refiner (see `fit.lbfgs`): form (one of `losses.registration.FORMS`),
    stages ((robust_scale_deg, steps), ...), depths ("triangulated" or "free"), lbfgs_memory,
    robust, depth_weight, patience, first_step, max_evals_per_step, track_weighting.
  seed: RANSAC seed (OpenCV), for reproducible pairs.
  """
  threshold_px: float = 1.0
  min_pair_inliers: int = 15
  max_rotation_inlier_ratio: float = 0.8
  min_pair_angle_deg: float = 1.0
  duplicate_px: float = 0.5
  rotation_scale_deg: float = 5.0
  max_rotation_residual_deg: float = 10.0
  conflict_ratio: float = 0.25
  conflict_min_expected: float = 8.0
  refine: str = "bundle"
  kernel: str = "geman_mcclure"
  stages_px: tuple = (4.0, 2.0, 1.0, 0.5)
  refine_focal: bool = False
  max_iterations: int = 100
  tolerance: float = 1e-6
  max_error_px: float = 4.0
  min_track_angle_deg: float = 1.0
  min_view_observations: int = 30
  max_view_residual_px: float = 4.0
  warn_residual_px: float = 2.0
  warn_inlier_fraction: float = 0.7
  form: str = "angular"
  stages: tuple = ((5.0, 50), (1.0, 100), (0.5, 100), (0.25, 200))
  depths: str = "triangulated"
  lbfgs_memory: int = 20
  robust: str = "cauchy"
  depth_weight: float = 1.0
  patience: int = 10
  first_step: float = 0.1
  max_evals_per_step: int = 4
  track_weighting: str = "observations"
  seed: int = 0

  def __post_init__(self):
    if self.refine not in REFINERS:
      raise UserError(f"refine: expected one of {REFINERS}, got {self.refine!r}")
    if self.kernel not in ("geman_mcclure", "cauchy"):
      raise UserError(f"kernel: expected 'geman_mcclure' or 'cauchy', got {self.kernel!r}")
    if self.form not in FORMS:
      raise UserError(f"form: expected one of {FORMS}, got {self.form!r}")
    if self.depths not in ("triangulated", "free"):
      raise UserError(f"depths: expected 'triangulated' or 'free', got {self.depths!r}")
    if not self.stages_px or any(s <= 0 for s in self.stages_px):
      raise UserError(f"stages_px: expected positive pixel scales, got {self.stages_px}")
    if not self.stages or any(s <= 0 or n < 0 for s, n in self.stages):
      raise UserError(f"stages: expected ((scale_deg > 0, steps >= 0), ...), got {self.stages}")
    if self.track_weighting not in ("pairs", "observations", "tracks"):
      raise UserError(f"track_weighting: expected 'pairs', 'observations' or 'tracks', got "
                       f"{self.track_weighting!r}")
    if self.tolerance < 0 or self.patience < 1 or self.max_iterations < 1:
      raise UserError(f"tolerance, patience, max_iterations: expected >= 0, >= 1, >= 1, got "
                       f"{self.tolerance}, {self.patience}, {self.max_iterations}")
    if self.min_pair_inliers < 5 or self.threshold_px <= 0 or self.max_error_px <= 0:
      raise UserError("min_pair_inliers must be >= 5 (the five-point minimum) and threshold_px, "
                       "max_error_px positive")


class FitResult(NamedTuple):
  """What `fit_scene` returns (numpy arrays; v views, t input track rows).

  cam_from_world: (v, 4, 4) float64 fitted extrinsics; NaN (every entry) for views that are not
    registered. Gauge: the first registered view is the identity and the median depth of the
    inlier observations is 1; or, given `init_cam_from_world`, the frame and scale of those.
  registered: (v,) bool; the views whose pose is an answer.
  points: (t, 3) float64 world point of each track, NaN where the track is not in the model
    (fewer than two inlier observations, or rays spreading less than min_track_angle_deg).
  inlier: (t, v) bool, the observation is part of the final model.
  track_depth: (t, v) float64 depth (camera z) of each inlier observation, NaN elsewhere.
  num_observations: (v,) int inlier observations per view.
  view_residual_px: (v,) float64 median error of the view's inlier observations (pixels), NaN
    when not registered.
  components: tuple of view tuples, the view graph's connected components, largest first; only
    the first is registered.
  duplicates: tuple of (i, j) view pairs with (near) identical observations (zero baseline).
  conflicts: tuple of (i, j) view pairs cut from the view graph because the views on their two
    sides miss each other's points (a false match of repeated or symmetric structure; see
    `fit.conflicts`).
  stages: tuple of dicts (name, iterations, converged, cost_start, cost_end, message; warm_up:
    True for a warm start whose non-convergence is not warned about) of every
    optimisation stage in order.
  warnings: tuple of str, each also issued as a `FitWarning`.
  init_cam_from_world: (v, 4, 4) float64 the global initialisation in the same gauge (NaN rows
    where not registered).
  intrinsics: (v, 3, 3) float64 the intrinsics of the fit: the input ones, or with
    `FitSettings.refine_focal` their focal lengths times the fitted shared scale.
  init_seconds, fit_seconds: wall-clock time of the initialisation (two-view geometry, rotation
    averaging, positioning) and of the refinement (compilation included).
  """
  cam_from_world: np.ndarray
  registered: np.ndarray
  points: np.ndarray
  inlier: np.ndarray
  track_depth: np.ndarray
  num_observations: np.ndarray
  view_residual_px: np.ndarray
  components: tuple
  duplicates: tuple
  conflicts: tuple
  stages: tuple
  warnings: tuple
  init_cam_from_world: np.ndarray
  intrinsics: np.ndarray
  init_seconds: float
  fit_seconds: float

  def model_points(self, views) -> tuple[np.ndarray, np.ndarray]:
    """The model's points and which of `views` observed each (what multi-view stereo needs to
    choose neighbours and depth ranges: `mvs.reconstruct_dense(..., points, point_views=...)`).

    Args:
      views: (m,) int view indices, in the order the caller passes their images.
    Returns:
      points: (n, 3) float64 world points of the tracks in the model; observed: (n, m) bool, the
      inlier observations of those points in `views`.
    """
    in_model = np.all(np.isfinite(self.points), axis=1)
    return self.points[in_model], self.inlier[in_model][:, np.asarray(views)]
