"""Tests of jaxrecon.data.pointcloud: lifting a synthetic scene's ground-truth depth (points land
on their source pixels and carry their labels, sky dropped, confidence percentile), view-aware and
random sampling (quota, ball, distinctness, seeding, padding) and 2D-3D correspondences."""
import numpy as np
import pytest

from jaxrecon.data import pointcloud as pc
from jaxrecon.data.scene import IGNORE_LABEL
from jaxrecon.data.synthetic import make_scene
from jaxrecon.export.points import fuse_points
from jaxrecon.geometry import backproject_depth

N = 1000


@pytest.fixture(scope="module")
def scene():
  return make_scene(0, num_views=3, height=32, width=32)


@pytest.fixture(scope="module")
def cloud(scene):
  return pc.lift(scene.depth, None, scene.images, scene.intrinsics,
                 np.linalg.inv(scene.cam_from_world), scene.labels)


def test_lift_points_land_on_their_source_pixel(scene, cloud):
  h, w = scene.image_size
  assert cloud.image_hw == (h, w) and cloud.xyz.dtype == np.float32
  cam = np.einsum("nij,nj->ni", scene.cam_from_world[cloud.view],
                  np.concatenate([cloud.xyz, np.ones((len(cloud), 1))], 1).astype(np.float64))
  pix = np.einsum("nij,nj->ni", scene.intrinsics[cloud.view], cam[:, :3])
  uv = pix[:, :2] / pix[:, 2:]
  row, col = np.divmod(cloud.pixel, w)
  assert np.all(cam[:, 2] > 0)
  assert np.abs(uv - np.stack([col, row], -1)).max() < 1e-3
  np.testing.assert_array_equal(cloud.label, scene.labels[cloud.view, row, col])
  np.testing.assert_array_equal(cloud.rgb, scene.images[cloud.view, row, col])
  np.testing.assert_array_equal(cloud.confidence, 1.0)


def test_lift_drops_sky_and_keeps_every_valid_pixel_without_confidence(scene, cloud):
  h, w = scene.image_size
  row, col = np.divmod(cloud.pixel, w)
  assert np.all(scene.depth[cloud.view, row, col] > 0)
  np.testing.assert_array_equal(np.bincount(cloud.view, minlength=3),
                                (scene.depth > 0).sum((1, 2)))
  # Views in order, pixels row-major and distinct within a view.
  key = cloud.view.astype(np.int64) * h * w + cloud.pixel
  assert np.all(np.diff(key) > 0)


def test_percentile_filter_drops_about_ten_percent_per_view(scene):
  conf = np.random.default_rng(1).random(scene.depth.shape).astype(np.float32)
  out = pc.lift(scene.depth, conf, scene.images, scene.intrinsics,
                np.linalg.inv(scene.cam_from_world), None)
  valid = (scene.depth > 0).sum((1, 2))
  kept = np.bincount(out.view, minlength=3)
  assert np.all(np.abs(kept / valid - 0.9) < 0.01)
  np.testing.assert_array_equal(out.label, IGNORE_LABEL)
  # Dropped are exactly the least confident valid pixels of each view.
  for v in range(3):
    valid_conf = conf[v][scene.depth[v] > 0]
    assert out.confidence[out.view == v].min() >= np.percentile(valid_conf, 10.0)


def test_lift_matches_fuse_points_when_every_depth_is_valid(scene):
  depth = np.where(scene.depth > 0, scene.depth, 30.0).astype(np.float32)
  conf = np.random.default_rng(2).random(depth.shape).astype(np.float32)
  wfc = np.linalg.inv(scene.cam_from_world)
  out = pc.lift(depth, conf, scene.images, scene.intrinsics, wfc, scene.labels)
  xyz, rgb, c, view = fuse_points(depth, conf, scene.images, scene.intrinsics, wfc)
  np.testing.assert_array_equal(out.xyz, xyz)
  np.testing.assert_array_equal(out.rgb, rgb)
  np.testing.assert_array_equal(out.confidence, c)
  np.testing.assert_array_equal(out.view, view)


