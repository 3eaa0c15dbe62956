"""Tests of jaxrecon.geometry.rotations against scipy / OpenCV float64 references."""
import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads
from scipy.spatial.transform import Rotation

from jaxrecon.geometry import rotations as rot

pytestmark = pytest.mark.x64  # float64 references (scipy, OpenCV) at 1e-10 and check_grads

SETTINGS = settings(max_examples=25, deadline=None)


def _rng(seed=0):
  return np.random.default_rng(seed)


def _rotvec(axis, angle):
  axis = np.asarray(axis, np.float64)
  return axis / np.linalg.norm(axis) * angle


# Jitted once at module level: eager dispatch of derivatives is much slower than one compile.
_jac_quat = jax.jit(jax.jacrev(rot.matrix_to_quaternion))
_jac_log = jax.jit(jax.jacrev(rot.matrix_to_axis_angle))
_grad_angle2 = jax.jit(jax.grad(rot.rotation_angle, argnums=(0, 1)))
_grad_angle1 = jax.jit(jax.grad(rot.rotation_angle))
_grad_9d = jax.jit(jax.grad(lambda x, g: jnp.sum(rot.rotation_from_9d(x) * g)))


def _finite_tree(tree):
  return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(tree))


# ---------------------------------------------------------------------------------------------
# Quaternions


def test_quaternion_to_matrix_matches_scipy_batched():
  q = _rng().normal(size=(3, 5, 4))
  got = rot.quaternion_to_matrix(q)
  want = Rotation.from_quat(q.reshape(-1, 4)).as_matrix().reshape(3, 5, 3, 3)
  assert got.shape == (3, 5, 3, 3)
  np.testing.assert_allclose(got, want, atol=1e-12)


def test_quaternion_to_matrix_normalises_and_zero_is_identity():
  q = np.array([0.1, -0.2, 0.3, 0.9])
  np.testing.assert_allclose(rot.quaternion_to_matrix(7.5 * q), rot.quaternion_to_matrix(q),
                             atol=1e-12)
  np.testing.assert_allclose(rot.quaternion_to_matrix(jnp.zeros(4)), np.eye(3), atol=0)
  g = jax.grad(lambda q: jnp.sum(rot.quaternion_to_matrix(q) ** 2))(jnp.zeros(4))
  assert _finite_tree(g)


def _scipy_quat(R):
  q = Rotation.from_matrix(R).as_quat()
  return q * np.where(q[..., 3:] < 0, -1.0, 1.0)


def test_matrix_to_quaternion_matches_scipy_with_nonnegative_w():
  R = Rotation.random(200, random_state=1).as_matrix()
  got = np.asarray(rot.matrix_to_quaternion(R))
  assert np.all(got[:, 3] >= 0)
  np.testing.assert_allclose(got, _scipy_quat(R), atol=1e-12)


@pytest.mark.parametrize("axis", [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 2, -3]])
@pytest.mark.parametrize("delta", [0.0, 1e-7, 1e-3])
def test_matrix_to_quaternion_near_180_degrees(axis, delta):
  R = Rotation.from_rotvec(_rotvec(axis, np.pi - delta)).as_matrix()
  q = np.asarray(rot.matrix_to_quaternion(R))
  np.testing.assert_allclose(np.linalg.norm(q), 1.0, atol=1e-12)
  # Either sign is the same rotation; compare the matrices and the |q| entries.
  np.testing.assert_allclose(rot.quaternion_to_matrix(q), R, atol=1e-12)
  np.testing.assert_allclose(np.abs(q), np.abs(_scipy_quat(R)), atol=1e-12)
  g = _jac_quat(jnp.asarray(R))
  assert _finite_tree(g)


def test_matrix_to_quaternion_float32_accuracy():
  R = Rotation.random(100, random_state=2).as_matrix()
  got = rot.matrix_to_quaternion(jnp.asarray(R, jnp.float32))
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, _scipy_quat(R), atol=2e-6)


@SETTINGS
@given(st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(
    lambda v: np.linalg.norm(v) > 1e-3))
