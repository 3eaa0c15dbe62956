"""`fit_scene`: cameras and points of one scene from its tracks, with an honest registration report.

Pipeline (each step its own module):
  1. `fit.init.global_init`: two-view geometry with degeneracy detection, the view graph's
     components, robust rotation averaging and point-camera positioning (no ordering assumed);
  2. refinement of the largest component: `fit.bundle` (default: Levenberg-Marquardt bundle
     adjustment of poses and points, robust stages, outlier observations dropped between them)
     or `fit.lbfgs` (the library's registration loss, `refine="registration"`);
  3. `fit.report`: which views the final model explains (registered), per-view observation
     counts and residuals, and `FitWarning`s for whatever a user must not miss.

Conventions of `jaxrecon.geometry`: OpenCV axes, pixel centres at integers, `cam_from_world`.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Optional

import numpy as np

from jaxrecon.errors import UserError
from jaxrecon.fit import bundle, lbfgs, report
from jaxrecon.fit.init import GlobalInit, global_init
from jaxrecon.fit.positions import meet_rays, world_rays
from jaxrecon.fit.settings import FitResult, FitSettings
from jaxrecon.fit.twoview import bearings

_F32 = np.float32


def _check_inputs(tracks, visibility, intrinsics, depth_maps):
  tracks = np.asarray(tracks, np.float64)
  if tracks.ndim != 3 or tracks.shape[-1] != 2:
    raise ValueError(f"tracks: expected (t, v, 2) pixels, got shape {tracks.shape}")
  t, v = tracks.shape[:2]
  if v < 2:
    raise UserError(f"tracks: need at least 2 views, got {v}")
  if t == 0:
    raise UserError("tracks: no tracks (t = 0)")
  visibility = np.asarray(visibility)
  if visibility.shape != (t, v):
    raise ValueError(f"visibility: expected shape {(t, v)}, got {visibility.shape}")
  visibility = (visibility > 0) & np.all(np.isfinite(tracks), -1)
  # Tracks seen once carry no constraint.
  visibility &= visibility.sum(1, keepdims=True) >= 2
  if not visibility.any():
    raise UserError("visibility: no track is seen (with finite pixels) in two or more views")
  intrinsics = np.asarray(intrinsics, np.float64)
  if intrinsics.shape != (v, 3, 3):
    raise ValueError(f"intrinsics: expected shape {(v, 3, 3)}, got {intrinsics.shape}")
  if depth_maps is not None:
    depth_maps = np.asarray(depth_maps, np.float64)
    if depth_maps.ndim != 3 or depth_maps.shape[0] != v:
      raise ValueError(f"depth_maps: expected (v={v}, h, w), got shape {depth_maps.shape}")
  return np.where(visibility[..., None], tracks, 0.0), visibility, intrinsics, depth_maps


def _given_init(tracks, visibility, intrinsics, init_cam_from_world):
  """A `GlobalInit` from user cameras: every view with observations in one component."""
  cam = np.asarray(init_cam_from_world, np.float64)
  v = visibility.shape[1]
  if cam.shape != (v, 4, 4):
    raise ValueError(f"init_cam_from_world: expected shape {(v, 4, 4)}, got {cam.shape}")
  rotations, centres = cam[:, :3, :3], -np.einsum("vji,vj->vi", cam[:, :3, :3], cam[:, :3, 3])
  points = meet_rays(world_rays(tracks, visibility, intrinsics, rotations),
                     visibility.astype(np.float64), centres)
  main = [i for i in range(v) if visibility[:, i].any()]
  rest = [[i] for i in range(v) if i not in main]
  return GlobalInit(rotations, centres, points, [], [main] + rest, np.zeros(0), False)


def _poses(rotations, centres):
  """(v, 4, 4) cam_from_world from rotations (re-orthonormalised in float64: the solver's are
  float32) and centres."""
  u, _, vt = np.linalg.svd(np.asarray(rotations, np.float64))
  det = np.linalg.det(u @ vt)
  rotations = u @ (np.eye(3) * np.stack([np.ones_like(det), np.ones_like(det), det], -1)[:, None]) @ vt
  out = np.tile(np.eye(4), (len(rotations), 1, 1))
  out[:, :3, :3] = rotations
  out[:, :3, 3] = -np.einsum("vij,vj->vi", rotations, centres)
  return out


def _observations(tracks, visibility, intrinsics, active):
  """Observation index arrays, bearings and focal lengths of the active views (numpy)."""
  mask = visibility & active[None, :]
  mask &= mask.sum(1, keepdims=True) >= 2
  tt, vv = np.nonzero(mask)
  bearing = np.zeros((len(tt), 3))
  for i in np.nonzero(active)[0]:
    sel = vv == i
    bearing[sel] = bearings(tracks[tt[sel], i], intrinsics[i])
  focal = 0.5 * (intrinsics[vv, 0, 0] + intrinsics[vv, 1, 1])
  return tt, vv, bearing, focal


def _scaled_focal(intrinsics, scale):
  """(v, 3, 3) intrinsics with fx, fy (and the skew) times `scale`, principal points held."""
  out = np.array(intrinsics, np.float64)
  out[:, :2, :2] *= scale
  return out


def _track_angles_deg(points, centres, tt, vv, use, t):
  """(t,) largest angle between two used rays of each track (degrees; 0 with < 2 rays)."""
  rays = points[tt] - centres[vv]
  rays = rays / np.maximum(np.linalg.norm(rays, axis=1, keepdims=True), 1e-300)
  out = np.zeros(t)
  # The angle to the track's mean ray, doubled: a cheap, order-free proxy of the widest pair.
  mean = np.zeros((t, 3))
  np.add.at(mean, tt[use], rays[use])
  mean /= np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-300)
  ang = np.degrees(np.arccos(np.clip(np.sum(rays * mean[tt], 1), -1.0, 1.0)))
  np.maximum.at(out, tt[use], 2.0 * ang[use])
  return out


def _explained(err, weight, vv, registered, settings):
  """Views the model explains (v,) bool: registered ones keeping at least min_view_observations
  inlier observations with a median error of at most max_view_residual_px."""
  v = len(registered)
  counts = np.bincount(vv[weight], minlength=v)
  med = np.array([np.median(err[weight & (vv == i)]) if counts[i] else np.inf for i in range(v)])
  return registered & (counts >= settings.min_view_observations) & (
      med <= settings.max_view_residual_px)


def _model(points, centres, err, weight, tt, vv, shape, settings, at_infinity=False):
  """The final model: (points (t, 3) NaN where not in it, errors (t, v) px, inlier (t, v)).

  An observation is in the model when it is an inlier (`weight`) of a track whose rays spread at
  least min_track_angle_deg, and the track keeps two of them."""
  t, v = shape
  angles = (np.full(t, np.inf) if at_infinity
            else _track_angles_deg(points, centres, tt, vv, weight, t))
  in_model = weight & (angles[tt] >= settings.min_track_angle_deg)
  errors = np.full((t, v), np.nan)
  errors[tt, vv] = err
  inlier = np.zeros((t, v), bool)
  inlier[tt[in_model], vv[in_model]] = True
  has_point = inlier.sum(1) >= 2
  inlier &= has_point[:, None]
  return np.where(has_point[:, None], points, np.nan), errors, inlier


def _bundle(init, tracks, visibility, intrinsics, active, settings):
  """Bundle adjustment of the active views: (rotations, centres, points, errors (t, v) px,
  inlier (t, v), registered (v,), stages)."""
  t, v = visibility.shape
  tt, vv, bear, focal = _observations(tracks, visibility, intrinsics, active)
  at_inf = init.rotation_only
  rot = np.where(active[:, None, None], init.rotations, np.eye(3))
  centres = np.where(active[:, None], np.nan_to_num(init.centres), 0.0)
  points = np.nan_to_num(init.points)
  # Unknowns of order 1: the median camera-to-point distance becomes 1.
  ref = centres[np.nonzero(active)[0][0]].copy()
  scale = 1.0 if at_inf else float(np.median(np.linalg.norm(points[tt] - centres[vv], axis=1)))
  scale = scale if np.isfinite(scale) and scale > 0 else 1.0
  if not at_inf:
    centres, points = (centres - ref) / scale, (points - ref) / scale
  weight = np.ones(len(tt))
  obs = bundle.observations(vv, tt, bear, focal, weight, _F32)
  stages, registered, log_scale = [], active.copy(), 0.0
  if not at_inf:
    # Centres and points first, the averaged rotations held: the positions of the global
    # initialisation are its weakest part (translation directions several degrees off where
    # rotations are within one), and moving everything at once from there can settle in a
    # basin with the rotations bent to fit (measured on the weakly textured orbit: relative
    # rotations 2.6 deg off at a higher cost than this start reaches with them held).
    sigma = settings.stages_px[0]
    rot, centres, points, log_scale, info = bundle.run_stage(
        *(np.asarray(x, _F32) for x in (rot, centres, points)), obs, sigma,
        max_iterations=settings.max_iterations, tolerance=settings.tolerance, at_infinity=False,
        kernel=settings.kernel, fix_rotations=True, refine_focal=settings.refine_focal)
    # A warm start: the stages after it move everything, so its iteration limit is no warning
    # (with approximate intrinsics the held rotations cannot fit, and it crawls to the limit).
    stages.append(dict(name=f"positions, {settings.kernel} {sigma:g} px", warm_up=True,
                       **info._asdict()))
  schedule = list(settings.stages_px)
  if not at_inf:
    # Graduated non-convexity starts as wide as the errors are, no wider: a kernel much wider
    # than the typical error only lets the outliers bend a weakly constrained scene (the
    # weakly textured orbit: 2.6 deg off from a 4 px start, 0.16 deg from 1 px).
    typical = 3.0 * float(np.median(bundle.chord_errors_px(rot, centres, points, vv, tt, bear,
                                                           focal, log_scale=log_scale)))
    # The first stage: the narrowest of the schedule still at least that wide (the widest if
    # none is).
    covering = [k for k, s in enumerate(schedule) if s >= typical]
    schedule = schedule[covering[-1] if covering else 0:]
  k = 0
  while k < len(schedule):
    sigma = schedule[k]
    rot32, cen32, pts32 = (np.asarray(x, _F32) for x in (rot, centres, points))
    rot, centres, points, log_scale, info = bundle.run_stage(
        rot32, cen32, pts32, obs._replace(weight=np.asarray(weight, _F32)), sigma, log_scale,
        max_iterations=settings.max_iterations, tolerance=settings.tolerance, at_infinity=at_inf,
        kernel=settings.kernel, refine_focal=settings.refine_focal)
    stages.append(dict(name=f"bundle adjustment, {settings.kernel} {sigma:g} px",
                       **info._asdict()))
    err = bundle.chord_errors_px(rot, centres, points, vv, tt, bear, focal, at_inf, log_scale)
    # Outliers are dropped only once the kernel is as narrow as the threshold: after a wide
    # stage the model may still be far off, and dropping what it does not explain yet would lock
    # in a wrong basin.
    cut = settings.max_error_px if sigma <= settings.max_error_px else np.inf
    weight = (err <= cut) & registered[vv]
    # Tracks left with fewer than two inlier observations are no longer constrained.
    count = np.bincount(tt[weight], minlength=t)
    weight &= count[tt] >= 2
    k += 1
    if k == len(schedule):
      keep = _explained(err, weight, vv, registered, settings)
      if np.any(keep != registered):
        # Views the model does not explain leave it; one more stage without them.
        registered = keep
        weight &= registered[vv]
        schedule.append(schedule[-1])
    weight = weight.astype(np.float64)
  points, errors, inlier = _model(points, centres, err, weight > 0, tt, vv, (t, v), settings,
                                  at_inf)
  return rot, centres, points, errors, inlier, registered, stages, np.exp(log_scale)


def _registration(init, tracks, visibility, intrinsics, active, settings, depth_maps):
  """The `refine="registration"` path on the active views (see `_bundle` for the returns)."""
  t, v = visibility.shape
  views = np.nonzero(active)[0]
  sub_vis = visibility[:, views] & (visibility[:, views].sum(1, keepdims=True) >= 2)
  cam0 = _poses(init.rotations[views], init.centres[views])
  cam0 = cam0 @ np.linalg.inv(cam0[0])
  cam, stages = lbfgs.refine_registration(
      tracks[:, views], sub_vis, intrinsics[views], cam0, settings,
      depth_maps=None if depth_maps is None else depth_maps[views])
  rot = np.tile(np.eye(3), (v, 1, 1))
  centres = np.zeros((v, 3))
  rot[views] = cam[:, :3, :3]
  centres[views] = -np.einsum("vji,vj->vi", cam[:, :3, :3], cam[:, :3, 3])
  tt, vv, bear, focal = _observations(tracks, visibility, intrinsics, active)
  mask = np.zeros((t, v))
  mask[tt, vv] = 1.0
  points = meet_rays(world_rays(tracks, visibility, intrinsics, rot), mask, centres)
  err = bundle.chord_errors_px(rot, centres, np.nan_to_num(points), vv, tt, bear, focal)
  weight = err <= settings.max_error_px
  registered = _explained(err, weight, vv, active, settings)
  points, errors, inlier = _model(points, centres, err, weight & registered[vv], tt, vv, (t, v),
                                  settings)
  return rot, centres, points, errors, inlier, registered, stages, 1.0


def _gauge(rot, centres, points, inlier, registered, at_infinity):
  """Poses (v, 4, 4) and points in the gauge of `FitResult`, plus the applied similarity."""
  first = int(np.nonzero(registered)[0][0])
  poses = _poses(rot, centres)
  to_first = np.linalg.inv(poses[first])                    # world_from_cam of the first view
  poses = poses @ to_first
  pts = (points - centres[first]) @ rot[first].T            # world -> first camera frame
  depth = np.einsum("vj,tj->tv", poses[:, 2, :3], pts) + poses[:, 2, 3][None, :]
  scale = 1.0
  if not at_infinity and inlier.any():
    scale = float(np.median(depth[inlier]))
    scale = scale if np.isfinite(scale) and scale > 0 else 1.0
  poses[:, :3, 3] /= scale
  poses[~registered] = np.nan
  return poses, pts / scale, np.where(inlier, depth / scale, np.nan), (first, to_first, scale)


def _into_frame_of(cam, points, depth, registered, target):
  """The fit (cam (v, 4, 4), points (t, 3), depth (t, v)) expressed in the frame and scale of the
  `target` cameras (v, 4, 4): the similarity X_target = s R X_fit + t with R the chordal mean of
  the registered views' R_target^T R_fit (rotations pin it even where the centres are collinear)
  and s, t the least-squares fit of the registered centres given R (s = 1 when they coincide)."""
  reg = registered & np.all(np.isfinite(target), axis=(1, 2))
  if not reg.any():
    return cam, points, depth
  u, _, vt = np.linalg.svd(np.einsum("vji,vjk->ik", target[reg, :3, :3], cam[reg, :3, :3]))
  rot = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
  centre = lambda c: -np.einsum("vji,vj->vi", c[:, :3, :3], c[:, :3, 3])
  src, dst = centre(cam[reg]) @ rot.T, centre(target[reg])
  src_c, dst_c = src - src.mean(0), dst - dst.mean(0)
  spread = float(np.sum(src_c ** 2))
  scale = float(np.sum(src_c * dst_c) / spread) if spread > 1e-12 else 1.0
  scale = scale if scale > 0 else 1.0
  shift = dst.mean(0) - scale * src.mean(0)
  out = cam.copy()
  out[:, :3, :3] = cam[:, :3, :3] @ rot.T
  out[:, :3, 3] = scale * cam[:, :3, 3] - np.einsum("vij,j->vi", out[:, :3, :3], shift)
  return out, scale * points @ rot.T + shift, scale * depth


def fit_scene(tracks, visibility, intrinsics, *, depth_maps: Optional[np.ndarray] = None,
              settings: FitSettings = FitSettings(), init_cam_from_world=None,
              view_names=None) -> FitResult:
  """Registers the views of one scene from its tracks (module docstring).

  Args:
    tracks: (t, v, 2) pixels (u, v) of each track in each view, NaN (or anything) where unseen
      (e.g. `experts.Tracks.pixels`).
    visibility: (t, v) bool, observed (e.g. `experts.Tracks.visible`); observations with
      non-finite pixels and tracks seen in fewer than 2 views are ignored.
    intrinsics: (v, 3, 3) K, pixels (fixed, unless `settings.refine_focal`: then a shared
      focal scale is fitted and `FitResult.intrinsics` holds the result).
    depth_maps: optional (v, h, w) monocular depth for `refine="registration"` (each observation's
      depth is then an affine function of the map, per view).
    settings: `FitSettings`.
    init_cam_from_world: optional (v, 4, 4) initial extrinsics replacing the global
      initialisation (every view with observations is then refined), e.g. supplied poses a
      little off the images; the result is then expressed in their frame and scale (the
      similarity that best maps the fitted cameras onto them) instead of the default gauge.
    view_names: optional v names (e.g. file names) that the warnings print beside view indices.
  Returns:
    `FitResult`: NaN poses for views that are not registered (read `registered`, `warnings`).
  Raises:
    ValueError naming the argument for fewer than 2 views, no usable track or bad shapes;
    FloatingPointError if the refinement diverges.
  """
  tracks, visibility, intrinsics, depth_maps = _check_inputs(tracks, visibility, intrinsics,
                                                             depth_maps)
  t, v = visibility.shape
  if view_names is not None and len(view_names) != v:
    raise ValueError(f"view_names: expected {v} names, got {len(view_names)}")
  start = time.perf_counter()
  if init_cam_from_world is None:
    init = global_init(tracks, visibility, intrinsics, settings)
  else:
    init = _given_init(tracks, visibility, intrinsics, init_cam_from_world)
  init_seconds = time.perf_counter() - start
  main = init.components[0]
  active = np.zeros(v, bool)
  if len(main) >= 2:
    active[main] = True
  duplicates = tuple((p.i, p.j) for p in init.pairs if p.kind == "duplicate")
  start = time.perf_counter()
  nan_result = dict(cam_from_world=np.full((v, 4, 4), np.nan), points=np.full((t, 3), np.nan),
                    inlier=np.zeros((t, v), bool), track_depth=np.full((t, v), np.nan))
  stages, focal_scale, rejected_focal = [], 1.0, None
  if settings.refine_focal and settings.refine != "bundle":
    raise UserError("refine_focal: only the bundle refiner fits the focal length")
  if active.any():
    refine = _bundle if settings.refine == "bundle" else _registration
    extra = () if settings.refine == "bundle" else (depth_maps,)
    rot, centres, points, errors, inlier, registered, stages, focal_scale = refine(
        init, tracks, visibility, intrinsics, active, settings, *extra)
    if settings.refine_focal and not 0.5 <= focal_scale <= 2.0:
      # The views do not pin the focal length down (forward motion with little turning: the
      # reprojection error falls towards 0 as the focal goes to 0 or to infinity, and LM walks
      # there; CamVid's held-out clip went to 1e-10 times the given focal). Its answer is not a
      # focal length: fit again with the given one, and say so.
      rejected_focal = focal_scale
      rot, centres, points, errors, inlier, registered, stages, focal_scale = refine(
          init, tracks, visibility, intrinsics, active,
          dataclasses.replace(settings, refine_focal=False), *extra)
  else:
    errors, inlier, registered = np.full((t, v), np.nan), np.zeros((t, v), bool), active
  if registered.any():
    cam, pts, depth, (first, to_first, scale) = _gauge(rot, centres, points, inlier, registered,
                                                       init.rotation_only)
    init_cam = _poses(np.where(active[:, None, None], init.rotations, np.eye(3)),
                      np.nan_to_num(init.centres))
    init_cam = init_cam @ np.linalg.inv(init_cam[first])
    init_scale = np.median(np.linalg.norm(init_cam[active][:, :3, 3], axis=1)) or 1.0
    fin_scale = np.median(np.linalg.norm(cam[registered][:, :3, 3], axis=1)) or 1.0
    if np.isfinite(init_scale / fin_scale) and init_scale > 0:
      init_cam[:, :3, 3] *= fin_scale / init_scale           # compared at the fit's scale
    init_cam[~active] = np.nan
    if init_cam_from_world is not None:
      cam, pts, depth = _into_frame_of(cam, pts, depth, registered,
                                       np.asarray(init_cam_from_world, np.float64))
      init_cam = np.where(active[:, None, None], init_cam_from_world, np.nan)
    result = dict(cam_from_world=cam, points=pts, inlier=inlier, track_depth=depth)
  else:
    result, init_cam = nan_result, np.full((v, 4, 4), np.nan)
  fit_seconds = time.perf_counter() - start
  counts, residual = report.view_statistics(errors, inlier, registered)
  messages = report.fit_warnings(
      num_views=v, registered=registered, components=init.components, duplicates=duplicates,
      stages=stages, errors=errors, observed=visibility, inlier=inlier,
      rotation_only=init.rotation_only, settings=settings, names=view_names,
      rejected_focal=rejected_focal, conflicts=init.conflicts)
  report.issue_warnings(messages)
  return FitResult(
      registered=registered, num_observations=counts, view_residual_px=residual,
      components=tuple(tuple(int(i) for i in c) for c in init.components),
      duplicates=duplicates, conflicts=tuple((p.i, p.j) for c in init.conflicts for p in c.pairs),
      stages=tuple(stages), warnings=tuple(messages),
      init_cam_from_world=init_cam, intrinsics=_scaled_focal(intrinsics, focal_scale),
      init_seconds=init_seconds, fit_seconds=fit_seconds,
      **result)