def test_one_confidence_filter_for_lift_and_export(scene):
  """#11: one filter (over valid pixels, NaN-safe) used by both lift and fuse_points. With sky
  (depth 0) and one NaN confidence in view 1, both keep exactly the pixels of a float64 numpy
  reference; before, fuse_points took the percentile over all pixels, and the NaN made it NaN
  and dropped all of view 1."""
  conf = np.random.default_rng(4).random(scene.depth.shape).astype(np.float32)
  conf[1, 3, 4] = np.nan
  wfc = np.linalg.inv(scene.cam_from_world)
  assert (scene.depth == 0).any()                                       # sky present
  expected = np.zeros(scene.depth.shape, bool)
  for v in range(3):                                                    # reference
    ok = (scene.depth[v] > 0) & np.isfinite(conf[v])
    values = np.sort(conf[v][ok].astype(np.float64))
    pos = 0.1 * (values.size - 1)                                       # linear interpolation
    lo = int(np.floor(pos))
    threshold = values[lo] + (pos - lo) * (values[min(lo + 1, values.size - 1)] - values[lo])
    expected[v] = ok & (conf[v] >= threshold)
  keep = pc.confident_pixels(conf, scene.depth > 0, 10.0)
  np.testing.assert_array_equal(keep, expected)
  assert 0.85 < keep[1].sum() / ((scene.depth[1] > 0).sum() - 1) < 0.95
  out = pc.lift(scene.depth, conf, scene.images, scene.intrinsics, wfc, scene.labels)
  xyz, _, c, view = fuse_points(scene.depth, conf, scene.images, scene.intrinsics, wfc)
  np.testing.assert_array_equal(out.xyz, xyz)
  np.testing.assert_array_equal(out.confidence, c)
  np.testing.assert_array_equal(np.bincount(view, minlength=3), expected.sum((1, 2)))


def test_lift_and_point_cloud_validate(scene):
  wfc = np.linalg.inv(scene.cam_from_world)
  with pytest.raises(ValueError, match="min_confidence_percentile"):
    pc.lift(scene.depth, None, scene.images, scene.intrinsics, wfc, None,
            min_confidence_percentile=120)
  with pytest.raises(ValueError, match="labels"):
    pc.lift(scene.depth, None, scene.images, scene.intrinsics, wfc, scene.labels[:, :5])
  with pytest.raises(ValueError, match="world_from_cam"):
    pc.lift(scene.depth, None, scene.images, scene.intrinsics, wfc[:2], None)
  with pytest.raises(ValueError, match="rgb"):
    pc.PointCloud(np.zeros((4, 3)), np.zeros((3, 3)), np.ones(4), np.zeros(4), np.zeros(4),
                  np.zeros(4), (2, 2))
  with pytest.raises(ValueError, match="pixel"):
    pc.PointCloud(np.zeros((1, 3)), np.zeros((1, 3)), np.ones(1), np.zeros(1), [4], [0], (2, 2))