def test_quaternion_round_trip_property(q):
  q = np.asarray(q) / np.linalg.norm(q)
  q = q * (1.0 if q[3] >= 0 else -1.0)
  back = np.asarray(rot.matrix_to_quaternion(rot.quaternion_to_matrix(q)))
  # At w = 0 (180 degrees) both signs are valid.
  sign = 1.0 if np.dot(back, q) >= 0 else -1.0
  np.testing.assert_allclose(sign * back, q, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# Axis-angle


def test_axis_angle_to_matrix_matches_cv2_and_scipy():
  aa = _rng(3).normal(size=(50, 3)) * 1.5
  got = np.asarray(rot.axis_angle_to_matrix(aa))
  np.testing.assert_allclose(got, Rotation.from_rotvec(aa).as_matrix(), atol=1e-12)
  for a, g in zip(aa[:10], got[:10]):
    np.testing.assert_allclose(g, cv2.Rodrigues(a)[0], atol=1e-12)


@pytest.mark.parametrize("angle", [0.0, 1e-12, 1e-6, 0.0999, 0.1, 0.1001, 1.0, 3.0, np.pi])
def test_axis_angle_small_and_large_angles(angle):
  aa = _rotvec([0.3, -0.5, 0.8], angle)
  np.testing.assert_allclose(rot.axis_angle_to_matrix(aa), Rotation.from_rotvec(aa).as_matrix(),
                             atol=1e-14)


def test_axis_angle_gradient_at_zero_is_the_so3_generator():
  jac = jax.jacfwd(rot.axis_angle_to_matrix)(jnp.zeros(3))  # (3, 3, 3): dR_ij / d aa_k
  # dR / d aa_k = [e_k]_x, whose column j is e_k x e_j.
  for k in range(3):
    e = np.eye(3)[k]
    np.testing.assert_allclose(jac[..., k], np.stack([np.cross(e, c) for c in np.eye(3)], -1),
                               atol=1e-15)


@pytest.mark.parametrize("scale", [1e-3, 0.3161, 0.3163, 1.7])  # |aa|^2 straddles the 1e-2 switch
def test_axis_angle_check_grads(scale):
  aa = jnp.asarray(_rotvec([0.6, 0.2, -0.4], scale))
  check_grads(jax.jit(rot.axis_angle_to_matrix), (aa,), order=2, modes=["fwd", "rev"], eps=1e-6)


def test_matrix_to_axis_angle_matches_scipy_and_cv2():
  R = Rotation.random(200, random_state=4).as_matrix()
  got = np.asarray(rot.matrix_to_axis_angle(R))
  np.testing.assert_allclose(got, Rotation.from_matrix(R).as_rotvec(), atol=1e-12)
  for r, g in zip(R[:10], got[:10]):
    np.testing.assert_allclose(g, cv2.Rodrigues(r)[0][:, 0], atol=1e-10)


@pytest.mark.parametrize("angle", [0.0, 1e-10, 1e-5, 0.019, 0.021, np.pi - 1e-6, np.pi])
def test_matrix_to_axis_angle_near_0_and_pi(angle):
  aa = _rotvec([-0.2, 0.9, 0.4], angle)
  R = Rotation.from_rotvec(aa).as_matrix()
  got = np.asarray(rot.matrix_to_axis_angle(R))
  if angle == np.pi:
    got = got * np.sign(np.dot(got, aa))
  np.testing.assert_allclose(got, aa, atol=1e-12)
  jac = _jac_log(jnp.asarray(R))
  assert _finite_tree(jac)


def test_matrix_to_axis_angle_float32_near_0_and_pi():
  for angle in [1e-4, 1e-2, np.pi - 1e-3]:
    aa = _rotvec([1, 2, 3], angle)
    R32 = jnp.asarray(Rotation.from_rotvec(aa).as_matrix(), jnp.float32)
    got = rot.matrix_to_axis_angle(R32)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, aa, atol=2e-6 * max(1.0, angle))


def test_matrix_to_axis_angle_check_grads():
  R = jnp.asarray(Rotation.random(4, random_state=5).as_matrix())
  check_grads(jax.jit(rot.matrix_to_axis_angle), (R,), order=1, modes=["fwd", "rev"], eps=1e-6)
  # Near the identity the Taylor branch is used; the derivative is the vee of the skew part.
  jac = _jac_log(jnp.eye(3))
  np.testing.assert_allclose(jac[0, 2, 1], 0.5, atol=1e-12)
  np.testing.assert_allclose(jac[0, 1, 2], -0.5, atol=1e-12)


