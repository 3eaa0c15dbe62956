"""Tests of jaxrecon.experts.simulated_depth and simulated_tracker on small hand-made scenes."""
import numpy as np
import pytest

from jaxrecon.experts import simulated_depth, simulated_tracker

_H, _W = 48, 64


def _scene_depth(num_views=4, h=120, w=160):
  """(v, h, w) depth: a slanted, bumpy surface 2-10 units away, the top h / 5 rows sky (0).

  Larger than the tracker scenes: the 1.5 px edge blur must touch a realistic (small) fraction of
  the pixels, as it does at 480 x 640."""
  rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
  depths = []
  for view in range(num_views):
    d = 2.0 + 8.0 * cols / w + 1.5 * np.sin(rows / 17.0 + view) + 0.5 * rows / h
    d[:h // 5] = 0.0
    depths.append(d)
  return np.stack(depths)


def _ranks(x):
  ranks = np.empty(len(x))
  ranks[np.argsort(x, kind="stable")] = np.arange(len(x))
  return ranks


def _spearman(a, b):
  return float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])


@pytest.fixture(scope="module")
def simulated():
  depth = _scene_depth()
  mirror = np.zeros(depth.shape, bool)
  mirror[:, 60:80, 50:75] = True
  # The truth "behind" the mirror is far away (a reflection); the label must not show it.
  depth = np.where(mirror, 30.0, depth)
  expert = simulated_depth.SimulatedDepthExpert(seed=3)
  return depth, mirror, expert(depth, mirror)


def test_simulated_depth_is_finite_positive_float32(simulated):
  depth, _, out = simulated
  assert out.depth.shape == depth.shape and out.depth.dtype == np.float32
  assert np.isfinite(out.depth).all() and (out.depth > 0).all()


def test_simulated_depth_is_monotone_in_truth_on_trusted_pixels(simulated):
  depth, mirror, out = simulated
  trusted = (depth > 0) & ~mirror
  for view in range(len(depth)):
    rho = _spearman(depth[view][trusted[view]], out.depth[view][trusted[view]])
    assert rho > 0.9, (view, rho)


def test_simulated_depth_scale_and_shift_differ_across_views(simulated):
  depth, mirror, out = simulated
  assert len(np.unique(np.round(out.scale, 6))) == len(depth)
  assert len(np.unique(np.round(out.shift, 6))) == len(depth)
  # The realised affine map from truth to label (least squares) differs too.
  trusted = (depth > 0) & ~mirror
  fits = [np.polyfit(depth[v][trusted[v]], out.depth[v][trusted[v]], 1) for v in range(len(depth))]
  slopes = np.array([f[0] for f in fits])
  assert slopes.max() / slopes.min() > 1.5


def test_simulated_depth_fills_sky_far_and_mirror_with_surroundings(simulated):
  depth, mirror, out = simulated
  for view in range(len(depth)):
    label = out.depth[view]
    sky = depth[view] == 0
    # Sky is painted as a far surface: farther than nearly all of the real scene in that view.
    assert np.median(label[sky]) > np.percentile(label[~sky], 95)
    # The mirror shows a plausible surface continuing its surroundings, not the far truth.
    ring = np.zeros_like(sky)
    ring[55:85, 45:80] = True
    ring &= ~mirror[view]
    ratio = np.median(label[mirror[view]]) / np.median(label[ring])
    assert 0.8 < ratio < 1.25, ratio


def test_simulated_depth_is_seeded_and_handles_all_sky():
  depth = _scene_depth(2)
  expert = simulated_depth.SimulatedDepthExpert(seed=7)
  np.testing.assert_array_equal(expert(depth).depth, expert(depth).depth)
  assert not np.array_equal(expert(depth).depth,
                            simulated_depth.SimulatedDepthExpert(seed=8)(depth).depth)
  sky_only = expert(np.zeros((1, 8, 8)), np.ones((1, 8, 8), bool)).depth
  assert np.isfinite(sky_only).all() and (sky_only > 0).all()
  with pytest.raises(ValueError, match="shift_range"):
    simulated_depth.SimulatedDepthExpert(shift_range=(-1.0, 0.0))


# --- simulated tracker --------------------------------------------------------------------------


def _rotation_y(angle):
  c, s = np.cos(angle), np.sin(angle)
  return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _cameras(num_views=3):
  """Cameras on an arc looking at the origin from 6 units away; (K (v, 3, 3), poses (v, 4, 4))."""
  k = np.array([[60.0, 0, (_W - 1) / 2], [0, 60.0, (_H - 1) / 2], [0, 0, 1]])
  poses = []
  for view in range(num_views):
    pose = np.eye(4)
    pose[:3, :3] = _rotation_y(0.1 * (view - 1))
    pose[:3, 3] = [0.0, 0.0, 6.0]
    poses.append(pose)
  return np.stack([k] * num_views), np.stack(poses)


def _render_plane(intrinsics, poses, plane_z=0.0):
  """(v, h, w) depth of the world plane z = plane_z seen by each camera (ray-plane intersection)."""
  rows, cols = np.mgrid[0:_H, 0:_W].astype(np.float64)
  pixels = np.stack([cols, rows, np.ones_like(cols)], axis=-1)
  depths = []
  for k, pose in zip(intrinsics, poses):
    rays = pixels @ np.linalg.inv(k).T  # camera frame, z = 1
    rotation, translation = pose[:3, :3], pose[:3, 3]
    centre = -rotation.T @ translation
    directions = rays @ rotation  # world frame, per unit camera depth
    depths.append((plane_z - centre[2]) / directions[..., 2])
  return np.stack(depths)


