"""Tests of jaxrecon.evaluate.scene.scene_metrics (the row format of the report)."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from jaxrecon.evaluate import scene_metrics


def _cams(rng, v):
  out = []
  for R in Rotation.random(v, random_state=int(rng.integers(1 << 31))).as_matrix():
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, -R @ rng.uniform(-2, 2, 3)
    out.append(T)
  return np.stack(out)


def test_scene_metrics_perfect_copy_and_keys():
  rng = np.random.default_rng(0)
  gt_cams = _cams(rng, 4)
  pred_cams = gt_cams.copy()
  pred_cams[:, :3, 3] *= 0.5  # same cameras in a world scaled by 1/2
  depth = rng.uniform(1, 3, size=(4, 5, 6))
  valid = np.ones_like(depth, bool)
  pts = rng.uniform(1, 3, size=(4, 5, 6, 3))
  out = scene_metrics(pred_cams, gt_cams, 0.5 * depth, depth, valid,
                      pred_points=0.5 * pts, gt_points=pts)
  assert list(out) == ["rra30", "rta30", "auc30", "ate", "depth_rel", "depth_tau", "points_rel",
                       "points_tau"]
  for k in ("rra30", "rta30", "auc30", "depth_tau", "points_tau"):
    assert out[k] == pytest.approx(100.0), k
  for k in ("ate", "depth_rel", "points_rel"):
    assert out[k] == pytest.approx(0.0, abs=1e-9), k
  assert all(isinstance(v, float) for v in out.values())


def test_scene_metrics_poses_only_and_argument_checks():
  rng = np.random.default_rng(1)
  cams = _cams(rng, 3)
  out = scene_metrics(cams, cams, pose_threshold=15)
  assert set(out) == {"rra15", "rta15", "auc15", "ate"}
  with pytest.raises(ValueError):
    scene_metrics(cams, cams, np.ones((3, 2, 2)), None, np.ones((3, 2, 2), bool))
  with pytest.raises(ValueError):
    scene_metrics(cams, cams, np.ones((3, 2, 2)), np.ones((3, 2, 2)))


def _reference_point_metrics(pred_depth, gt_depth, K, pred_cams, gt_cams, tau=1.03):
  """Loop reference (float64): points in the frame of each map's first camera, median scale."""
  def first_frame_points(depth, cams):
    out = np.zeros(depth.shape + (3,))
    for i in range(depth.shape[0]):
      for r in range(depth.shape[1]):
        for c in range(depth.shape[2]):
          x_cam = depth[i, r, c] * np.linalg.solve(K[i], [c, r, 1.0])
          world = np.linalg.solve(cams[i][:3, :3], x_cam - cams[i][:3, 3])
          out[i, r, c] = cams[0][:3, :3] @ world + cams[0][:3, 3]
    return out.reshape(-1, 3)
  p, g = first_frame_points(pred_depth, pred_cams), first_frame_points(gt_depth, gt_cams)
  s = np.median(np.linalg.norm(g, axis=1) / np.linalg.norm(p, axis=1))
  err = np.linalg.norm(s * p - g, axis=1) / np.linalg.norm(g, axis=1)
  return err.mean(), 100.0 * np.mean(err < tau - 1.0)


def test_scene_metrics_reports_point_map_rel_and_tau_from_depth_and_intrinsics():
  """#11: with intrinsics, a depth-and-pose prediction gets the protocol's point-map rel / tau,
  equal to a per-pixel float64 loop reference."""
  rng = np.random.default_rng(2)
  v, h, w = 3, 4, 5
  gt_cams = _cams(rng, v)
  K = np.broadcast_to(np.array([[6.0, 0, 2.0], [0, 6.0, 1.5], [0, 0, 1]]), (v, 3, 3))
  gt_depth = rng.uniform(1, 3, (v, h, w))
  pred_depth = 0.5 * gt_depth * (1 + 0.03 * rng.normal(size=gt_depth.shape))
  pred_cams = gt_cams.copy()
  pred_cams[:, :3, 3] = 0.5 * pred_cams[:, :3, 3] + 0.02 * rng.normal(size=(v, 3))
  out = scene_metrics(pred_cams, gt_cams, pred_depth, gt_depth, np.ones((v, h, w), bool),
                      intrinsics=K)
  rel, tau = _reference_point_metrics(pred_depth, gt_depth, K, pred_cams, gt_cams)
  assert 0.005 < rel < 0.2 and 0 < tau < 100
  assert out["points_rel"] == pytest.approx(rel, rel=1e-9)
  assert out["points_tau"] == pytest.approx(tau, abs=1e-9)
  assert "points_rel" not in scene_metrics(pred_cams, gt_cams, pred_depth, gt_depth,
                                           np.ones((v, h, w), bool))
