"""Evaluation metrics of the MapAnything / Reliev3R protocol (host-side numpy, float64).

Every function here takes numpy or jax arrays, converts them to numpy float64 on the host and
returns numpy arrays / Python floats. They are not meant to be jitted or differentiated: they are
for evaluation only. Conventions are those of `jaxrecon.geometry` (OpenCV axes, `cam_from_world`
4x4 (or 3x4) extrinsics, depth = camera-frame z) except that angles here are in DEGREES, as the
protocol's thresholds are.

Protocol decisions (see each function for details)
--------------------------------------------------
* Poses: errors over all unordered view pairs i < j of the relative pose cam_j_from_cam_i.
  Rotation error = geodesic angle between predicted and ground-truth relative rotations.
  Translation error = plain angle between the relative translation directions (no sign folding: a
  direction pointing backwards is a 180 degree error). Zero-length translations: both zero -> 0,
  exactly one zero -> 180 (worst case, never within any threshold).
* AUC@30 (as in VGGT / MapAnything): per pair error = max(rotation, translation) error; accuracy
  at integer thresholds 1..30 degrees (fraction with error < threshold); AUC = mean accuracy, in
  percent.
* ATE: RMSE of camera centres after a sim(3) (Umeyama) alignment of predicted centres onto the
  ground-truth centres, in ground-truth units.
* Depth / point maps: ONE scale per scene, by default the median over all valid pixels of the
  scene of the ratio gt / pred (depth) or |gt| / |pred| (points, both expressed in their own first
  camera's frame); `scale_mode="mean_norm"` instead uses mean(gt) / mean(pred) (depth) or
  mean |gt| / mean |pred| (points), which equals MapAnything's normalisation of both point clouds
  by their average distance to view 0's camera ("avg_dis"). rel = mean relative error; tau =
  percentage of inliers at the 1.03 threshold of the Robust MVD benchmark (Schroeppel et al.,
  2022), which MapAnything (Keetha et al., 2025; benchmarking/dense_n_view/benchmark.py reports
  "z_depth_inlier_thres_103" and "pointmaps_inlier_thres_103") uses for its dense multi-view
  benchmark. For point maps we count a pixel as an inlier when |s p - g| / |g| < tau - 1 (the
  error VECTOR, so a point in the wrong direction is an outlier); MapAnything compares only the
  norms, max(|p| / |g|, |g| / |p|) < 1.03, which is laxer.
* No valid pixel in a scene -> rel = tau = nan (so that means over scenes must use nanmean and the
  missing scene is visible rather than silently scored).
"""
from __future__ import annotations

import jax
import numpy as np

from jaxrecon.geometry.alignment import umeyama

# Robust MVD / MapAnything inlier threshold for max(d / g, g / d).
DEFAULT_TAU = 1.03
# Pose thresholds (degrees) of RRA@30 / RTA@30 / AUC@30.
DEFAULT_POSE_THRESHOLD = 30.0
_TINY = 1e-12


def _f64(x):
  return np.asarray(x, dtype=np.float64)


def _pose_parts(T, name):
  """(v, 4, 4) or (v, 3, 4) pose -> R (v, 3, 3), t (v, 3), float64."""
  T = _f64(T)
  if T.ndim != 3 or T.shape[-2:] not in ((4, 4), (3, 4)):
    raise ValueError(f"{name}: expected shape (v, 4, 4) or (v, 3, 4), got {T.shape}")
  return T[:, :3, :3], T[:, :3, 3]


def _angle_between_rotations_deg(Ra, Rb):
  """Geodesic angle (degrees, [0, 180]) of Ra^T Rb for (..., 3, 3) rotations.

  atan2 of the skew part's norm and (trace - 1) / 2: precise near 0 and 180 degrees."""
  rel = np.swapaxes(Ra, -1, -2) @ Rb
  cos = 0.5 * (np.trace(rel, axis1=-2, axis2=-1) - 1.0)
  vee = np.stack([rel[..., 2, 1] - rel[..., 1, 2], rel[..., 0, 2] - rel[..., 2, 0],
                  rel[..., 1, 0] - rel[..., 0, 1]], -1)
  sin = 0.5 * np.linalg.norm(vee, axis=-1)
  return np.degrees(np.arctan2(sin, cos))


