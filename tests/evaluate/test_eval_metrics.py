"""Tests of jaxrecon.evaluate.metrics: pose errors, RRA / RTA / AUC, ATE, depth and point-map
metrics (hand-computed cases, invariances, degenerate inputs, an independent AUC reference)."""
import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from jaxrecon.evaluate import metrics as M
from jaxrecon.geometry.alignment import umeyama


def _rng(seed=0):
  return np.random.default_rng(seed)


def _pose(R, t):
  T = np.eye(4)
  T[:3, :3] = R
  T[:3, 3] = t
  return T


def _random_cams(rng, v):
  """v cam_from_world poses with centres spread in a 4 m box."""
  Rs = Rotation.random(v, random_state=rng.integers(1 << 31)).as_matrix()
  centres = rng.uniform(-2, 2, size=(v, 3))
  return np.stack([_pose(R, -R @ c) for R, c in zip(Rs, centres)])


def _similar_copy(gt, scale, R, t):
  """Poses of the same cameras in a world frame w' with X_gt = scale R X_w' + t."""
  # world_gt_from_world' = S; cam_from_world' = cam_from_world_gt @ S, made rigid by moving the
  # scale into the translation (positions in w' are 1 / scale times smaller).
  out = []
  for T in gt:
    Rc, tc = T[:3, :3], T[:3, 3]
    out.append(_pose(Rc @ R, (Rc @ t + tc) / scale))
  return np.stack(out)


def _rot_deg(axis, deg):
  return Rotation.from_rotvec(np.radians(deg) * np.asarray(axis, float)).as_matrix()


# ------------------------------------------------------------------------------------------ poses


def test_identity_poses_zero_errors():
  gt = _random_cams(_rng(0), 5)
  rot, trans = M.relative_pose_errors(gt, gt)
  assert rot.shape == trans.shape == (10,)
  np.testing.assert_allclose(rot, 0.0, atol=1e-6)
  np.testing.assert_allclose(trans, 0.0, atol=1e-6)
  assert M.rra(rot) == M.rta(trans) == M.pose_auc(rot, trans) == 100.0


def test_similarity_copy_is_perfect():
  rng = _rng(1)
  gt = _random_cams(rng, 6)
  pred = _similar_copy(gt, 0.37, _rot_deg([1, 2, 3], 71.0), np.array([5.0, -3.0, 2.0]))
  rot, trans = M.relative_pose_errors(pred, gt)
  np.testing.assert_allclose(rot, 0.0, atol=1e-6)
  np.testing.assert_allclose(trans, 0.0, atol=1e-6)
  assert M.pose_auc(rot, trans) == 100.0
  assert M.camera_ate(pred, gt) < 1e-9
  aligned = M.align_cameras_sim3(pred, gt)
  np.testing.assert_allclose(aligned, gt, atol=1e-9)


def test_known_rotation_offset_of_one_camera():
  # Three cameras with identity rotation on the x axis; rotate camera 2 by 10.5 degrees about its
  # own optical axis (its centre unchanged): pairs (0,2), (1,2) get 10.5 degrees of rotation error
  # (not an integer, so the AUC bins are not decided by rounding).
  gt = np.stack([_pose(np.eye(3), [-x, 0, 0]) for x in (0.0, 1.0, 2.0)])
  pred = gt.copy()
  Rz = _rot_deg([0, 0, 1], 10.5)
  pred[2] = _pose(Rz, Rz @ gt[2, :3, 3])
  rot, trans = M.relative_pose_errors(pred, gt)
  np.testing.assert_allclose(rot, [0.0, 10.5, 10.5], atol=1e-9)
  # The relative translation of a pair with camera 2 is along x rotated by 10.5 degrees about z.
  np.testing.assert_allclose(trans, [0.0, 10.5, 10.5], atol=1e-9)
  assert M.rra(rot, threshold=5) == pytest.approx(100 / 3)
  # AUC: pair errors (0, 10.5, 10.5) -> thresholds 11..30 count -> (1 + 2 * 20 / 30) / 3.
  assert M.pose_auc(rot, trans) == pytest.approx(100 * (1 + 2 * 20 / 30) / 3)