def _ball(cloud, target, scale=1.5):
  """Reference ball: coordinate-wise median centre, 95th-percentile distance (sorted, linear
  interpolation between order statistics)."""
  xyz = cloud.xyz.astype(np.float64)
  own = cloud.view == target
  centre = np.array([np.sort(xyz[own][:, k])[[(own.sum() - 1) // 2, own.sum() // 2]].mean()
                     for k in range(3)])
  dist = np.sort(np.linalg.norm(xyz[own] - centre, axis=-1))
  pos = 0.95 * (dist.size - 1)
  lo = int(np.floor(pos))
  radius = dist[lo] + (pos - lo) * (dist[min(lo + 1, dist.size - 1)] - dist[lo])
  return ~own & (np.linalg.norm(xyz - centre, axis=-1) <= scale * radius + 1e-9), centre, radius


@pytest.mark.parametrize("target", [0, 1, 2])
def test_view_aware_sample_quota_ball_and_distinct(cloud, target):
  indices, valid = pc.view_aware_sample(cloud, target, np.random.default_rng(3), num_points=N)
  assert indices.shape == valid.shape == (N,) and indices.dtype == np.int64 and valid.all()
  assert len(np.unique(indices)) == N
  own = cloud.view[indices] == target
  assert own.sum() == round(0.6 * N)
  ball, _, _ = _ball(cloud, target)
  assert ball.sum() >= N - round(0.6 * N)  # enough context in this scene
  assert np.all(ball[indices[~own]])


def test_one_far_point_does_not_turn_view_aware_sampling_into_random_sampling():
  """#11: a single sky point 1e4 away in the target view leaves the ball (and so the context and
  the point normalisation) about where it was; with the old max-distance radius the ball held the
  whole cloud and the context was a uniform draw from it."""
  rng = np.random.default_rng(0)
  xyz = np.concatenate([rng.uniform(-1, 1, (800, 3)), rng.uniform(-20, 20, (4000, 3))])
  view = np.repeat([0, 1], [800, 4000])
  make = lambda xyz, view: pc.PointCloud(xyz, np.zeros((len(xyz), 3)), np.ones(len(xyz)), view,
                                         np.zeros(len(xyz)), np.full(len(xyz), IGNORE_LABEL),
                                         (1, 1))
  clean = make(xyz, view)
  far = make(np.concatenate([xyz, [[1e4, 0.0, 0.0]]]), np.concatenate([view, [0]]))
  ball, centre, radius = _ball(clean, 0)
  assert ball[view == 1].mean() < 0.01               # the ball is a small part of the scene
  far_centre, far_radius = pc.view_ball(far.xyz[far.view == 0])
  assert np.linalg.norm(far_centre - centre) < 0.05 * radius
  assert abs(far_radius / radius - 1) < 0.05
  indices, valid = pc.view_aware_sample(far, 0, np.random.default_rng(3), num_points=N)
  context = indices[valid & (far.view[indices] == 1)]
  assert len(context) and np.all(np.concatenate([ball, [False]])[context])
  from jaxrecon.rewis3d.pipeline import normalise_points
  assert abs(normalise_points(far, 0)[1] / radius - 1) < 0.05


def test_view_aware_sample_is_seeded(cloud):
  a = pc.view_aware_sample(cloud, 1, np.random.default_rng(7), num_points=N)
  b = pc.view_aware_sample(cloud, 1, np.random.default_rng(7), num_points=N)
  c = pc.view_aware_sample(cloud, 1, np.random.default_rng(8), num_points=N)
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])
  assert not np.array_equal(a[0], c[0])


def test_view_aware_sample_pads_a_small_cloud(cloud):
  num = 5000
  indices, valid = pc.view_aware_sample(cloud, 0, np.random.default_rng(4), num_points=num)
  ball, _, _ = _ball(cloud, 0)
  expected = (cloud.view == 0).sum() + ball.sum()
  assert valid.sum() == expected < num
  assert valid[:expected].all() and not valid[expected:].any()  # valid first, then padding
  np.testing.assert_array_equal(indices[~valid], 0)
  assert len(np.unique(indices[valid])) == expected


def test_view_aware_sample_tops_up_from_the_target_view_when_context_is_short(cloud):
  # A vanishing ball: no context, so the whole budget comes from the target view, distinct.
  indices, valid = pc.view_aware_sample(cloud, 2, np.random.default_rng(5), num_points=700,
                                        radius_scale=1e-9)
  assert valid.all() and np.all(cloud.view[indices] == 2) and len(np.unique(indices)) == 700
  # rho = 0: everything from the ball; rho = 1: everything from the view.
  indices, valid = pc.view_aware_sample(cloud, 2, np.random.default_rng(5), num_points=300,
                                        rho=0.0)
  assert valid.all() and np.all(cloud.view[indices] != 2)
  indices, valid = pc.view_aware_sample(cloud, 2, np.random.default_rng(5), num_points=300,
                                        rho=1.0)
  assert valid.all() and np.all(cloud.view[indices] == 2)