def _pairs(v):
  """Index arrays (i, j) of all unordered pairs i < j of v views, row-major order."""
  i, j = np.triu_indices(v, k=1)
  return i, j


def _relative_poses(R, t):
  """Relative poses cam_j_from_cam_i for all pairs i < j.

  Args:
    R: (v, 3, 3) rotations of cam_from_world.
    t: (v, 3) translations of cam_from_world.
  Returns:
    R_ij (p, 3, 3), t_ij (p, 3) with X_j = R_ij X_i + t_ij (t_ij in camera-j coordinates, world
    units of that pose set).
  """
  i, j = _pairs(R.shape[0])
  R_ij = R[j] @ np.swapaxes(R[i], -1, -2)
  t_ij = t[j] - np.einsum("pab,pb->pa", R_ij, t[i])
  return R_ij, t_ij


def relative_pose_errors(pred_cam_from_world, gt_cam_from_world):
  """Rotation and translation-direction errors of all unordered view pairs.

  Args:
    pred_cam_from_world: (v, 4, 4) or (v, 3, 4) predicted extrinsics (any world frame and scale).
    gt_cam_from_world: (v, 4, 4) or (v, 3, 4) ground-truth extrinsics.
  Returns:
    rot_err_deg: (p,) p = v (v - 1) / 2, pairs (i, j) with i < j in row-major order
      (`np.triu_indices(v, 1)`): geodesic angle in degrees [0, 180] between the predicted and
      ground-truth relative rotations R_j R_i^T.
    trans_err_deg: (p,) angle in degrees [0, 180] between the predicted and ground-truth relative
      translation directions t_ij = t_j - R_ij t_i (the position of camera i's centre seen from
      camera j, up to sign). This is the plain angle: a reversed direction is a 180 degree error
      (no folding to min(a, 180 - a)). A translation shorter than 1e-9 x the longest relative
      translation of its own pose set (or exactly 0) has no direction: if both the predicted and
      the ground-truth ones are zero the error is 0, if exactly one is, it is 180 (worst case).
  Both errors are invariant to a similarity transform of either pose set's world frame.
  """
  Rp, tp = _pose_parts(pred_cam_from_world, "pred_cam_from_world")
  Rg, tg = _pose_parts(gt_cam_from_world, "gt_cam_from_world")
  if Rp.shape != Rg.shape:
    raise ValueError(f"pred and gt must have the same number of views, got {Rp.shape[0]} and "
                     f"{Rg.shape[0]}")
  Rp_ij, tp_ij = _relative_poses(Rp, tp)
  Rg_ij, tg_ij = _relative_poses(Rg, tg)
  rot = _angle_between_rotations_deg(Rp_ij, Rg_ij)

  def zero_mask(t_ij):
    n = np.linalg.norm(t_ij, axis=-1)
    ref = n.max() if n.size else 0.0
    return n <= 1e-9 * ref + _TINY

  zp, zg = zero_mask(tp_ij), zero_mask(tg_ij)
  cross = np.linalg.norm(np.cross(tp_ij, tg_ij), axis=-1)
  dot = np.sum(tp_ij * tg_ij, axis=-1)
  trans = np.degrees(np.arctan2(cross, dot))
  trans = np.where(zp & zg, 0.0, np.where(zp | zg, 180.0, trans))
  return rot, trans


def _percent_below(err_deg, threshold):
  err = _f64(err_deg).reshape(-1)
  if err.size == 0:
    return float("nan")
  return float(100.0 * np.mean(err < threshold))


def rra(rot_err_deg, threshold=DEFAULT_POSE_THRESHOLD):
  """Relative rotation accuracy: percentage (0..100) of pairs with rotation error < threshold.

  Args:
    rot_err_deg: (p,) rotation errors in degrees.
    threshold: degrees (strict inequality).
  Returns:
    float percentage; nan when p = 0.
  """
  return _percent_below(rot_err_deg, threshold)