def test_translation_direction_error_known_angle_and_sign():
  gt = np.stack([_pose(np.eye(3), [0, 0, 0]), _pose(np.eye(3), [1, 0, 0])])
  pred = np.stack([_pose(np.eye(3), [0, 0, 0]), _pose(np.eye(3), [1, 1, 0])])
  rot, trans = M.relative_pose_errors(pred, gt)
  np.testing.assert_allclose(rot, [0.0], atol=1e-12)
  np.testing.assert_allclose(trans, [45.0], atol=1e-9)
  # Reversed baseline: the plain angle (no sign folding) is 180 degrees.
  pred[1, :3, 3] = [-3, 0, 0]
  _, trans = M.relative_pose_errors(pred, gt)
  np.testing.assert_allclose(trans, [180.0], atol=1e-9)


def test_zero_baseline_conventions():
  gt = np.stack([_pose(np.eye(3), [0, 0, 0]), _pose(np.eye(3), [1, 0, 0])])
  still = np.stack([_pose(np.eye(3), [0, 0, 0])] * 2)
  _, trans = M.relative_pose_errors(still, gt)  # prediction has no baseline
  np.testing.assert_array_equal(trans, [180.0])
  _, trans = M.relative_pose_errors(gt, still)  # ground truth has none
  np.testing.assert_array_equal(trans, [180.0])
  _, trans = M.relative_pose_errors(still, still)  # neither
  np.testing.assert_array_equal(trans, [0.0])
  # Pure rotation about a common centre: rotation errors still well defined, ATE finite.
  rot_only = np.stack([_pose(_rot_deg([0, 1, 0], a), [0, 0, 0]) for a in (0.0, 20.0)])
  rot, _ = M.relative_pose_errors(rot_only, rot_only)
  np.testing.assert_allclose(rot, [0.0], atol=1e-9)
  assert M.camera_ate(rot_only, rot_only) == 0.0
  assert np.isfinite(M.align_cameras_sim3(rot_only, rot_only)).all()


def test_two_views_and_single_view():
  rng = _rng(2)
  gt = _random_cams(rng, 2)
  pred = _similar_copy(gt, 2.5, _rot_deg([0, 1, 0], 30.0), np.array([1.0, 2.0, 3.0]))
  rot, trans = M.relative_pose_errors(pred, gt)
  assert rot.shape == (1,)
  np.testing.assert_allclose(rot, 0.0, atol=1e-6)
  np.testing.assert_allclose(trans, 0.0, atol=1e-6)
  assert M.camera_ate(pred, gt) < 1e-9  # two centres always align exactly
  one = gt[:1]
  rot, trans = M.relative_pose_errors(one, one)
  assert rot.shape == trans.shape == (0,)
  assert math.isnan(M.pose_auc(rot, trans)) and math.isnan(M.rra(rot)) and math.isnan(M.rta(trans))
  assert M.camera_ate(one, one) == 0.0


def test_accepts_3x4_and_rejects_bad_shapes():
  gt = _random_cams(_rng(3), 3)
  rot, trans = M.relative_pose_errors(gt[:, :3], gt)
  np.testing.assert_allclose(rot, 0.0, atol=1e-6)
  with pytest.raises(ValueError):
    M.relative_pose_errors(gt[:2], gt)
  with pytest.raises(ValueError):
    M.relative_pose_errors(gt[0], gt[0])


def test_relative_pose_errors_invariant_to_gauge():
  rng = _rng(4)
  gt = _random_cams(rng, 5)
  pred = _random_cams(rng, 5)
  rot, trans = M.relative_pose_errors(pred, gt)
  moved = _similar_copy(pred, 3.0, _rot_deg([1, 0, 1], 40.0), np.array([0.5, 0.1, -2.0]))
  rot2, trans2 = M.relative_pose_errors(moved, gt)
  np.testing.assert_allclose(rot2, rot, atol=1e-6)
  np.testing.assert_allclose(trans2, trans, atol=1e-6)
  # Swapping the roles is symmetric.
  rot3, trans3 = M.relative_pose_errors(gt, pred)
  np.testing.assert_allclose(rot3, rot, atol=1e-6)
  np.testing.assert_allclose(trans3, trans, atol=1e-6)


