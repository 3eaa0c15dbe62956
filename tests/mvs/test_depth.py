"""Winner-take-all, sub-hypothesis refinement, cost-profile confidence and the median filter."""
import jax.numpy as jnp
import numpy as np

from jaxrecon import mvs


def test_parabolic_refinement_recovers_a_quadratic_minimum():
  inv_depths = np.linspace(1.0, 0.1, 31)
  step = inv_depths[1] - inv_depths[0]
  true_index = np.array([[7.3, 12.5], [20.0, 15.81]])
  idx = np.arange(31)[:, None, None]
  cost = 0.01 * (idx - true_index[None]) ** 2
  out = mvs.winner_take_all(jnp.asarray(cost), jnp.asarray(inv_depths))
  np.testing.assert_allclose(out["inv_depth"], inv_depths[0] + true_index * step, rtol=1e-6)
  np.testing.assert_allclose(out["depth"], 1 / np.asarray(out["inv_depth"]), rtol=1e-6)


def test_confidence_is_high_for_a_sharp_unique_minimum_and_zero_for_flat_or_repeated():
  d = 20
  sharp = np.ones(d)
  sharp[8] = 0.1
  flat = np.ones(d)
  repeated = np.ones(d)
  repeated[[4, 14]] = 0.1
  at_end = np.linspace(1.0, 0.1, d)      # best at the far end: the minimum may lie beyond it
  cost = np.stack([sharp, flat, repeated, at_end], -1)[:, None, :]   # (d, 1, 4)
  out = mvs.winner_take_all(jnp.asarray(cost), jnp.linspace(1.0, 0.1, d))
  conf = np.asarray(out["confidence"])[0]
  assert conf[0] > 0.8
  assert conf[1] == 0 and conf[2] < 1e-6 and conf[3] == 0
  assert np.all(np.isfinite(out["depth"]))


def test_median_filter_removes_speckle_and_ignores_untrusted_pixels():
  inv = np.full((6, 6), 0.5, np.float32)
  inv[2, 2] = 3.0                      # an isolated wrong winner
  inv[:, 5] = 9.0                      # an untrusted column
  mask = np.ones((6, 6), bool)
  mask[:, 5] = False
  out = np.asarray(mvs.median_filter(jnp.asarray(inv), jnp.asarray(mask)))
  np.testing.assert_allclose(out[:, :5], 0.5)
  # Untrusted pixels take the median of their trusted neighbours.
  np.testing.assert_allclose(out[:, 5], 0.5)
  none = np.asarray(mvs.median_filter(jnp.asarray(inv), jnp.zeros((6, 6), bool)))
  np.testing.assert_array_equal(none, inv)


def test_hypotheses_are_even_in_inverse_depth():
  inv = np.asarray(mvs.inverse_depth_hypotheses(2.0, 10.0, 5))
  np.testing.assert_allclose(inv, [0.5, 0.4, 0.3, 0.2, 0.1], rtol=1e-6)
