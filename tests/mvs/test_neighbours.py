"""View selection and depth ranges on a ring of cameras around a cloud of points."""
import jax.numpy as jnp
import numpy as np

from jaxrecon import mvs
from jaxrecon.data.synthetic import intrinsics_from_fov, orbit

H, W = 48, 64


def _ring(num=12):
  cams = orbit(num, radius=6.0, height=1.0, arc_degrees=360.0)
  k = np.tile(intrinsics_from_fov(H, W, 60.0), (num, 1, 1))
  return jnp.asarray(k, jnp.float32), jnp.asarray(cams, jnp.float32)


def test_neighbours_are_the_adjacent_views_of_a_ring():
  k, cams = _ring()
  pts = np.random.default_rng(0).uniform(-1, 1, size=(400, 3)) + [0, 0, 0.3]
  for points in (jnp.asarray(pts, jnp.float32), mvs.frustum_points(k, cams, 3.0, 12.0,
                                                                   image_size=(H, W))):
    idx, score = mvs.select_neighbours(mvs.view_scores(points, k, cams, image_size=(H, W)), num=2)
    for v in range(12):
      assert set(np.asarray(idx[v]).tolist()) == {(v - 1) % 12, (v + 1) % 12}
    assert np.all(np.asarray(score) > 0)


def test_depth_ranges_cover_the_points_each_view_sees():
  k, cams = _ring()
  pts = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, size=(400, 3)), jnp.float32)
  ranges = np.asarray(mvs.depth_ranges(pts, k, cams, image_size=(H, W)))
  z = np.einsum("vij,nj->vni", np.asarray(cams)[:, :3, :3], np.asarray(pts))[..., 2] + np.asarray(
      cams)[:, None, 2, 3]
  assert np.all(ranges[:, 0] < np.percentile(z, 1, axis=1))
  assert np.all(ranges[:, 1] > np.percentile(z, 99, axis=1))
  assert np.all(ranges[:, 0] > 0) and np.all(ranges[:, 0] < ranges[:, 1])