# -------------------------------------------------------------------------------- accuracy / AUC


def _auc_reference(rot, trans, max_threshold):
  """Independent loop: accuracy at each integer threshold, averaged, in percent."""
  total = 0.0
  for k in range(1, max_threshold + 1):
    hits = 0
    for a, b in zip(rot, trans):
      if max(a, b) < k:
        hits += 1
    total += hits / len(rot)
  return 100.0 * total / max_threshold


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("max_threshold", [5, 30])
def test_pose_auc_matches_loop_reference(seed, max_threshold):
  rng = _rng(seed)
  rot = rng.uniform(0, 40, size=57)
  trans = rng.exponential(10.0, size=57)
  rot[:5] = [0.0, 1.0, 2.5, 29.999, 30.0]  # include bin edges
  assert M.pose_auc(rot, trans, max_threshold) == pytest.approx(
      _auc_reference(rot, trans, max_threshold), abs=1e-12)


def test_pose_auc_hand_computed():
  assert M.pose_auc([0.0], [0.0]) == 100.0
  assert M.pose_auc([30.0], [0.0]) == 0.0
  assert M.pose_auc([0.0], [45.0]) == 0.0
  # Error 0.5 counts at every threshold; error 15 at thresholds 16..30 (15 of 30).
  assert M.pose_auc([0.5, 15.0], [0.0, 3.0]) == pytest.approx(100 * (1 + 0.5) / 2)
  # max() of the two errors decides: rotation 1.0 (not < 1) but thresholds 2..30 -> 29/30.
  assert M.pose_auc([1.0], [0.2]) == pytest.approx(100 * 29 / 30)
  with pytest.raises(ValueError):
    M.pose_auc([1.0, 2.0], [1.0])


def test_rra_rta_percentages():
  err = np.array([0.0, 10.0, 29.9, 30.0, 90.0])
  assert M.rra(err) == pytest.approx(60.0)
  assert M.rta(err) == pytest.approx(60.0)
  assert M.rra(err, threshold=5.0) == pytest.approx(20.0)


# ------------------------------------------------------------------------------------ alignment


@pytest.mark.x64  # the jax umeyama as a float64 reference at 1e-12
def test_camera_sim3_is_geometry_umeyama_of_the_centres():
  rng = _rng(5)
  gt = np.stack([_pose(_rot_deg(rng.normal(size=3), 20.0), rng.normal(size=3)) for _ in range(9)])
  pred = np.stack([_pose(_rot_deg(rng.normal(size=3), 20.0), rng.normal(size=3)) for _ in range(9)])
  s, R, t = M.camera_sim3(pred, gt)
  s2, R2, t2 = umeyama(M.camera_centers_np(pred), M.camera_centers_np(gt))
  assert isinstance(s, float) and R.dtype == np.float64
  np.testing.assert_allclose(s, np.asarray(s2), rtol=1e-12)
  np.testing.assert_allclose(R, np.asarray(R2), atol=1e-12)
  np.testing.assert_allclose(t, np.asarray(t2), atol=1e-12)


def test_camera_ate_known_offset():
  # Four GT centres on a square; the prediction is a similarity copy with one centre pushed off.
  gt = np.stack([_pose(np.eye(3), -np.array(c, float))
                 for c in ([0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0])])
  pred = _similar_copy(gt, 2.0, _rot_deg([0, 0, 1], 90.0), np.zeros(3))
  assert M.camera_ate(pred, gt) < 1e-12
  # Push alternate corners by +-d along z. By symmetry the best rotation is I and translation 0;
  # the cross-covariance is unchanged while the source variance grows from r2 = 0.5 to r2 + d^2, so
  # scale = r2 / (r2 + d^2): z residuals s d, in-plane residuals (1 - s) sqrt(r2).
  d = 0.1
  r2 = 0.5
  s = r2 / (r2 + d * d)
  pert = gt.copy()
  for i, sgn in enumerate([1, -1, 1, -1]):
    pert[i, 2, 3] -= sgn * d
  ate = M.camera_ate(pert, gt)
  assert ate == pytest.approx(math.sqrt((s * d) ** 2 + (1 - s) ** 2 * r2), rel=1e-9)


