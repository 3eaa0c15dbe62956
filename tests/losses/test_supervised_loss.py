"""Tests of jaxrecon.losses.supervised: exact solution, gauge and scale invariance, references."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads
from scipy.spatial.transform import Rotation

from jaxrecon.losses.supervised import supervised_loss

pytestmark = pytest.mark.x64  # a float64 numpy reference, invariances at 1e-6 and check_grads

SETTINGS = settings(max_examples=25, deadline=None)
B, V, H, W = 2, 3, 4, 5


def _rng(seed=0):
  return np.random.default_rng(seed)


def _finite_tree(tree):
  return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(tree))


def _poses(seed, shape):
  n = int(np.prod(shape))
  T = np.zeros(shape + (4, 4))
  T[..., :3, :3] = Rotation.random(n, random_state=seed).as_matrix().reshape(shape + (3, 3))
  T[..., :3, 3] = _rng(seed).normal(size=shape + (3,))
  T[..., 3, 3] = 1
  return T


def _scene(seed=0):
  rng = _rng(seed)
  gt_depth = rng.uniform(1, 4, size=(B, V, H, W))
  gt_pose = _poses(seed, (B, V))
  mask = rng.uniform(size=(B, V, H, W)) > 0.25
  return gt_depth, gt_pose, mask


def _move(pose, depth, s, M):
  """Scales the reconstruction by s and moves its world rigidly by M."""
  p = pose.copy()
  p[..., :3, 3] *= s
  return M @ p, depth * s


_loss_jit = jax.jit(supervised_loss)


def test_zero_at_exact_solution_and_invariant_to_similarity():
  gt_depth, gt_pose, mask = _scene(1)
  ones = np.ones_like(gt_depth)
  loss, diag = supervised_loss(gt_depth, ones, gt_pose, gt_depth, gt_pose, mask)
  np.testing.assert_allclose(loss, 0.0, atol=1e-7)
  pose2, depth2 = _move(gt_pose, gt_depth, 3.7, _poses(2, (B, 1)))
  loss2, diag2 = supervised_loss(depth2, ones, pose2, gt_depth, gt_pose, mask)
  np.testing.assert_allclose(loss2, 0.0, atol=1e-7)
  np.testing.assert_allclose(diag2["rotation_error"], 0.0, atol=1e-7)
  np.testing.assert_allclose(diag2["translation_error"], 0.0, atol=1e-12)
  # 3x4 poses are accepted.
  loss3, _ = supervised_loss(depth2, ones, pose2[..., :3, :], gt_depth, gt_pose[..., :3, :], mask)
  np.testing.assert_allclose(loss3, 0.0, atol=1e-7)


@SETTINGS
@given(st.integers(0, 1000), st.floats(0.01, 100.0), st.floats(0.01, 100.0))
def test_invariant_to_scale_and_rigid_motion_of_prediction_and_gt(seed, s_pred, s_gt):
  gt_depth, gt_pose, mask = _scene(seed)
  rng = _rng(seed + 7)
  pred_depth = gt_depth * rng.uniform(0.7, 1.3, size=gt_depth.shape)
  pred_pose = _poses(seed + 3, (B, V))
  conf = rng.uniform(0.5, 2.0, size=gt_depth.shape)
  base, _ = _loss_jit(pred_depth, conf, pred_pose, gt_depth, gt_pose, mask)
  pp, pd = _move(pred_pose, pred_depth, s_pred, _poses(seed + 5, (B, 1)))
  gp, gd = _move(gt_pose, gt_depth, s_gt, _poses(seed + 6, (B, 1)))
  moved, _ = _loss_jit(pd, conf, pp, gd, gp, mask)
  np.testing.assert_allclose(moved, base, rtol=1e-9)


def _np_reference(pred_depth, conf, pred_pose, gt_depth, gt_pose, mask, alpha, pose_weight):
  depth_num, count, rot, trans, pairs = 0.0, 0.0, 0.0, 0.0, 0
  for b in range(pred_depth.shape[0]):
    m = mask[b]
    sp, sg = pred_depth[b][m].mean(), gt_depth[b][m].mean()
    err = np.abs(pred_depth[b] / sp - gt_depth[b] / sg)
    depth_num += np.sum((conf[b] * err - alpha * np.log(conf[b]))[m])
    count += m.sum()
    for i in range(pred_depth.shape[1]):
      for j in range(pred_depth.shape[1]):
        if i == j:
          continue
        rp = np.linalg.inv(pred_pose[b, i]) @ pred_pose[b, j]
        rg = np.linalg.inv(gt_pose[b, i]) @ gt_pose[b, j]
        rot += Rotation.from_matrix(rp[:3, :3].T @ rg[:3, :3]).magnitude()
        trans += np.linalg.norm(rp[:3, 3] / sp - rg[:3, 3] / sg)
        pairs += 1
  return depth_num / count + pose_weight * (rot + trans) / pairs


def test_matches_numpy_reference():
  gt_depth, gt_pose, mask = _scene(3)
  rng = _rng(4)
  pred_depth = rng.uniform(0.5, 3, size=gt_depth.shape)
  conf = rng.uniform(0.5, 2.0, size=gt_depth.shape)
  pred_pose = _poses(5, (B, V))
  loss, diag = supervised_loss(pred_depth, conf, pred_pose, gt_depth, gt_pose, mask, alpha=0.3,
                               pose_weight=0.7)
  want = _np_reference(pred_depth, conf, pred_pose, gt_depth, gt_pose, mask, 0.3, 0.7)
  np.testing.assert_allclose(loss, want, rtol=1e-10)
  np.testing.assert_allclose(loss, diag["depth_term"] + 0.7 * diag["camera_term"], rtol=1e-12)
  assert diag["num_valid"] == mask.sum()


def test_check_grads_and_descent():
  gt_depth, gt_pose, mask = _scene(6)
  rng = _rng(7)
  pred_depth = jnp.asarray(rng.uniform(0.5, 3, size=gt_depth.shape))
  conf = jnp.asarray(rng.uniform(0.5, 2.0, size=gt_depth.shape))
  pred_pose = jnp.asarray(_poses(8, (B, V)))
  f = jax.jit(lambda d, c, p: supervised_loss(d, c, p, gt_depth, gt_pose, mask)[0])
  check_grads(f, (pred_depth, conf, pred_pose), order=1, modes=["rev"], eps=1e-6)
  g = jax.grad(f, argnums=(0, 1))(pred_depth, conf, pred_pose)
  assert float(f(pred_depth - 1e-3 * g[0], conf - 1e-3 * g[1], pred_pose)) < float(
      f(pred_depth, conf, pred_pose))


@pytest.mark.parametrize("case", ["empty_mask", "single_view", "nan_masked", "exact"])
@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_degenerate_inputs_are_finite(case, dtype):
  gt_depth, gt_pose, mask = _scene(9)
  pred_depth, pred_pose = gt_depth.copy(), gt_pose.copy()
  conf = np.ones_like(gt_depth)
  if case == "empty_mask":
    mask = np.zeros_like(mask)
  elif case == "single_view":
    gt_depth, gt_pose, mask = gt_depth[:, :1], gt_pose[:, :1], mask[:, :1]
    pred_depth, pred_pose, conf = pred_depth[:, :1] * 2, _poses(10, (B, 1)), conf[:, :1]
  elif case == "nan_masked":
    gt_depth = np.where(mask, gt_depth, np.nan)
    pred_depth = np.where(mask, pred_depth * 1.1, np.inf)
    conf = np.where(mask, conf, 0.0)
  args = [jnp.asarray(a, dtype) for a in (pred_depth, conf, pred_pose, gt_depth, gt_pose)]
  (loss, diag), grads = _value_and_grads(*args, mask)
  assert _finite_tree((loss, diag)), case
  assert _finite_tree(grads), case
  if case == "empty_mask":
    np.testing.assert_allclose(diag["depth_term"], 0.0)
  if case == "single_view":
    assert float(diag["camera_term"]) == 0.0
  if case == "exact":
    np.testing.assert_allclose(loss, 0.0, atol=1e-6)


@jax.jit
def _value_and_grads(pred_depth, conf, pred_pose, gt_depth, gt_pose, mask):
  def f(d, c, p):
    return supervised_loss(d, c, p, gt_depth, gt_pose, mask)[0]
  return (supervised_loss(pred_depth, conf, pred_pose, gt_depth, gt_pose, mask),
          jax.grad(f, argnums=(0, 1, 2))(pred_depth, conf, pred_pose))


@pytest.mark.parametrize("kwargs,name", [
    (dict(pred_confidence=np.ones((2, 3, 4, 6))), "pred_confidence"),
    (dict(gt_depth=np.ones((2, 2, 4, 5))), "gt_depth"),
    (dict(gt_mask=np.ones((4, 5))), "gt_mask"),
    (dict(pred_world_from_cam=np.ones((2, 3, 3, 3))), "pred_world_from_cam"),
    (dict(gt_world_from_cam=np.ones((2, 4, 4, 4))), "gt_world_from_cam"),
])
def test_bad_shapes_raise_with_argument_name(kwargs, name):
  args = dict(pred_depth=np.ones((2, 3, 4, 5)), pred_confidence=np.ones((2, 3, 4, 5)),
              pred_world_from_cam=np.tile(np.eye(4), (2, 3, 1, 1)), gt_depth=np.ones((2, 3, 4, 5)),
              gt_world_from_cam=np.tile(np.eye(4), (2, 3, 1, 1)), gt_mask=np.ones((2, 3, 4, 5)))
  args.update(kwargs)
  with pytest.raises(ValueError, match=name):
    supervised_loss(**args)
