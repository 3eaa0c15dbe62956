"""End to end on the procedural world with exact cameras, and on degenerate input."""
import dataclasses

import numpy as np
import pytest

from jaxrecon import mvs
from jaxrecon.data.scene import Scene
from jaxrecon.data.synthetic import intrinsics_from_fov, orbit, random_world, render

SETTINGS = mvs.MVSSettings(num_hypotheses=32, refine_hypotheses=6, window_radius=2, near=2.0,
                           far=60.0, chunk=16)


@pytest.fixture(scope="module")
def scene():
  """5 views 10 degrees apart of a procedural world without mirrors, 72 x 96 pixels."""
  world = random_world(np.random.default_rng(5), mirror_prob=0.0)
  cams = orbit(5, radius=6.0, height=3.0, arc_degrees=40.0, start_degrees=30.0)
  k = np.tile(intrinsics_from_fov(72, 96, 60.0), (5, 1, 1))
  images, depth, _ = render(world, k, cams, 72, 96, supersample=1)
  return Scene(images=np.asarray(images), intrinsics=k, cam_from_world=cams,
               depth=np.asarray(depth))


@pytest.fixture(scope="module")
def result(scene):
  return mvs.reconstruct_dense(scene.images, scene.intrinsics, scene.cam_from_world,
                               settings=SETTINGS)


def test_depth_of_confident_pixels_matches_ground_truth(scene, result):
  gt = scene.depth
  valid = gt > 0
  confident = valid & (result.confidence > 0)
  rel = np.abs(result.depth - gt)[confident] / gt[confident]
  assert confident.sum() / valid.sum() > 0.25
  assert np.median(rel) < 0.01
  # Sky has no texture and no depth to agree on: almost none of it survives.
  assert np.mean(result.confidence[~valid] > 0) < 0.05
  assert result.depth.shape == gt.shape and np.all(np.isfinite(result.depth))


def test_point_cloud_matches_the_confident_pixels(scene, result):
  n = int((result.confidence > 0).sum())
  assert result.points.shape == (n, 3) and result.colors.shape == (n, 3)
  assert np.all(result.point_confidence > 0)
  v, (u, r) = result.point_view, result.point_pixel.T
  np.testing.assert_array_equal(result.colors, scene.images[v, r, u])
  assert result.neighbours.shape == (5, 4)
  assert not np.any(result.neighbours == np.arange(5)[:, None])


def test_uniform_images_give_finite_depth_and_no_confidence(scene):
  flat = np.full_like(scene.images, 128)
  out = mvs.reconstruct_dense(flat, scene.intrinsics, scene.cam_from_world, settings=SETTINGS)
  assert np.all(np.isfinite(out.depth)) and np.all(np.isfinite(out.confidence))
  assert np.all(out.confidence == 0) and np.all(out.photometric_confidence == 0)
  assert len(out.points) == 0


def test_sparse_points_set_the_range_and_bad_input_is_refused(scene):
  pts = np.random.default_rng(0).uniform(-2, 2, size=(200, 3))
  # Same static settings as the fixture's run, so nothing compiles again.
  settings = dataclasses.replace(SETTINGS, near=None, far=None)
  out = mvs.reconstruct_dense(scene.images, scene.intrinsics, scene.cam_from_world, pts,
                              settings=settings)
  z = np.einsum("vij,nj->vni", scene.cam_from_world[:, :3, :3], pts)[..., 2] + \
      scene.cam_from_world[:, None, 2, 3]
  assert np.all(out.depth_range[:, 0] < z.min(1)) and np.all(out.depth_range[:, 1] > z.max(1))
  with pytest.raises(ValueError, match="near"):
    mvs.reconstruct_dense(scene.images, scene.intrinsics, scene.cam_from_world)
  with pytest.raises(ValueError, match="point_views"):
    mvs.reconstruct_dense(scene.images, scene.intrinsics, scene.cam_from_world, pts,
                          settings=settings, point_views=np.ones((200, 4), bool))
  with pytest.raises(ValueError, match="cam_from_world"):
    mvs.reconstruct_dense(scene.images, scene.intrinsics, scene.cam_from_world[:2],
                          settings=SETTINGS)