def test_view_aware_sample_validates(cloud):
  rng = np.random.default_rng(0)
  with pytest.raises(ValueError, match="num_points"):
    pc.view_aware_sample(cloud, 0, rng, num_points=0)
  with pytest.raises(ValueError, match="rho"):
    pc.view_aware_sample(cloud, 0, rng, num_points=10, rho=1.5)
  with pytest.raises(ValueError, match="radius_scale"):
    pc.view_aware_sample(cloud, 0, rng, num_points=10, radius_scale=0)
  with pytest.raises(ValueError, match="target_view"):
    pc.view_aware_sample(cloud, -1, rng, num_points=10)


def test_random_sample_is_uniform_and_distinct(cloud):
  rng = np.random.default_rng(6)
  counts = np.zeros(len(cloud))
  draws = 200
  for _ in range(draws):
    indices, valid = pc.random_sample(cloud, rng, num_points=N)
    assert valid.all() and len(np.unique(indices)) == N
    counts[indices] += 1
  p = N / len(cloud)
  sigma = np.sqrt(draws * p * (1 - p))
  assert np.abs(counts - draws * p).max() < 6 * sigma
  # Each view's share of the sample matches its share of the cloud.
  share = np.bincount(cloud.view, weights=counts) / counts.sum()
  np.testing.assert_allclose(share, np.bincount(cloud.view) / len(cloud), atol=0.01)
  small = pc.random_sample(cloud, rng, num_points=3000)
  assert small[1].sum() == len(cloud) and not small[1][len(cloud):].any()


def test_correspondences_point_back_to_the_back_projected_pixel(scene, cloud):
  h, w = scene.image_size
  world = np.asarray(backproject_depth(scene.depth, scene.intrinsics,
                                       np.linalg.inv(scene.cam_from_world)))
  for target in range(3):
    indices, valid = pc.view_aware_sample(cloud, target, np.random.default_rng(target),
                                          num_points=3000)
    corr = pc.correspondences(cloud, indices, valid, target)
    assert corr.dtype == np.int32 and corr.shape == (3000,)
    mine = valid & (cloud.view[indices] == target)
    np.testing.assert_array_equal(corr >= 0, mine)
    row, col = np.divmod(corr[mine], w)
    np.testing.assert_allclose(cloud.xyz[indices[mine]], world[target, row, col], atol=1e-4)
    np.testing.assert_array_equal(cloud.label[indices[mine]], scene.labels[target, row, col])


def test_all_sky_scene_gives_an_empty_cloud_and_all_invalid_samples(scene):
  empty = pc.lift(np.zeros_like(scene.depth), None, scene.images, scene.intrinsics,
                  np.linalg.inv(scene.cam_from_world), scene.labels)
  assert len(empty) == 0 and empty.xyz.shape == (0, 3) and empty.pixel.dtype == np.int32
  rng = np.random.default_rng(0)
  for indices, valid in (pc.view_aware_sample(empty, 1, rng, num_points=64),
                         pc.random_sample(empty, rng, num_points=64)):
    assert indices.shape == (64,) and not valid.any() and np.all(indices == 0)
    np.testing.assert_array_equal(pc.correspondences(empty, indices, valid, 1), -1)


def test_target_view_without_points_draws_context_from_the_whole_cloud(scene):
  depth = scene.depth.copy()
  depth[1] = 0.0                                   # view 1 sees only sky
  cloud = pc.lift(depth, None, scene.images, scene.intrinsics,
                  np.linalg.inv(scene.cam_from_world), scene.labels)
  indices, valid = pc.view_aware_sample(cloud, 1, np.random.default_rng(0), num_points=N)
  assert valid.all() and len(np.unique(indices)) == N and np.all(cloud.view[indices] != 1)
  np.testing.assert_array_equal(pc.correspondences(cloud, indices, valid, 1), -1)