# ------------------------------------------------------------------------------- depth / points


def test_depth_metrics_scaled_copy_perfect_and_single_pixel():
  rng = _rng(6)
  gt = rng.uniform(1.0, 5.0, size=(3, 4, 5))
  valid = np.ones_like(gt, bool)
  out = M.depth_metrics(0.25 * gt, gt, valid)
  assert out["rel"] == pytest.approx(0.0, abs=1e-12) and out["tau"] == 100.0
  # One pixel 10 % too deep: the median scale stays exact, rel = 0.1 / n, tau = (n - 1) / n.
  pred = 0.25 * gt
  pred[1, 2, 3] *= 1.1
  n = gt.size
  out = M.depth_metrics(pred, gt, valid)
  assert out["rel"] == pytest.approx(0.1 / n, rel=1e-9)
  assert out["tau"] == pytest.approx(100 * (n - 1) / n)
  # A 2 % error is an inlier at 1.03, a 4 % error is not; invalid pixels are ignored.
  pred = gt.copy()
  pred[0, 0, 0] *= 1.02
  pred[0, 0, 1] *= 1.04
  pred[2, 3, 4] = np.nan
  valid[2, 3, 4] = False
  out = M.depth_metrics(pred, gt, valid)
  assert out["tau"] == pytest.approx(100 * (n - 2) / (n - 1))
  assert out["rel"] == pytest.approx((0.02 + 0.04) / (n - 1), rel=1e-9)


def test_depth_metrics_hand_computed_scale():
  # Pixels with ratios g / d = 1, 2, 2: median 2 -> s d = (2, 2, 4) vs g = (1, 2, 4).
  pred = np.array([1.0, 1.0, 2.0]).reshape(1, 1, 3)
  gt = np.array([1.0, 2.0, 4.0]).reshape(1, 1, 3)
  out = M.depth_metrics(pred, gt, np.ones((1, 1, 3), bool))
  assert out["rel"] == pytest.approx(1.0 / 3)
  assert out["tau"] == pytest.approx(200 / 3)
  # mean_norm: s = 7 / 4 -> s d = (1.75, 1.75, 3.5).
  out = M.depth_metrics(pred, gt, np.ones((1, 1, 3), bool), scale_mode="mean_norm")
  assert out["rel"] == pytest.approx((0.75 + 0.125 + 0.125) / 3)
  assert out["tau"] == 0.0
  with pytest.raises(ValueError):
    M.depth_metrics(pred, gt, np.ones((1, 1, 3), bool), scale_mode="lsq")


def test_depth_metrics_degenerate():
  gt = np.ones((2, 3, 3))
  out = M.depth_metrics(gt, gt, np.zeros_like(gt, bool))
  assert math.isnan(out["rel"]) and math.isnan(out["tau"])
  # gt <= 0 is never valid; a non-positive prediction at a valid pixel is an outlier.
  gt[0, 0, 0] = 0.0
  pred = gt.copy()
  pred[1, 1, 1] = -1.0
  out = M.depth_metrics(pred, gt, np.ones_like(gt, bool))
  assert out["tau"] == pytest.approx(100 * 16 / 17)
  assert out["rel"] == pytest.approx(2.0 / 17)
  with pytest.raises(ValueError):
    M.depth_metrics(pred[0], gt[0], np.ones((3, 3), bool))


