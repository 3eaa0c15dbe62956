"""Tests of jaxrecon.geometry.alignment: weighted median / MAD and weighted Umeyama."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads
from scipy.spatial.transform import Rotation

from jaxrecon.geometry.alignment import apply_similarity, umeyama, weighted_mad, weighted_median
from jaxrecon.geometry.rotations import rotation_angle

pytestmark = pytest.mark.x64  # float64 references (numpy, scipy) and check_grads

SETTINGS = settings(max_examples=25, deadline=None)


def _rng(seed=0):
  return np.random.default_rng(seed)


@jax.jit
def _umeyama_value_and_grads(src, dst, w):
  # One compile per dtype for all degenerate cases (eager dispatch of the gradient is slow).
  grads = jax.grad(lambda a, b, c: sum(jnp.sum(o) for o in umeyama(a, b, c)),
                   argnums=(0, 1, 2))(src, dst, w)
  return umeyama(src, dst, w), grads


def _finite_tree(tree):
  return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(tree))


def _np_weighted_median(x, w):
  """float64 reference: smallest sorted x whose cumulative weight >= half the total, 1-D."""
  w = np.maximum(w, 0)
  if w.sum() <= 0:
    return 0.0
  order = np.argsort(x, kind="stable")
  cum = np.cumsum(w[order])
  return x[order][np.searchsorted(cum, 0.5 * cum[-1], side="left")]


# ---------------------------------------------------------------------------------------------
# Weighted median / MAD


def test_weighted_median_matches_numpy_batched_and_axis():
  x = _rng(0).normal(size=(4, 3, 11))
  w = _rng(1).uniform(0, 1, size=(4, 3, 11)) * (_rng(2).uniform(size=(4, 3, 11)) > 0.3)
  got = np.asarray(weighted_median(x, w))
  want = np.array([[_np_weighted_median(x[i, j], w[i, j]) for j in range(3)] for i in range(4)])
  np.testing.assert_allclose(got, want, atol=0)
  got_ax = weighted_median(np.moveaxis(x, -1, 1), np.moveaxis(w, -1, 1), axis=1)
  np.testing.assert_allclose(got_ax, want, atol=0)


def test_weighted_median_tie_rule_and_unit_weights():
  # Unit weights, even n: the lower of the two middle values (not their mean).
  np.testing.assert_allclose(weighted_median(np.array([4.0, 1.0, 3.0, 2.0]), np.ones(4)), 2.0)
  np.testing.assert_allclose(weighted_median(np.array([4.0, 1.0, 3.0]), np.ones(3)), 3.0)
  # Cumulative weight exactly half at 2 -> 2 is selected.
  np.testing.assert_allclose(weighted_median(np.array([1.0, 2.0, 10.0]), np.array([1.0, 1, 2])),
                             2.0)
  # A heavy element dominates; weights broadcast against x.
  np.testing.assert_allclose(weighted_median(np.array([1.0, 2.0, 10.0]), np.array([1.0, 1, 5])),
                             10.0)
  np.testing.assert_allclose(weighted_median(np.arange(5.0)[None].repeat(2, 0), 1.0), [2.0, 2.0])


# Subnormals excluded: XLA on CPU flushes them to zero (FTZ/DAZ), so its sort ties 5e-324 with
# 0.0 where numpy orders them, a backend float mode and not the median's logic (CI found
# pairs=[(5e-324, 1), (0.0, 1)]: 5e-324 vs numpy's 0.0).
@SETTINGS
@given(st.lists(st.tuples(st.floats(-100, 100, allow_subnormal=False), st.integers(0, 5)),
                min_size=1, max_size=12))
def test_weighted_median_property_against_numpy(pairs):
  x = np.array([p[0] for p in pairs])
  w = np.array([p[1] for p in pairs], np.float64)  # integer weights: exact cumulative sums
  np.testing.assert_allclose(weighted_median(x, w), _np_weighted_median(x, w), atol=0)


def test_weighted_median_gradient_goes_to_selected_element_only():
  x = jnp.array([0.3, -1.0, 2.0, 0.7, 5.0])
  w = jnp.array([1.0, 2.0, 0.5, 1.0, 0.0])
  med = weighted_median(x, w)
  gx, gw = jax.grad(weighted_median, argnums=(0, 1))(x, w)
  np.testing.assert_allclose(med, 0.3)
  np.testing.assert_array_equal(gx, [1.0, 0, 0, 0, 0])
  np.testing.assert_array_equal(gw, np.zeros(5))  # weights are stop-gradient'ed


def test_weighted_median_degenerate_inputs():
  x = jnp.array([[1.0, np.nan, 3.0], [2.0, 2.0, 2.0]])
  w = jnp.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
  med = weighted_median(x, w)
  np.testing.assert_array_equal(med, [0.0, 2.0])
  g = jax.grad(lambda x: jnp.sum(weighted_median(x, w)))(x)
  assert _finite_tree(g)
  # NaN entries with weight 0 are ignored.
  np.testing.assert_allclose(weighted_median(jnp.array([np.nan, 1.0, 2.0, 7.0]),
                                             jnp.array([0.0, 1.0, 1.0, 1.0])), 2.0)
  # Works in float32 and under jit/vmap.
  x32 = jnp.asarray(_rng(3).normal(size=(5, 9)), jnp.float32)
  f = jax.jit(jax.vmap(lambda a: weighted_median(a, jnp.ones_like(a))))
  np.testing.assert_array_equal(f(x32), weighted_median(x32, jnp.ones_like(x32)))
  assert f(x32).dtype == jnp.float32


def test_weighted_mad_matches_numpy_and_is_safe():
  x = _rng(4).normal(size=(3, 20))
  w = _rng(5).uniform(size=(3, 20))
  c = weighted_median(x, w)
  want = np.sum(w * np.abs(x - np.asarray(c)[:, None]), -1) / w.sum(-1)
  np.testing.assert_allclose(weighted_mad(x, w, c), want, atol=1e-14)
  np.testing.assert_allclose(weighted_mad(x.T, w.T, c, axis=0), want, atol=1e-14)
  check_grads(jax.jit(weighted_mad), (jnp.asarray(x), jnp.asarray(w), jnp.asarray(c) + 0.01),
              order=1, modes=["fwd", "rev"], eps=1e-6)
  zero = jnp.zeros((3, 20))
  np.testing.assert_array_equal(weighted_mad(x, zero, c), 0.0)
  g = jax.grad(lambda x, w: jnp.sum(weighted_mad(x, w, weighted_median(x, w))),
               argnums=(0, 1))(jnp.ones((3, 20)), zero)
  assert _finite_tree(g)


# ---------------------------------------------------------------------------------------------
# Umeyama


def _similarity(seed, shape=()):
  rng = _rng(seed)
  n = int(np.prod(shape))
  R = Rotation.random(max(n, 1), random_state=seed).as_matrix().reshape(shape + (3, 3))
  s = rng.uniform(0.2, 5.0, size=shape)
  t = rng.normal(size=shape + (3,)) * 3
  return s, R, t


def _apply(s, R, t, x):
  return s[..., None, None] * np.einsum("...ij,...nj->...ni", R, x) + t[..., None, :]


def test_umeyama_recovers_known_similarity_batched():
  s, R, t = _similarity(6, (2, 3))
  src = _rng(7).normal(size=(2, 3, 15, 3))
  dst = _apply(s, R, t, src)
  s_hat, R_hat, t_hat = umeyama(src, dst)
  np.testing.assert_allclose(s_hat, s, rtol=1e-12)
  np.testing.assert_allclose(R_hat, R, atol=1e-12)
  np.testing.assert_allclose(t_hat, t, atol=1e-11)
  np.testing.assert_allclose(apply_similarity(s_hat, R_hat, t_hat, src), dst, atol=1e-11)
  # float32 is accurate to single precision.
  s32, R32, _ = umeyama(jnp.asarray(src, jnp.float32), jnp.asarray(dst, jnp.float32))
  assert R32.dtype == jnp.float32
  np.testing.assert_allclose(s32, s, rtol=1e-5)
  np.testing.assert_allclose(R32, R, atol=1e-5)


def test_umeyama_rigid_matches_scipy_align_vectors_with_noise():
  _, R, t = _similarity(8)
  src = _rng(9).normal(size=(40, 3))
  w = _rng(10).uniform(0.1, 2.0, size=40)
  dst = src @ R.T + t + 0.05 * _rng(11).normal(size=(40, 3))
  scale, R_hat, t_hat = umeyama(src, dst, w, with_scale=False)
  np.testing.assert_array_equal(scale, 1.0)
  mu_s = np.sum(w[:, None] * src, 0) / w.sum()
  mu_d = np.sum(w[:, None] * dst, 0) / w.sum()
  R_ref = Rotation.align_vectors(dst - mu_d, src - mu_s, weights=w)[0].as_matrix()
  np.testing.assert_allclose(R_hat, R_ref, atol=1e-10)
  np.testing.assert_allclose(t_hat, mu_d - R_ref @ mu_s, atol=1e-10)


def test_umeyama_ignores_zero_weight_outliers_including_nan():
  s, R, t = _similarity(12)
  src = _rng(13).normal(size=(30, 3))
  dst = _apply(s, R, t, src)
  w = np.ones(30)
  dst[::4] += _rng(14).normal(size=dst[::4].shape) * 50  # gross outliers
  w[::4] = 0
  src[1::8] = np.nan  # padding, also weight 0
  dst[1::8] = np.nan
  w[1::8] = 0
  s_hat, R_hat, t_hat = umeyama(src, dst, w)
  np.testing.assert_allclose(s_hat, s, rtol=1e-12)
  np.testing.assert_allclose(R_hat, R, atol=1e-12)
  np.testing.assert_allclose(t_hat, t, atol=1e-11)
  # Unweighted, the outliers do spoil the fit (the weights are what removes them).
  s_bad, _, _ = umeyama(np.nan_to_num(src), np.nan_to_num(dst))
  assert abs(float(s_bad) - s) > 1e-3


def test_umeyama_reflection_is_corrected_to_a_proper_rotation():
  src = _rng(15).normal(size=(20, 3))
  mirror = np.diag([1.0, 1.0, -1.0])
  dst = src @ mirror.T
  _, R_hat, _ = umeyama(src, dst)
  np.testing.assert_allclose(np.linalg.det(R_hat), 1.0, atol=1e-12)
  np.testing.assert_allclose(R_hat @ np.asarray(R_hat).T, np.eye(3), atol=1e-12)


_umeyama_jit = jax.jit(umeyama)


@SETTINGS
@given(st.integers(0, 10_000), st.sampled_from([3, 8]))
def test_umeyama_property_recovers_similarity(seed, n):
  s, R, t = _similarity(seed)
  src = _rng(seed + 1).normal(size=(n, 3))
  dst = _apply(s, R, t, src)
  s_hat, R_hat, t_hat = _umeyama_jit(src, dst)
  np.testing.assert_allclose(s_hat, s, rtol=1e-8)
  assert float(rotation_angle(R_hat, R)) < 1e-8
  np.testing.assert_allclose(t_hat, t, atol=1e-7)


def test_umeyama_check_grads():
  s, R, t = _similarity(16)
  src = jnp.asarray(_rng(17).normal(size=(10, 3)))
  dst = jnp.asarray(_apply(s, R, t, np.asarray(src)) + 0.1 * _rng(18).normal(size=(10, 3)))
  w = jnp.asarray(_rng(19).uniform(0.5, 1.5, size=10))
  check_grads(jax.jit(lambda a, b, c: umeyama(a, b, c)), (src, dst, w), order=1, modes=["rev"],
              eps=1e-6)


@pytest.mark.parametrize("case", ["equal_points", "zero_weights", "single_point", "collinear",
                                  "all_zero"])
@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_umeyama_degenerate_inputs_are_finite(case, dtype):
  rng = _rng(20)
  src = rng.normal(size=(6, 3))
  dst = rng.normal(size=(6, 3))
  w = np.ones(6)
  if case == "equal_points":
    src[:] = [1.0, 2.0, 3.0]
    dst[:] = [-1.0, 0.5, 2.0]
  elif case == "zero_weights":
    w[:] = 0
  elif case == "single_point":
    w[1:] = 0
  elif case == "collinear":
    src = np.outer(np.arange(6.0), [1.0, 2.0, -1.0])
    dst = 2 * src + 1
  else:
    src[:] = 0
    dst[:] = 0
  args = tuple(jnp.asarray(a, dtype) for a in (src, dst, w))
  out, grads = _umeyama_value_and_grads(*args)
  assert _finite_tree(out), case
  np.testing.assert_allclose(np.linalg.det(np.asarray(out[1], np.float64)), 1.0, atol=1e-5)
  if case in ("equal_points", "zero_weights", "single_point", "all_zero"):
    np.testing.assert_allclose(out[1], np.eye(3), atol=1e-6)
    np.testing.assert_allclose(out[0], 1.0)
  if case == "collinear":
    np.testing.assert_allclose(out[0], 2.0, rtol=1e-5)
    np.testing.assert_allclose(apply_similarity(*out, args[0]), args[1], atol=1e-4)
  assert _finite_tree(grads), case


def test_bad_shapes_raise_with_argument_name():
  with pytest.raises(ValueError, match="dst"):
    umeyama(np.zeros((5, 3)), np.zeros((4, 3)))
  with pytest.raises(ValueError, match="src"):
    umeyama(np.zeros((5, 2)), np.zeros((5, 2)))
  with pytest.raises(ValueError, match="weights"):
    umeyama(np.zeros((5, 3)), np.zeros((5, 3)), np.ones(4))
  with pytest.raises(ValueError, match="points"):
    apply_similarity(1.0, np.eye(3), np.zeros(3), np.zeros((4, 2)))
  with pytest.raises(ValueError, match="weights"):
    weighted_median(np.zeros(5), np.ones(4))
  with pytest.raises(ValueError, match="x"):
    weighted_median(np.float64(1.0), np.ones(()))