def rta(trans_err_deg, threshold=DEFAULT_POSE_THRESHOLD):
  """Relative translation accuracy: percentage (0..100) of pairs with translation-direction error
  < threshold (degrees, strict). nan when there is no pair."""
  return _percent_below(trans_err_deg, threshold)


def pose_auc(rot_err_deg, trans_err_deg, max_threshold=30):
  """Area under the pose accuracy curve, AUC@max_threshold (VGGT / MapAnything style).

  Args:
    rot_err_deg: (p,) rotation errors in degrees.
    trans_err_deg: (p,) translation-direction errors in degrees.
    max_threshold: integer, the largest threshold (degrees).
  Returns:
    float in percent (0..100): with e = max(rot, trans) per pair and
    acc(k) = fraction of pairs with e < k, the mean of acc(k) over k = 1, ..., max_threshold,
    times 100. A pair with error 0 counts fully (100), one with error >= max_threshold not at
    all, one with error in [k - 1, k) contributes (max_threshold - k + 1) / max_threshold.
    nan when p = 0. (The histogram formulation of VGGT closes its last bin, so an error of exactly
    max_threshold differs by one bin there; this is immaterial in practice.)
  """
  rot = _f64(rot_err_deg).reshape(-1)
  trans = _f64(trans_err_deg).reshape(-1)
  if rot.shape != trans.shape:
    raise ValueError(f"rot_err_deg and trans_err_deg differ in size: {rot.shape} vs {trans.shape}")
  if rot.size == 0:
    return float("nan")
  err = np.maximum(rot, trans)
  thresholds = np.arange(1, int(max_threshold) + 1, dtype=np.float64)
  acc = np.mean(err[None, :] < thresholds[:, None], axis=1)
  return float(100.0 * np.mean(acc))


def camera_centers_np(cam_from_world):
  """(v, 4, 4) or (v, 3, 4) extrinsics -> (v, 3) camera centres -R^T t (world units)."""
  R, t = _pose_parts(cam_from_world, "cam_from_world")
  return -np.einsum("vji,vj->vi", R, t)


def camera_sim3(pred_cam_from_world, gt_cam_from_world):
  """Similarity (scale, R, t) with gt_centre ~= scale * R @ pred_centre + t (Umeyama of centres).

  Args:
    pred_cam_from_world: (v, 4, 4) or (v, 3, 4) predicted extrinsics.
    gt_cam_from_world: (v, 4, 4) or (v, 3, 4) ground-truth extrinsics.
  Returns:
    scale (float), R (3, 3), t (3,) mapping the predicted world frame into the ground-truth one.
  """
  cp = camera_centers_np(pred_cam_from_world)
  cg = camera_centers_np(gt_cam_from_world)
  if cp.shape != cg.shape:
    raise ValueError(f"pred and gt must have the same number of views, got {cp.shape[0]} and "
                     f"{cg.shape[0]}")
  with jax.enable_x64(True):  # the protocol's float64, with the package's one Umeyama
    scale, rotation, translation = umeyama(cp, cg)
  return float(scale), np.asarray(rotation), np.asarray(translation)


def align_cameras_sim3(pred_cam_from_world, gt_cam_from_world):
  """Predicted cameras moved into the ground-truth world frame by the sim(3) of `camera_sim3`.

  Args:
    pred_cam_from_world: (v, 4, 4) or (v, 3, 4) predicted extrinsics.
    gt_cam_from_world: (v, 4, 4) or (v, 3, 4) ground-truth extrinsics.
  Returns:
    (v, 4, 4) rigid cam_from_world (ground-truth world frame and units) whose centres are
    scale * R @ c + t and whose camera-to-world rotations are R @ R_wc (orientations move with the
    similarity; the scale only affects positions). Note that with 2 views (collinear centres) the
    rotation about the baseline is not determined by the centres.
  """
  scale, R, t = camera_sim3(pred_cam_from_world, gt_cam_from_world)
  Rcw, _ = _pose_parts(pred_cam_from_world, "pred_cam_from_world")
  centres = scale * camera_centers_np(pred_cam_from_world) @ R.T + t
  Rcw_new = Rcw @ R.T  # (R R_wc)^T = R_cw R^T
  out = np.tile(np.eye(4), (Rcw.shape[0], 1, 1))
  out[:, :3, :3] = Rcw_new
  out[:, :3, 3] = -np.einsum("vij,vj->vi", Rcw_new, centres)
  return out