def _pointmaps(rng, cams, h=4, w=5):
  """Ground-truth world points of each view (random depths along a pixel grid)."""
  pts = []
  for T in cams:
    uv = np.stack(np.meshgrid(np.linspace(-0.5, 0.5, w), np.linspace(-0.4, 0.4, h)), -1)
    z = rng.uniform(2.0, 6.0, size=(h, w, 1))
    cam = np.concatenate([uv * z, z], -1)
    R, t = T[:3, :3], T[:3, 3]
    pts.append((cam - t) @ R)  # R^T (X - t)
  return np.stack(pts)


def test_pointmap_metrics_similarity_copy_perfect():
  rng = _rng(7)
  gt_cams = _random_cams(rng, 3)
  gt_pts = _pointmaps(rng, gt_cams)
  scale, R, t = 0.3, _rot_deg([1, 1, 0], 33.0), np.array([2.0, -1.0, 0.5])
  pred_cams = _similar_copy(gt_cams, scale, R, t)
  pred_pts = (gt_pts - t) @ R / scale  # X_w' = R^T (X_gt - t) / scale
  valid = np.ones(gt_pts.shape[:-1], bool)
  out = M.pointmap_metrics(pred_pts, gt_pts, valid, pred_cams, gt_cams)
  assert out["rel"] == pytest.approx(0.0, abs=1e-9) and out["tau"] == 100.0
  out = M.pointmap_metrics(pred_pts, gt_pts, valid, pred_cams, gt_cams, scale_mode="mean_norm")
  assert out["rel"] == pytest.approx(0.0, abs=1e-9) and out["tau"] == 100.0
  # Without the cameras the frames differ, so the copy is no longer perfect.
  assert M.pointmap_metrics(pred_pts, gt_pts, valid)["rel"] > 0.1


def test_pointmap_metrics_single_point_errors():
  rng = _rng(8)
  gt = rng.uniform(1.0, 3.0, size=(2, 3, 3, 3))  # already in camera 0's frame
  valid = np.ones(gt.shape[:-1], bool)
  pred = 2.0 * gt
  g = gt[1, 2, 0]
  # Move one point sideways by 2 % of its norm (in pred units, scale 1/2): inlier at 1.03.
  side = np.cross(g, [0.0, 0.0, 1.0])
  side /= np.linalg.norm(side)
  pred[1, 2, 0] += 2.0 * 0.02 * np.linalg.norm(g) * side
  # And another along a perpendicular by 5 %: outlier.
  g2 = gt[0, 0, 1]
  side2 = np.cross(g2, [1.0, 0.0, 0.0])
  side2 /= np.linalg.norm(side2)
  pred[0, 0, 1] += 2.0 * 0.05 * np.linalg.norm(g2) * side2
  n = valid.sum()
  out = M.pointmap_metrics(pred, gt, valid)
  # Norm ratios of the moved points are sqrt(1 + e^2) != 1, but the median of n = 18 ratios is
  # still exactly 1/2 as 16 are unchanged.
  assert out["rel"] == pytest.approx((0.02 + 0.05) / n, rel=1e-9)
  assert out["tau"] == pytest.approx(100 * (n - 1) / n)


def test_pointmap_metrics_degenerate():
  gt = np.ones((2, 2, 2, 3))
  valid = np.zeros(gt.shape[:-1], bool)
  out = M.pointmap_metrics(gt, gt, valid)
  assert math.isnan(out["rel"]) and math.isnan(out["tau"])
  with pytest.raises(ValueError):
    M.pointmap_metrics(gt, gt, valid[..., None])


def test_accepts_jax_float32_inputs():
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  gt = _random_cams(_rng(9), 4)
  rot, trans = M.relative_pose_errors(jnp.asarray(gt, jnp.float32), gt)
  assert rot.dtype == np.float64
  np.testing.assert_allclose(rot, 0.0, atol=1e-3)
  np.testing.assert_allclose(trans, 0.0, atol=1e-3)
  assert isinstance(M.camera_ate(jnp.asarray(gt, jnp.float32), gt), float)
  depth = jnp.ones((2, 3, 3), jnp.float32)
  assert M.depth_metrics(depth, depth, jnp.ones((2, 3, 3), bool)) == dict(rel=0.0, tau=100.0)
