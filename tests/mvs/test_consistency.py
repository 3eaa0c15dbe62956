"""Geometric consistency: exact depth maps agree across views, a corrupted one is rejected."""
import jax.numpy as jnp
import numpy as np

from jaxrecon import geometry, mvs
from jaxrecon.data.synthetic import intrinsics_from_fov, orbit

H, W = 30, 40


def _plane_depth(k, cams, plane_z=0.0):
  """Exact depth of the ground plane world z = plane_z in every view (ray-plane intersection)."""
  world_from_cam = np.linalg.inv(cams)
  grid = np.asarray(geometry.pixel_grid(H, W), np.float64)  # integer centres: exact
  rays = np.concatenate([grid, np.ones((H, W, 1))], -1) @ np.linalg.inv(k[0]).T  # z = 1 rays
  rays_w = np.einsum("vij,hwj->vhwi", world_from_cam[:, :3, :3], rays)
  centres = world_from_cam[:, :3, 3]
  depth = (plane_z - centres[:, None, None, 2]) / rays_w[..., 2]
  return np.where(depth > 0, depth, 0.0)


def test_exact_depths_are_confirmed_and_a_corrupted_map_is_rejected():
  cams = orbit(5, radius=5.0, height=3.0, arc_degrees=40.0)
  k = np.tile(intrinsics_from_fov(H, W, 60.0), (5, 1, 1))
  depth = _plane_depth(k, cams)
  nbrs = jnp.asarray([[1, 2], [0, 2], [1, 3], [2, 4], [3, 2]])
  args = (jnp.asarray(k, jnp.float32), jnp.asarray(cams, jnp.float32), nbrs)
  count, fused = mvs.geometric_consistency(jnp.asarray(depth, jnp.float32), *args)
  count = np.asarray(count)
  # Pixels near the image sides leave one neighbour's view (10 degrees apart), so not all get 2.
  assert np.mean(count[2][depth[2] > 0] >= 1) > 0.97
  assert np.mean(count[2][depth[2] > 0] == 2) > 0.7
  # Bilinear interpolation of a slanted plane's depth is off by a little; within the tolerance.
  rel = np.abs(np.asarray(fused) - depth)[depth > 0] / depth[depth > 0]
  assert np.median(rel) < 1e-4 and np.max(rel) < 0.01

  bad = depth.copy()
  bad[2, :, : W // 2] *= 1.05           # 5 % off: far outside the 1 % tolerance
  count_bad, _ = mvs.geometric_consistency(jnp.asarray(bad, jnp.float32), *args)
  count_bad = np.asarray(count_bad)
  assert np.all(count_bad[2, :, : W // 2] == 0)
  np.testing.assert_array_equal(count_bad[2, :, W // 2 + 2:], count[2, :, W // 2 + 2:])


def test_fuse_points_lands_on_the_plane():
  cams = orbit(3, radius=5.0, height=3.0, arc_degrees=20.0)
  k = np.tile(intrinsics_from_fov(H, W, 60.0), (3, 1, 1))
  depth = _plane_depth(k, cams)
  conf = (depth > 0).astype(np.float32)
  images = np.zeros((3, H, W, 3), np.uint8)
  cloud = mvs.fuse_points(depth, conf, images, k, cams)
  assert len(cloud["points"]) == int(conf.sum())
  np.testing.assert_allclose(cloud["points"][:, 2], 0.0, atol=1e-4)
  assert cloud["colors"].shape == (len(cloud["points"]), 3)