def camera_ate(pred_cam_from_world, gt_cam_from_world):
  """Absolute trajectory error: RMSE (ground-truth units) of camera centres after sim(3) alignment.

  Args:
    pred_cam_from_world: (v, 4, 4) or (v, 3, 4) predicted extrinsics.
    gt_cam_from_world: (v, 4, 4) or (v, 3, 4) ground-truth extrinsics.
  Returns:
    float sqrt(mean_i |scale R c_pred_i + t - c_gt_i|^2).
  """
  scale, R, t = camera_sim3(pred_cam_from_world, gt_cam_from_world)
  cp = scale * camera_centers_np(pred_cam_from_world) @ R.T + t
  cg = camera_centers_np(gt_cam_from_world)
  return float(np.sqrt(np.mean(np.sum((cp - cg) ** 2, -1))))


SCALE_MODES = ("median", "mean_norm")


def scene_scale(pred, gt, valid, scale_mode="median"):
  """One scale s with s * pred ~= gt for a whole scene.

  Args:
    pred: (...) positive predicted magnitudes (depths, or point norms).
    gt: (...) positive ground-truth magnitudes, same shape.
    valid: (...) bool, same shape.
    scale_mode: "median": s = median(gt / pred) over valid entries (robust; for an even count the
      mean of the two middle ratios, np.median). "mean_norm": s = mean(gt) / mean(pred).
  Returns:
    float s; nan when no entry is valid.
  """
  if scale_mode not in SCALE_MODES:
    raise ValueError(f"scale_mode: expected one of {SCALE_MODES}, got {scale_mode!r}")
  pred, gt = _f64(pred), _f64(gt)
  valid = np.asarray(valid, dtype=bool)
  if not valid.any():
    return float("nan")
  if scale_mode == "median":
    return float(np.median(gt[valid] / pred[valid]))
  return float(np.mean(gt[valid]) / np.mean(pred[valid]))


def _valid_mask(valid, *arrays):
  """valid & finite (all arrays) as bool."""
  mask = np.asarray(valid, dtype=bool).copy()
  for a in arrays:
    a = np.asarray(a)
    mask &= np.isfinite(a) if a.ndim == mask.ndim else np.all(np.isfinite(a), axis=-1)
  return mask


def depth_metrics(pred_depth, gt_depth, valid, *, tau=DEFAULT_TAU, scale_mode="median"):
  """Depth rel and inlier ratio after one per-scene scale (median by default).

  Args:
    pred_depth: (v, h, w) predicted depth (camera-frame z, any scale).
    gt_depth: (v, h, w) ground-truth depth.
    valid: (v, h, w) bool mask. A pixel is evaluated when valid, pred and gt are finite and
      gt > 0. A non-positive prediction at such a pixel is left out of the scale but still
      evaluated: it is an outlier, with relative error |s d - g| / g computed from its value.
    tau: inlier threshold on max(s d / g, g / (s d)) (1.03: Robust MVD / MapAnything).
    scale_mode: "median" or "mean_norm" (see `scene_scale`).
  Returns:
    dict(rel=float, tau=float): s = `scene_scale` (default median(g / d)) over the valid pixels of
    the whole scene with d > 0; rel = mean |s d - g| / g (a fraction, not percent); tau =
    percentage (0..100) of evaluated pixels with max(s d / g, g / (s d)) < tau. Both nan when
    no pixel is evaluated (or none has d > 0).
  """
  pred, gt = _f64(pred_depth), _f64(gt_depth)
  if pred.shape != gt.shape or pred.shape != np.shape(valid) or pred.ndim != 3:
    raise ValueError(f"expected pred_depth, gt_depth, valid of one shape (v, h, w), got "
                     f"{pred.shape}, {gt.shape}, {np.shape(valid)}")
  mask = _valid_mask(valid, pred, gt) & (gt > 0)
  scale = scene_scale(pred, gt, mask & (pred > 0), scale_mode)
  if not np.isfinite(scale):
    return dict(rel=float("nan"), tau=float("nan"))
  d, g = scale * pred[mask], gt[mask]
  rel = np.abs(d - g) / g
  with np.errstate(divide="ignore", invalid="ignore"):
    ratio = np.where(d > 0, np.maximum(d / g, g / np.where(d > 0, d, 1.0)), np.inf)
  return dict(rel=float(np.mean(rel)), tau=float(100.0 * np.mean(ratio < tau)))


