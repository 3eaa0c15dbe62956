"""Robust penalties: values, concrete-scale checks, and a traced scale that compiles once."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrecon.losses.registration import registration_loss_at_tracks
from jaxrecon.losses.robust import KINDS, robust_penalty


@pytest.mark.parametrize("kind", KINDS)
def test_traced_scale_matches_concrete(kind):
  r = jnp.linspace(0.0, 5.0, 11, dtype=jnp.float32)
  jitted = jax.jit(lambda r, s: robust_penalty(r, kind=kind, scale=s))
  for scale in (0.3, 1.0, 2.5):
    np.testing.assert_allclose(jitted(r, jnp.float32(scale)),
                               robust_penalty(r, kind=kind, scale=scale), rtol=1e-6)
  # One compilation for every (float32 scalar) scale.
  assert jitted._cache_size() == 1


def test_cauchy_values():
  s = 0.5
  r = np.array([0.0, 0.1, 1.0, 10.0])
  np.testing.assert_allclose(robust_penalty(r, scale=s), 0.5 * s * s * np.log1p((r / s) ** 2),
                             rtol=1e-6)


@pytest.mark.parametrize("scale", [0.0, -1.0, np.float32(0.0), jnp.array(-0.5)])
def test_concrete_scale_is_checked(scale):
  with pytest.raises(ValueError, match="scale"):
    robust_penalty(jnp.ones(3), scale=scale)


def test_registration_loss_with_traced_scale_compiles_once():
  rng = np.random.default_rng(0)
  t, v = 20, 3
  tracks = jnp.asarray(rng.uniform(0, 100, (t, v, 2)), jnp.float32)
  vis = jnp.ones((t, v), jnp.float32)
  depth = jnp.asarray(rng.uniform(1, 2, (t, v)), jnp.float32)
  poses = jnp.tile(jnp.eye(4, dtype=jnp.float32), (v, 1, 1)).at[:, 0, 3].set(jnp.arange(v) * 0.1)
  intr = jnp.tile(jnp.array([[100.0, 0, 50], [0, 100, 50], [0, 0, 1]], jnp.float32), (v, 1, 1))
  for form in ("angular", "triangulation", "pixel"):
    fn = jax.jit(lambda s: registration_loss_at_tracks(tracks, vis, depth, poses, intr, form=form,
                                                       robust_scale=s)[0])
    for deg in (5.0, 1.0, 0.5):
      expected = registration_loss_at_tracks(tracks, vis, depth, poses, intr, form=form,
                                             robust_scale=float(np.deg2rad(deg)))[0]
      np.testing.assert_allclose(fn(jnp.float32(np.deg2rad(deg))), expected, rtol=1e-5)
    assert fn._cache_size() == 1, form
