"""Tests of jaxrecon.losses.depth against float64 numpy references, invariances and degenerate
inputs."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

from jaxrecon.losses.depth import median_mad_normalize, relative_depth_loss, ssi_depth_loss

# float64 numpy references and check_grads; the float32 test compares with a float64 run.
pytestmark = pytest.mark.x64

SETTINGS = settings(max_examples=25, deadline=None)
B, V, H, W = 2, 3, 6, 7


def _rng(seed=0):
  return np.random.default_rng(seed)


def _finite_tree(tree):
  return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(tree))


def _inputs(seed=0, shape=(B, V, H, W)):
  rng = _rng(seed)
  pred = rng.uniform(1.0, 5.0, size=shape)
  mono = rng.uniform(0.1, 3.0, size=shape)
  conf = rng.uniform(0.2, 1.8, size=shape)
  mask = rng.uniform(size=shape) > 0.2
  return pred, mono, conf, mask


# float64 numpy references ---------------------------------------------------------------------


def _np_wmedian(x, w):
  if w.sum() <= 0:
    return 0.0
  order = np.argsort(x, kind="stable")
  cum = np.cumsum(w[order])
  return x[order][np.searchsorted(cum, 0.5 * cum[-1], side="left")]


def _np_normalize(d, w):
  d, w = d.ravel(), w.ravel()
  med = _np_wmedian(d, w)
  mad = np.sum(w * np.abs(d - med)) / w.sum() if w.sum() > 0 else 0.0
  return np.where(w > 0, (d - med) / mad, 0.0) if mad > 0 else np.zeros_like(d)


def _np_relative(pred, mono, conf, mask, alpha, ambiguity):
  conf = conf if ambiguity else np.ones_like(conf)
  num, den = 0.0, 0.0
  for idx in np.ndindex(pred.shape[:-2]):
    m = mask[idx].ravel().astype(np.float64)
    c = conf[idx].ravel()
    w = m * c
    r = np.abs(_np_normalize(pred[idx], w) - _np_normalize(mono[idx], w))
    l = c * r - (alpha * np.log(c) if ambiguity else 0.0)
    num += np.sum(m * l)
    den += m.sum()
  return num / den


def _np_ssi(pred, mono, mask):
  num, den = 0.0, 0.0
  for idx in np.ndindex(pred.shape[:-2]):
    m = mask[idx].ravel() > 0
    y = _np_normalize(mono[idx], m.astype(np.float64))[m]
    p = pred[idx].ravel()[m]
    a = np.stack([p, np.ones_like(p)], -1)
    st_ = np.linalg.lstsq(a, y, rcond=None)[0]
    num += np.sum(np.abs(a @ st_ - y))
    den += m.sum()
  return num / den


# median_mad_normalize ---------------------------------------------------------------------------


def test_median_mad_normalize_matches_numpy():
  pred, _, conf, mask = _inputs(1)
  w = conf * mask
  got = np.asarray(median_mad_normalize(pred, w))
  for idx in np.ndindex(B, V):
    np.testing.assert_allclose(got[idx].ravel(), _np_normalize(pred[idx], w[idx]), atol=1e-12)


def test_median_mad_normalize_constant_and_empty_maps_are_finite():
  d = jnp.full((2, 4, 5), 3.0).at[1].set(jnp.arange(20.0).reshape(4, 5))
  w = jnp.ones((2, 4, 5)).at[1].set(0.0)
  out = median_mad_normalize(d, w)
  np.testing.assert_array_equal(out, 0.0)
  g = jax.grad(lambda d: jnp.sum(median_mad_normalize(d, w) ** 2))(d)
  assert _finite_tree(g)
  # float32 rounding noise of a constant map is not amplified.
  d32 = jnp.full((4, 5), 7.1, jnp.float32) * jnp.float32(1.0 + 1e-7) ** jnp.arange(20).reshape(4, 5)
  assert float(jnp.max(jnp.abs(median_mad_normalize(d32, jnp.ones((4, 5)))))) == 0.0


# relative_depth_loss ---------------------------------------------------------------------------


@pytest.mark.parametrize("ambiguity", [True, False])
def test_relative_depth_loss_matches_numpy_reference(ambiguity):
  pred, mono, conf, mask = _inputs(2)
  loss, diag = relative_depth_loss(pred, mono, conf, mask, alpha=0.7, ambiguity=ambiguity)
  np.testing.assert_allclose(loss, _np_relative(pred, mono, conf, mask, 0.7, ambiguity),
                             rtol=1e-12)
  assert diag["num_valid"] == mask.sum()
  np.testing.assert_allclose(diag["mean_confidence"],
                             conf[mask].mean() if ambiguity else 1.0, rtol=1e-12)
  if not ambiguity:
    np.testing.assert_allclose(loss, diag["data_term"], rtol=1e-12)
    assert float(diag["low_confidence_fraction"]) == 0.0
  else:
    np.testing.assert_allclose(diag["low_confidence_fraction"], np.mean(conf[mask] < 1))


def test_relative_depth_loss_zero_data_term_at_exact_solution():
  _, mono, _, mask = _inputs(3)
  pred = 2.5 * mono + 4.0
  ones = np.ones_like(mono)
  loss, diag = relative_depth_loss(pred, mono, ones, mask)
  np.testing.assert_allclose(loss, 0.0, atol=1e-12)  # W = 1: log W = 0
  np.testing.assert_allclose(diag["data_term"], 0.0, atol=1e-12)
  _, diag_c = relative_depth_loss(pred, mono, _inputs(4)[2], mask)
  np.testing.assert_allclose(diag_c["data_term"], 0.0, atol=1e-12)


@SETTINGS
@given(st.integers(0, 1000), st.floats(0.05, 20.0), st.floats(-5.0, 5.0), st.floats(0.05, 20.0),
       st.floats(-5.0, 5.0), st.booleans())
def test_relative_depth_loss_invariant_to_scale_and_shift(seed, a, b, c, d, ambiguity):
  pred, mono, conf, mask = _inputs(seed, (2, 5, 6))
  base, _ = _relative_jit(pred, mono, conf, mask, ambiguity)
  moved, _ = _relative_jit(a * pred + b, c * mono + d, conf, mask, ambiguity)
  np.testing.assert_allclose(moved, base, rtol=1e-8, atol=1e-10)


_relative_jit = jax.jit(lambda p, m, c, k, amb: relative_depth_loss(p, m, c, k, ambiguity=amb),
                        static_argnums=4)


def test_relative_depth_loss_confidence_gradient_and_optimum():
  pred, mono, conf, mask = _inputs(5)
  alpha = 0.5
  g = jax.grad(lambda c: relative_depth_loss(pred, mono, c, mask, alpha=alpha)[0])(conf)
  # The residuals do not depend on W (stop-gradient in the weights): dl/dW = (r - alpha / W) / N.
  r = np.abs(np.asarray(median_mad_normalize(pred, conf * mask))
             - np.asarray(median_mad_normalize(mono, conf * mask)))
  want = np.where(mask, (r - alpha / conf) / mask.sum(), 0.0)
  np.testing.assert_allclose(g, want, atol=1e-12)
  # Pixels where the expert is wrong (large residual) prefer a low confidence.
  outlier_mono = mono.copy()
  outlier_mono[..., 0, :] = 10.0
  l_hi, _ = relative_depth_loss(pred, outlier_mono, np.ones_like(conf), mask, alpha=alpha)
  low = np.ones_like(conf)
  low[..., 0, :] = 0.05
  l_lo, _ = relative_depth_loss(pred, outlier_mono, low, mask, alpha=alpha)
  assert float(l_lo) < float(l_hi)


def test_relative_depth_loss_check_grads_and_descent():
  pred, mono, conf, mask = (jnp.asarray(a) for a in _inputs(6, (2, 5, 6)))
  f = jax.jit(lambda p, c: relative_depth_loss(p, mono, c, mask)[0])
  # Only w.r.t. the prediction: the confidence also enters the median weights through a
  # stop-gradient, which finite differences would see.
  check_grads(lambda p: f(p, conf), (pred,), order=1, modes=["rev"], eps=1e-7)
  g = jax.grad(f)(pred, conf)
  loss0 = f(pred, conf)
  assert float(f(pred - 1e-3 * g, conf)) < float(loss0)


@pytest.mark.parametrize("case", ["empty_mask", "constant_pred", "constant_both", "nan_masked",
                                  "one_pixel"])
def test_relative_and_ssi_degenerate_inputs_are_finite(case):
  pred, mono, conf, mask = _inputs(7)
  if case == "empty_mask":
    mask = np.zeros_like(mask)
  elif case == "constant_pred":
    pred = np.full_like(pred, 2.0)
  elif case == "constant_both":
    pred = np.full_like(pred, 2.0)
    mono = np.full_like(mono, 0.3)
  elif case == "nan_masked":
    pred = np.where(mask, pred, np.nan)
    mono = np.where(mask, mono, np.inf)
    conf = np.where(mask, conf, np.nan)
  else:
    mask = np.zeros_like(mask)
    mask[..., 2, 3] = True
  out, grads = _all_losses_and_grads(pred, mono, conf, mask)
  assert _finite_tree(out), case
  assert _finite_tree(grads), case
  if case == "empty_mask":
    for loss, diag in out:
      assert float(loss) == 0.0 and float(diag["num_valid"]) == 0.0


@jax.jit
def _all_losses_and_grads(pred, mono, conf, mask):
  def total(p, m, c):
    return (relative_depth_loss(p, m, c, mask)[0]
            + relative_depth_loss(p, m, c, mask, ambiguity=False)[0]
            + ssi_depth_loss(p, m, mask)[0])
  out = (relative_depth_loss(pred, mono, conf, mask), ssi_depth_loss(pred, mono, mask))
  return out, jax.grad(total, argnums=(0, 1, 2))(pred, mono, conf)


def test_relative_depth_loss_float32_jit_vmap():
  pred, mono, conf, mask = _inputs(8)
  args32 = tuple(jnp.asarray(a, jnp.float32) for a in (pred, mono, conf)) + (mask,)
  loss32, _ = jax.jit(relative_depth_loss)(*args32)
  assert loss32.dtype == jnp.float32
  loss64, _ = relative_depth_loss(pred, mono, conf, mask)
  np.testing.assert_allclose(loss32, loss64, rtol=1e-4)
  # bfloat16 predictions are upcast.
  loss_bf, _ = relative_depth_loss(jnp.asarray(pred, jnp.bfloat16), mono.astype(np.float32),
                                   conf.astype(np.float32), mask)
  assert loss_bf.dtype == jnp.float32
  # Per-batch losses under vmap pool to the global one (equal pixel counts per sample).
  full = np.ones_like(mask)
  per_b = jax.vmap(lambda p, m, c: relative_depth_loss(p, m, c, full[0])[0])(pred, mono, conf)
  np.testing.assert_allclose(np.mean(per_b), relative_depth_loss(pred, mono, conf, full)[0],
                             rtol=1e-12)


# ssi_depth_loss ---------------------------------------------------------------------------------


def test_ssi_depth_loss_matches_numpy_reference():
  pred, mono, _, mask = _inputs(9)
  loss, diag = ssi_depth_loss(pred, mono, mask)
  np.testing.assert_allclose(loss, _np_ssi(pred, mono, mask), rtol=1e-10)
  assert diag["num_valid"] == mask.sum()


def test_ssi_depth_loss_zero_at_exact_solution():
  _, mono, _, mask = _inputs(10)
  loss, diag = ssi_depth_loss(0.3 * mono + 7.0, mono, mask)
  np.testing.assert_allclose(loss, 0.0, atol=1e-10)
  assert float(diag["mean_scale"]) > 0


@SETTINGS
@given(st.integers(0, 1000), st.floats(0.05, 20.0), st.floats(-5.0, 5.0), st.floats(0.05, 20.0),
       st.floats(-5.0, 5.0), st.booleans())
def test_ssi_depth_loss_invariant_to_scale_and_shift(seed, a, b, c, d, flip):
  pred, mono, _, mask = _inputs(seed, (2, 5, 6))
  a = -a if flip else a  # the least-squares fit absorbs any non-zero scale of the prediction
  base, _ = _ssi_jit(pred, mono, mask)
  moved, _ = _ssi_jit(a * pred + b, c * mono + d, mask)
  np.testing.assert_allclose(moved, base, rtol=1e-8, atol=1e-10)


_ssi_jit = jax.jit(ssi_depth_loss)


def test_ssi_depth_loss_check_grads_and_descent():
  pred, mono, _, mask = (jnp.asarray(a) for a in _inputs(11, (2, 5, 6)))
  f = jax.jit(lambda p: ssi_depth_loss(p, mono, mask)[0])
  check_grads(f, (pred,), order=1, modes=["rev"], eps=1e-7)
  g = jax.grad(f)(pred)
  assert float(f(pred - 1e-3 * g)) < float(f(pred))


@pytest.mark.parametrize("call,name", [
    (lambda: relative_depth_loss(np.ones((2, 4, 5)), np.ones((2, 4, 6)), np.ones((2, 4, 5)),
                                 np.ones((2, 4, 5))), "mono_depth"),
    (lambda: relative_depth_loss(np.ones((2, 4, 5)), np.ones((2, 4, 5)), np.ones((3, 4, 5)),
                                 np.ones((2, 4, 5))), "confidence"),
    (lambda: relative_depth_loss(np.ones((2, 4, 5)), np.ones((2, 4, 5)), np.ones((2, 4, 5)),
                                 np.ones(5)), "mask"),
    (lambda: ssi_depth_loss(np.ones(5), np.ones((4, 5)), np.ones((4, 5))), "pred_depth"),
    (lambda: ssi_depth_loss(np.ones((4, 5)), np.ones((4, 5)), np.ones((4, 4))), "mask"),
])
def test_bad_shapes_raise_with_argument_name(call, name):
  with pytest.raises(ValueError, match=name):
    call()
