"""Tests of jaxrecon.geometry.cameras and jaxrecon.geometry.sampling (OpenCV / scipy references)."""
import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads
from scipy import ndimage
from scipy.spatial.transform import Rotation

from jaxrecon.geometry import cameras as cam
from jaxrecon.geometry.sampling import sample_bilinear

pytestmark = pytest.mark.x64  # float64 references (OpenCV, scipy) and check_grads

SETTINGS = settings(max_examples=25, deadline=None)


def _rng(seed=0):
  return np.random.default_rng(seed)


def _pose(seed, shape=()):
  n = int(np.prod(shape))
  R = Rotation.random(n, random_state=seed).as_matrix().reshape(shape + (3, 3))
  t = _rng(seed).normal(size=shape + (3,))
  T = np.zeros(shape + (4, 4))
  T[..., :3, :3] = R
  T[..., :3, 3] = t
  T[..., 3, 3] = 1
  return T


def _K(fx=500.0, fy=480.0, cx=320.0, cy=240.0, skew=0.0):
  return np.array([[fx, skew, cx], [0, fy, cy], [0, 0, 1.0]])


def _finite_tree(tree):
  return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(tree))


# ---------------------------------------------------------------------------------------------
# Poses


def test_make_invert_compose_poses():
  T = _pose(0, (5,))
  R, t = T[..., :3, :3], T[..., :3, 3]
  np.testing.assert_allclose(cam.make_pose(R, t), T, atol=0)
  np.testing.assert_allclose(cam.invert_pose(T), np.linalg.inv(T), atol=1e-12)
  np.testing.assert_allclose(cam.invert_pose(T[..., :3, :]), np.linalg.inv(T), atol=1e-12)
  S = _pose(1, (5,))
  np.testing.assert_allclose(cam.compose_poses(T, S), T @ S, atol=1e-12)
  np.testing.assert_allclose(cam.compose_poses(T[..., :3, :], S[..., :3, :]), T @ S, atol=1e-12)
  np.testing.assert_allclose(cam.compose_poses(T, cam.invert_pose(T)),
                             np.broadcast_to(np.eye(4), T.shape), atol=1e-12)
  # Leading axes broadcast: one pose against many.
  np.testing.assert_allclose(cam.compose_poses(T[:1], S), T[:1] @ S, atol=1e-12)
  # make_pose broadcasts R and t.
  assert cam.make_pose(np.eye(3), np.zeros((2, 7, 3))).shape == (2, 7, 4, 4)