@SETTINGS
@given(st.lists(st.floats(-1, 1), min_size=3, max_size=3).filter(
    lambda v: np.linalg.norm(v) > 1e-6), st.floats(0.0, np.pi - 1e-3))
def test_axis_angle_round_trip_property(axis, angle):
  aa = _rotvec(axis, angle)
  back = rot.matrix_to_axis_angle(rot.axis_angle_to_matrix(aa))
  np.testing.assert_allclose(back, aa, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# Geodesic angle


def test_rotation_angle_matches_scipy():
  r1 = Rotation.random(100, random_state=6)
  r2 = Rotation.random(100, random_state=7)
  got = rot.rotation_angle(r1.as_matrix(), r2.as_matrix())
  want = (r1.inv() * r2).magnitude()
  np.testing.assert_allclose(got, want, atol=1e-12)
  np.testing.assert_allclose(rot.rotation_angle(r1.as_matrix()), r1.magnitude(), atol=1e-12)
  # Broadcasting of leading axes: one against many.
  got_b = rot.rotation_angle(r1.as_matrix()[:1], r2.as_matrix())
  np.testing.assert_allclose(got_b, (r1[0].inv() * r2).magnitude(), atol=1e-12)


@pytest.mark.parametrize("angle", [0.0, 1e-9, 1e-4, np.pi - 1e-4, np.pi])
def test_rotation_angle_precision_and_finite_grad_at_ends(angle):
  R = Rotation.from_rotvec(_rotvec([1, -1, 2], angle)).as_matrix()
  np.testing.assert_allclose(rot.rotation_angle(R), angle, atol=1e-12)
  R32 = jnp.asarray(R, jnp.float32)
  np.testing.assert_allclose(rot.rotation_angle(R32), angle, atol=1e-6, rtol=1e-5)
  g = _grad_angle2(jnp.asarray(R), jnp.eye(3))
  assert _finite_tree(g)
  g32 = _grad_angle1(R32)
  assert _finite_tree(g32)


def test_rotation_angle_check_grads():
  R1 = jnp.asarray(Rotation.random(5, random_state=8).as_matrix())
  R2 = jnp.asarray(Rotation.random(5, random_state=9).as_matrix())
  check_grads(jax.jit(rot.rotation_angle), (R1, R2), order=1, modes=["fwd", "rev"], eps=1e-6)


# ---------------------------------------------------------------------------------------------
# 9D / SVD orthogonalisation


def _svd_rotation_autodiff(m):
  u, _, vt = jnp.linalg.svd(m)
  d = jnp.sign(jnp.linalg.det(u @ vt))
  return u @ jnp.diag(jnp.array([1.0, 1.0, d])) @ vt


def test_rotation_from_9d_is_closest_proper_rotation():
  m = _rng(10).normal(size=(20, 3, 3))
  R = np.asarray(rot.rotation_from_9d(m))
  np.testing.assert_allclose(R @ np.swapaxes(R, -1, -2), np.broadcast_to(np.eye(3), R.shape),
                             atol=1e-12)
  np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)
  # Closest in Frobenius norm: no random rotation does better.
  cands = Rotation.random(500, random_state=11).as_matrix()
  for mi, ri in zip(m, R):
    best = np.min(np.sum((cands - mi) ** 2, axis=(-2, -1)))
    assert np.sum((ri - mi) ** 2) <= best + 1e-12
  # A rotation maps to itself; a scaled rotation to the rotation.
  Q = Rotation.random(3, random_state=12).as_matrix()
  np.testing.assert_allclose(rot.rotation_from_9d(2.5 * Q), Q, atol=1e-12)


def test_rotation_from_9d_accepts_flat_and_matrix_layouts():
  m = _rng(13).normal(size=(2, 4, 3, 3))
  np.testing.assert_allclose(rot.rotation_from_9d(m.reshape(2, 4, 9)), rot.rotation_from_9d(m),
                             atol=0)
  with pytest.raises(ValueError, match="x"):
    rot.rotation_from_9d(np.zeros((4, 8)))