def _to_first_camera(points, cam_from_world, name):
  if cam_from_world is None:
    return points
  R, t = _pose_parts(cam_from_world, name)
  return np.einsum("ij,...j->...i", R[0], points) + t[0]


def pointmap_metrics(pred_points, gt_points, valid, pred_cam_from_world=None,
                     gt_cam_from_world=None, *, tau=DEFAULT_TAU, scale_mode="median"):
  """Point-map rel and inlier ratio after one per-scene scale (median by default).

  Protocol: each point map is expressed in the frame of its own FIRST camera (view 0), using its
  own extrinsics (when given; otherwise the points are taken to be in such a frame already), which
  removes the gauge's rotation and translation; one scene scale s = median over valid pixels of
  |g| / |p| (or `scale_mode="mean_norm"`) removes the gauge's scale (norms measured from camera
  0's centre).

  Args:
    pred_points: (v, h, w, 3) predicted points in the predicted world frame.
    gt_points: (v, h, w, 3) ground-truth points in the ground-truth world frame.
    valid: (v, h, w) bool; pixels also need finite points and |g| > 0.
    pred_cam_from_world: optional (v, 4, 4) / (v, 3, 4) predicted extrinsics (only view 0 is used).
    gt_cam_from_world: optional (v, 4, 4) / (v, 3, 4) ground-truth extrinsics (view 0 used).
    tau: inlier threshold: a pixel is an inlier when |s p - g| / |g| < tau - 1 (1.03: 3 percent).
    scale_mode: "median" (s = median |g| / |p|) or "mean_norm" (s = mean |g| / mean |p|, i.e.
      MapAnything's "avg_dis" normalisation), over valid pixels; see `scene_scale`.
  Returns:
    dict(rel=float, tau=float): rel = mean |s p - g| / |g| (fraction); tau = percentage (0..100)
    of inliers. Both nan when no pixel is valid (or all valid predictions are at the origin).
  """
  pred, gt = _f64(pred_points), _f64(gt_points)
  if pred.shape != gt.shape or pred.ndim != 4 or pred.shape[-1] != 3 or (
      np.shape(valid) != pred.shape[:-1]):
    raise ValueError(f"expected pred_points, gt_points (v, h, w, 3) and valid (v, h, w), got "
                     f"{pred.shape}, {gt.shape}, {np.shape(valid)}")
  pred = _to_first_camera(pred, pred_cam_from_world, "pred_cam_from_world")
  gt = _to_first_camera(gt, gt_cam_from_world, "gt_cam_from_world")
  np_, ng = np.linalg.norm(pred, axis=-1), np.linalg.norm(gt, axis=-1)
  mask = _valid_mask(valid, pred, gt) & (ng > 0)
  scale = scene_scale(np_, ng, mask & (np_ > 0), scale_mode)
  if not np.isfinite(scale):
    return dict(rel=float("nan"), tau=float("nan"))
  err = np.linalg.norm(scale * pred[mask] - gt[mask], axis=-1) / ng[mask]
  return dict(rel=float(np.mean(err)), tau=float(100.0 * np.mean(err < tau - 1.0)))