def _project(points, intrinsics, poses):
  """(t, v, 2) pixels and (t, v) camera z of world points (t, 3) (reference numpy projection)."""
  camera = np.einsum("vij,tj->tvi", poses[:, :3, :3], points) + poses[None, :, :3, 3]
  pixel = np.einsum("vij,tvj->tvi", intrinsics, camera / camera[..., 2:3])
  return pixel[..., :2], camera[..., 2]


def test_noise_free_tracks_are_exact_projections():
  intrinsics, poses = _cameras()
  depth = _render_plane(intrinsics, poses)
  tracker = simulated_tracker.SimulatedTracker(num_tracks=200, noise_px=0.0, outlier_fraction=0.0)
  out = tracker(depth, intrinsics, poses)
  assert out.pixels.shape == (200, 3, 2) and out.pixels.dtype == np.float32
  assert out.mask.all() and not out.outliers.any()
  assert (out.visible.sum(axis=1) >= 2).all()
  # Points lie on the plane, the reference observation is a pixel centre.
  np.testing.assert_allclose(out.points[:, 2], 0.0, atol=1e-9)
  reference_uv = out.pixels[np.arange(200), out.reference]
  np.testing.assert_allclose(reference_uv, np.rint(reference_uv), atol=1e-4)
  expected, z = _project(out.points, intrinsics, poses)
  np.testing.assert_allclose(out.pixels[out.visible], expected[out.visible], atol=1e-3)
  inside = ((z > 0) & (expected[..., 0] >= -0.5) & (expected[..., 0] <= _W - 0.5)
            & (expected[..., 1] >= -0.5) & (expected[..., 1] <= _H - 0.5))
  np.testing.assert_array_equal(out.visible, inside)
  assert np.isnan(out.pixels[~out.visible]).all()


def test_noise_and_outlier_fraction():
  intrinsics, poses = _cameras()
  depth = _render_plane(intrinsics, poses)
  clean = simulated_tracker.SimulatedTracker(num_tracks=300, noise_px=0.0, outlier_fraction=0.0,
                                             seed=5)(depth, intrinsics, poses)
  noisy = simulated_tracker.SimulatedTracker(num_tracks=300, noise_px=0.7, outlier_fraction=0.2,
                                             seed=5)(depth, intrinsics, poses)
  expected, _ = _project(noisy.points, intrinsics, poses)
  num_observed = noisy.visible.sum()
  assert noisy.outliers.sum() == round(0.2 * num_observed)
  assert not (noisy.outliers & ~noisy.visible).any()
  inliers = noisy.visible & ~noisy.outliers
  residual = (noisy.pixels - expected)[inliers]
  assert 0.55 < residual.std() < 0.85
  outlier_error = np.linalg.norm((noisy.pixels - expected)[noisy.outliers], axis=-1)
  assert np.median(outlier_error) > 5.0
  assert np.isfinite(noisy.pixels[noisy.visible]).all()
  assert clean.mask.all() and noisy.mask.all()


def test_occlusion_is_respected():
  # Two identical cameras looking at a wall 5 units away; view 1 additionally sees an occluder 2
  # units away over its right half, which hides the wall there.
  intrinsics, poses = _cameras(1)
  intrinsics = np.repeat(intrinsics, 2, axis=0)
  poses = np.repeat(poses, 2, axis=0)
  depth = np.full((2, _H, _W), 5.0)
  depth[1, :, _W // 2:] = 2.0
  tracker = simulated_tracker.SimulatedTracker(num_tracks=400, min_views=1, reference_view=0,
                                               noise_px=0.0, outlier_fraction=0.0)
  out = tracker(depth, intrinsics, poses)
  assert out.mask.all() and (out.reference == 0).all() and out.visible[:, 0].all()
  left = out.pixels[:, 0, 0] < _W // 2 - 0.5
  np.testing.assert_array_equal(out.visible[:, 1], left)
  assert 0 < left.sum() < 400
  # With min_views = 2 only unoccluded points come back.
  both = simulated_tracker.SimulatedTracker(num_tracks=100, reference_view=0, noise_px=0.0,
                                            outlier_fraction=0.0)(depth, intrinsics, poses)
  assert both.visible[both.mask].all() and (both.pixels[both.mask, :, 0] < _W // 2).all()


def test_tracker_pads_when_too_few_points_qualify():
  intrinsics, poses = _cameras(2)
  depth = np.zeros((2, _H, _W))  # all sky: no surface point at all
  out = simulated_tracker.SimulatedTracker(num_tracks=10)(depth, intrinsics, poses)
  assert not out.mask.any() and not out.visible.any() and np.isnan(out.pixels).all()
  assert (out.reference == -1).all()
  tracker = simulated_tracker.SimulatedTracker(num_tracks=50, seed=2)
  depth = _render_plane(intrinsics, poses)
  np.testing.assert_array_equal(tracker(depth, intrinsics, poses).pixels,
                                tracker(depth, intrinsics, poses).pixels)