def test_transform_points_and_camera_centers():
  T = _pose(2, (3,))
  pts = _rng(3).normal(size=(3, 10, 3))
  want = np.einsum("bij,bnj->bni", T[..., :3, :3], pts) + T[:, None, :3, 3]
  np.testing.assert_allclose(cam.transform_points(T, pts), want, atol=1e-12)
  np.testing.assert_allclose(cam.transform_points(T[:, :3], pts), want, atol=1e-12)
  c = cam.camera_centers(T)
  np.testing.assert_allclose(c, np.linalg.inv(T)[:, :3, 3], atol=1e-12)
  # The centre maps to the camera origin.
  np.testing.assert_allclose(cam.transform_points(T, c[:, None]), np.zeros((3, 1, 3)), atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Projection


def test_project_matches_cv2_project_points():
  K = _K()  # cv2's pinhole model has no skew term
  T = _pose(4)
  in_cam = _rng(5).normal(size=(50, 3)) + [0, 0, 6.0]
  pts = (in_cam - T[:3, 3]) @ T[:3, :3]  # world = R^T (x_cam - t)
  rvec = cv2.Rodrigues(T[:3, :3])[0]
  want = cv2.projectPoints(pts, rvec, T[:3, 3], K, None)[0][:, 0]
  pix, depth = cam.project(pts, K, T)
  np.testing.assert_allclose(pix, want, atol=1e-8)
  np.testing.assert_allclose(depth, (pts @ T[:3, :3].T + T[:3, 3])[:, 2], atol=1e-12)
  assert np.all(np.asarray(depth) > 0)
  # Camera-frame input without a pose.
  pix_c, _ = cam.project(np.asarray(cam.transform_points(T, pts)), K)
  np.testing.assert_allclose(pix_c, want, atol=1e-8)


def test_projection_matrix_agrees_with_project():
  K = np.stack([_K(), _K(300, 310, 100, 90)])
  T = _pose(6, (2,))
  pts = _rng(7).normal(size=(2, 20, 3)) * 0.5
  pts = np.asarray(cam.transform_points(np.linalg.inv(T), pts + np.array([0, 0, 4.0])))
  P = np.asarray(cam.projection_matrix(K, T))
  assert P.shape == (2, 3, 4)
  homog = np.einsum("bij,bnj->bni", P, np.concatenate([pts, np.ones((2, 20, 1))], -1))
  pix, _ = cam.project(pts, K, T[:, :3])
  np.testing.assert_allclose(pix, homog[..., :2] / homog[..., 2:], atol=1e-9)


def test_project_behind_and_at_camera_is_finite_with_finite_gradients():
  K = jnp.asarray(_K())
  pts = jnp.array([[0.1, 0.2, -2.0], [0.1, 0.2, 0.0], [0.0, 0.0, 0.0], [0.3, -0.1, 1e-9],
                   [0.1, 0.1, 2.0]])
  pix, depth = cam.project(pts, K)
  assert _finite_tree(pix)
  np.testing.assert_allclose(depth, pts[:, 2], atol=0)
  # A point behind the camera projects with its true (negative) depth: mirrored image position.
  np.testing.assert_allclose(pix[0], [500 * 0.1 / -2 + 320, 480 * 0.2 / -2 + 240])
  g = jax.grad(lambda p: jnp.sum(cam.project(p, K, min_depth=1e-4)[0]))(pts)
  assert _finite_tree(g)
  for dtype in (jnp.float32,):
    g32 = jax.grad(lambda p: jnp.sum(cam.project(p, K.astype(dtype))[0]))(pts.astype(dtype))
    assert _finite_tree(g32)


def test_project_check_grads():
  K = jnp.asarray(_K(skew=0.3))
  T = jnp.asarray(_pose(8))
  pts = jnp.asarray(np.asarray(cam.transform_points(jnp.linalg.inv(T),
                                                    _rng(9).normal(size=(6, 3)) + [0, 0, 5.0])))
  check_grads(jax.jit(lambda p, k, t: cam.project(p, k, t)[0]), (pts, K, T), order=1,
              modes=["fwd", "rev"], eps=1e-6)


def test_unproject_inverts_project():
  K = _K(skew=2.0)
  T = _pose(10, (2,))
  pts = _rng(11).normal(size=(2, 30, 3)) + np.array([0, 0, 5.0])
  world = np.asarray(cam.transform_points(np.linalg.inv(T), pts))
  pix, depth = cam.project(world, K, T)
  np.testing.assert_allclose(cam.unproject(pix, depth, K, np.linalg.inv(T)), world, atol=1e-10)
  pix_c, depth_c = cam.project(pts, K)
  np.testing.assert_allclose(cam.unproject(pix_c, depth_c, K), pts, atol=1e-10)


@SETTINGS
@given(st.integers(0, 10_000), st.sampled_from([1, 3]), st.sampled_from([1, 4]))
def test_project_unproject_round_trip_property(seed, b, n):
  rng = _rng(seed)
  T = _pose(seed, (b,))
  K = _K(*rng.uniform([100, 100, 10, 10], [900, 900, 500, 500]), skew=rng.uniform(-2, 2))
  cam_pts = rng.normal(size=(b, n, 3)) + np.array([0, 0, 3.0])
  cam_pts[..., 2] = np.abs(cam_pts[..., 2]) + 0.1
  world = np.asarray(cam.transform_points(cam.invert_pose(T), cam_pts))
  pix, depth = cam.project(world, K, T)
  np.testing.assert_allclose(depth, cam_pts[..., 2], atol=1e-9)
  back = cam.unproject(pix, depth, K, cam.invert_pose(T))
  np.testing.assert_allclose(back, world, atol=1e-8)


def test_pixel_grid_and_backproject_depth():
  grid = cam.pixel_grid(3, 4)
  assert grid.shape == (3, 4, 2) and grid.dtype == jnp.float32
  np.testing.assert_array_equal(grid[2, 1], [1, 2])  # (u, v) = (col, row)
  K = np.stack([_K(50, 60, 2, 1.5), _K(40, 40, 1.5, 1.0, skew=0.5)])
  depth = _rng(12).uniform(1, 3, size=(2, 3, 4))
  pose = _pose(13, (2,))
  pts = np.asarray(cam.backproject_depth(depth, K, pose))
  assert pts.shape == (2, 3, 4, 3)
  flat_pix = np.broadcast_to(np.asarray(cam.pixel_grid(3, 4, jnp.float64)).reshape(12, 2),
                             (2, 12, 2))
  want = cam.unproject(flat_pix, depth.reshape(2, 12), K, pose)
  np.testing.assert_allclose(pts.reshape(2, 12, 3), want, atol=1e-12)
  pts_c = np.asarray(cam.backproject_depth(depth, K))
  np.testing.assert_allclose(pts_c[..., 2], depth, atol=1e-12)
  # Projecting the camera-frame points gives back the grid.
  pix, _ = cam.project(pts_c.reshape(2, 12, 3), K)
  np.testing.assert_allclose(pix, flat_pix, atol=1e-10)


def test_inverse_intrinsics_closed_form():
  K = np.stack([_K(skew=3.0), _K(10, 20, 3, 4)])
  K[1, 2, 2] = 2.0  # general upper-triangular
  np.testing.assert_allclose(cam.inverse_intrinsics(K), np.linalg.inv(K), atol=1e-14)


def test_scale_intrinsics_follows_pixel_centre_convention():
  K = _K(skew=0.7)
  pts = _rng(14).normal(size=(10, 3)) + [0, 0, 4.0]
  pix, _ = cam.project(pts, K)
  K2 = cam.scale_intrinsics(K, 0.5, 0.25)
  pix2, _ = cam.project(pts, K2)
  np.testing.assert_allclose(pix2, (np.asarray(pix) + 0.5) * [0.5, 0.25] - 0.5, atol=1e-10)
  # Downsampling by 2 with cv2.INTER_AREA averages 2x2 blocks: the new pixel (0, 0) is the mean of
  # old pixels 0 and 1, i.e. old u = 0.5, which the scaled intrinsics put at u' = 0.
  np.testing.assert_allclose((0.5 + 0.5) * 0.5 - 0.5, 0.0)
  img = np.arange(16, dtype=np.float32).reshape(4, 4)
  small = cv2.resize(img, (2, 2), interpolation=cv2.INTER_AREA)
  vals, _ = sample_bilinear(img[..., None], np.array([[0.5, 0.5], [2.5, 0.5]]))
  np.testing.assert_allclose(np.asarray(vals)[:, 0], [small[0, 0], small[0, 1]], atol=1e-6)
  # Batched scales broadcast with batched K; scaling up then down is the identity.
  Kb = np.stack([K, _K()])
  back = cam.scale_intrinsics(cam.scale_intrinsics(Kb, np.array([2.0, 3.0]), 4.0),
                              np.array([0.5, 1 / 3]), 0.25)
  np.testing.assert_allclose(back, Kb, atol=1e-12)


def test_crop_intrinsics():
  K = _K()
  pts = _rng(15).normal(size=(10, 3)) + [0, 0, 4.0]
  pix, _ = cam.project(pts, K)
  pix2, _ = cam.project(pts, cam.crop_intrinsics(K, 17, 5.5))
  np.testing.assert_allclose(pix2, np.asarray(pix) - [17, 5.5], atol=1e-10)
  assert cam.crop_intrinsics(np.stack([K, K]), np.array([1.0, 2.0]), 0.0).shape == (2, 3, 3)


def test_camera_functions_under_jit_vmap():
  K = jnp.asarray(np.stack([_K()] * 3))
  T = jnp.asarray(_pose(16, (3,)))
  pts = jnp.asarray(_rng(17).normal(size=(3, 8, 3)) + [0, 0, 5.0])
  f = jax.jit(jax.vmap(lambda p, k, t: cam.project(p, k, t)[0]))
  np.testing.assert_allclose(f(pts, K, T), cam.project(pts, K, T)[0], atol=1e-10)


@pytest.mark.parametrize("call,name", [
    (lambda: cam.make_pose(np.eye(3), np.zeros(4)), "t"),
    (lambda: cam.make_pose(np.eye(4), np.zeros(3)), "R"),
    (lambda: cam.invert_pose(np.eye(3)), "T"),
    (lambda: cam.compose_poses(np.eye(4), np.zeros((2, 4))), "b_from_c"),
    (lambda: cam.transform_points(np.eye(4), np.zeros((5, 2))), "points"),
    (lambda: cam.transform_points(np.zeros((2, 4, 4)), np.zeros((3, 5, 3))), "points"),
    (lambda: cam.project(np.zeros((5, 3)), np.eye(4)), "intrinsics"),
    (lambda: cam.project(np.zeros((5, 3)), np.eye(3), np.eye(3)), "cam_from_world"),
    (lambda: cam.unproject(np.zeros((5, 2)), np.zeros(4), np.eye(3)), "depth"),
    (lambda: cam.backproject_depth(np.zeros((2, 3, 4)), np.zeros((3, 3, 3))), "intrinsics"),
    (lambda: cam.camera_centers(np.zeros((4, 3))), "cam_from_world"),
    (lambda: sample_bilinear(np.zeros((4, 4)), np.zeros((3, 2))), "image"),
    (lambda: sample_bilinear(np.zeros((2, 4, 4, 1)), np.zeros((3, 5, 2))), "pixels"),
    (lambda: sample_bilinear(np.zeros((4, 4, 1)), np.zeros((3, 3))), "pixels"),
])
def test_bad_shapes_raise_with_argument_name(call, name):
  with pytest.raises(ValueError, match=name):
    call()


# ---------------------------------------------------------------------------------------------
# Bilinear sampling


def test_sample_bilinear_matches_scipy_map_coordinates():
  img = _rng(18).normal(size=(2, 7, 9, 3))
  pix = _rng(19).uniform([-2, -2], [11, 9], size=(2, 40, 2))
  vals, inside = sample_bilinear(img, pix)
  assert vals.shape == (2, 40, 3) and inside.shape == (2, 40) and inside.dtype == jnp.bool_
  for b in range(2):
    for c in range(3):
      # map_coordinates takes (row, col); mode="nearest" clamps to the border like ours.
      want = ndimage.map_coordinates(img[b, ..., c], [pix[b, :, 1], pix[b, :, 0]], order=1,
                                     mode="nearest")
      np.testing.assert_allclose(vals[b, :, c], want, atol=1e-12)
  want_inside = ((pix[..., 0] >= 0) & (pix[..., 0] <= 8) & (pix[..., 1] >= 0)
                 & (pix[..., 1] <= 6))
  np.testing.assert_array_equal(inside, want_inside)


def test_sample_bilinear_exact_at_pixel_centres_and_edges():
  img = _rng(20).normal(size=(4, 5, 2))
  rows, cols = np.meshgrid(np.arange(4), np.arange(5), indexing="ij")
  pix = np.stack([cols.ravel(), rows.ravel()], -1).astype(np.float64)
  vals, inside = sample_bilinear(img, pix)
  np.testing.assert_allclose(vals, img.reshape(20, 2), atol=1e-15)
  assert bool(jnp.all(inside))
  # One-pixel-wide images.
  col = img[:, :1]
  v, ins = sample_bilinear(col, np.array([[0.0, 1.5], [0.3, 2.0]]))
  np.testing.assert_allclose(v, [0.5 * (col[1, 0] + col[2, 0]), col[2, 0]], atol=1e-15)
  np.testing.assert_array_equal(ins, [True, False])


def test_sample_bilinear_gradients():
  img = jnp.asarray(_rng(21).normal(size=(6, 7, 2)))
  pix = jnp.asarray(_rng(22).uniform([0.2, 0.2], [5.8, 4.8], size=(10, 2)))
  check_grads(jax.jit(lambda i, p: sample_bilinear(i, p)[0]), (img, pix), order=1,
              modes=["fwd", "rev"], eps=1e-6)


def test_sample_bilinear_nan_pixels_are_outside_and_finite():
  img = jnp.asarray(_rng(23).normal(size=(2, 5, 6, 1)))
  pix = jnp.array([[[1.5, 2.5], [np.nan, 1.0], [np.inf, -np.inf]],
                   [[np.nan, np.nan], [0.0, 0.0], [7.0, 1.0]]])
  vals, inside = sample_bilinear(img, pix)
  assert _finite_tree(vals)
  np.testing.assert_array_equal(inside, [[True, False, False], [False, True, False]])
  gi, gp = jax.grad(lambda i, p: jnp.sum(sample_bilinear(i, p)[0]), argnums=(0, 1))(img, pix)
  assert _finite_tree((gi, gp))
  np.testing.assert_array_equal(np.asarray(gp)[0, 1:], 0.0)


def test_sample_bilinear_broadcasts_batch_axes_and_under_vmap():
  img = jnp.asarray(_rng(24).normal(size=(1, 5, 6, 2)))
  pix = jnp.asarray(_rng(25).uniform(0, 4, size=(3, 8, 2)))
  vals, _ = sample_bilinear(img, pix)
  assert vals.shape == (3, 8, 2)
  per_view = jax.vmap(lambda p: sample_bilinear(img[0], p)[0])(pix)
  np.testing.assert_allclose(vals, per_view, atol=1e-14)
  f32, _ = sample_bilinear(img.astype(jnp.float32), pix.astype(jnp.float32))
  assert f32.dtype == jnp.float32


def test_up_from_cameras_recovers_up_in_an_arbitrary_world_frame():
  """#11: cameras held roughly upright (random yaw, pitch within 20 degrees, roll within 3) in a
  z-up world, then the whole rig in a frame rotated by a random Q (a feed-forward model's own
  gauge): the estimate is the float64 mean of the -y axes, and within 5 degrees of Q z."""
  rng = np.random.default_rng(0)
  v = 12
  poses = np.zeros((v, 4, 4))
  base = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])  # OpenCV camera looking along world y
  for i in range(v):
    tilt = Rotation.from_euler("ZXY", [rng.uniform(0, 360), rng.uniform(-20, 20),
                                       rng.uniform(-3, 3)], degrees=True).as_matrix()
    poses[i, :3, :3] = tilt @ base
    poses[i, :3, 3] = rng.normal(size=3)
    poses[i, 3, 3] = 1.0
  q = Rotation.random(random_state=1).as_matrix()
  moved = poses.copy()
  moved[:, :3, :] = q @ poses[:, :3, :]
  with jax.enable_x64(True):
    up = np.asarray(cam.up_from_cameras(jnp.asarray(moved)))
  ref = -moved[:, :3, 1].mean(0)
  np.testing.assert_allclose(up, ref / np.linalg.norm(ref), atol=1e-12)
  assert np.degrees(np.arccos(np.clip(up @ q[:, 2], -1, 1))) < 5.0
  assert cam.up_from_cameras(moved[None, :, :3].astype(np.float32)).shape == (1, 3)