def test_rotation_from_9d_gradients_match_svd_autodiff_and_finite_differences():
  m = jnp.asarray(_rng(14).normal(size=(6, 3, 3)))
  m = m.at[0].set(-m[0])  # make sure reflections (det < 0) are in the batch
  g = jnp.asarray(_rng(15).normal(size=(6, 3, 3)))

  def loss(fn, x):
    return jnp.sum(fn(x) * g)

  ours = jax.grad(lambda x: loss(rot.rotation_from_9d, x))(m)
  ref = jax.grad(lambda x: loss(jax.vmap(_svd_rotation_autodiff), x))(m)
  np.testing.assert_allclose(ours, ref, atol=1e-9)
  check_grads(jax.jit(rot.rotation_from_9d), (m,), order=1, modes=["rev"], eps=1e-6)


@pytest.mark.parametrize("name,m", [
    ("identity", np.eye(3)),
    ("zeros", np.zeros((3, 3))),
    ("rank1", np.outer([1.0, 2, 3], [0.5, -1, 2])),
    ("rank2", np.diag([3.0, 1.0, 0.0])),
    ("reflection", np.diag([1.0, 1.0, -1.0])),
    ("repeated", np.diag([2.0, 2.0, 1.0])),
])
def test_rotation_from_9d_degenerate_inputs_are_finite(name, m):
  g = jnp.asarray(_rng(16).normal(size=(3, 3)))
  for dtype in (jnp.float64, jnp.float32):
    x = jnp.asarray(m, dtype)
    R = rot.rotation_from_9d(x)
    assert _finite_tree(R), name
    np.testing.assert_allclose(np.linalg.det(np.asarray(R, np.float64)), 1.0, atol=1e-5)
    grad = _grad_9d(x, g.astype(dtype))
    assert _finite_tree(grad), name


def test_rotation_from_9d_under_jit_and_vmap():
  m = jnp.asarray(_rng(17).normal(size=(5, 9)))
  f = jax.jit(jax.vmap(lambda x: rot.rotation_from_9d(x)))
  np.testing.assert_allclose(f(m), rot.rotation_from_9d(m), atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Random rotations, shapes, transformations


def test_random_rotation_is_uniform_and_proper():
  R = rot.random_rotation(jax.random.key(0), (4000,))
  assert R.shape == (4000, 3, 3)
  np.testing.assert_allclose(jnp.linalg.det(R), 1.0, atol=1e-12)
  # Haar measure: E[R] = 0 and the angle has density (1 - cos a) / pi, mean pi/2 + 2/pi.
  assert np.max(np.abs(np.mean(np.asarray(R), 0))) < 0.05
  mean_angle = float(jnp.mean(rot.rotation_angle(R)))
  assert abs(mean_angle - (np.pi / 2 + 2 / np.pi)) < 0.03
  assert rot.random_rotation(jax.random.key(1)).shape == (3, 3)
  assert rot.random_rotation(jax.random.key(1), (2,), dtype=jnp.float32).dtype == jnp.float32


def test_functions_compose_under_jit_vmap_grad():
  aa = jnp.asarray(_rng(18).normal(size=(4, 3)))

  @jax.jit
  def f(aa):
    R = jax.vmap(rot.axis_angle_to_matrix)(aa)
    q = rot.matrix_to_quaternion(R)
    return jnp.sum(rot.rotation_angle(rot.quaternion_to_matrix(q)))

  want = np.sum(Rotation.from_rotvec(np.array(aa)).magnitude())
  np.testing.assert_allclose(f(aa), want, atol=1e-12)
  assert _finite_tree(jax.grad(f)(aa))


@pytest.mark.parametrize("fn,arg,name", [
    (rot.quaternion_to_matrix, np.zeros((2, 3)), "q"),
    (rot.matrix_to_quaternion, np.zeros((3, 4)), "R"),
    (rot.axis_angle_to_matrix, np.zeros((4,)), "aa"),
    (rot.matrix_to_axis_angle, np.zeros((3,)), "R"),
    (rot.rotation_angle, np.zeros((2, 3)), "R1"),
])
def test_bad_shapes_raise_with_argument_name(fn, arg, name):
  with pytest.raises(ValueError, match=name):
    fn(arg)
  with pytest.raises(ValueError, match="R2"):
    rot.rotation_angle(np.eye(3), np.zeros((3, 2)))
