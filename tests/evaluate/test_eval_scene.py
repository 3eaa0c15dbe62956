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
