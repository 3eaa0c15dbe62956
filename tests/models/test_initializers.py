"""jaxrecon.models.initializers: the laws of flax's initialisers (checked against numpy statistics
and flax's own fans), one compiled draw per size bucket, the same values eagerly, under jit and
under vmap."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxrecon.models import initializers as inits


@pytest.mark.parametrize("shape", [(3, 3, 16, 32), (64, 48), (3, 3, 1, 40)])
@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
@pytest.mark.parametrize("distribution", ["truncated_normal", "normal"])
def test_variance_scaling_matches_flax_law(shape, mode, distribution):
  """Same variance as jax.nn.initializers.variance_scaling (fans of (..., in, out) weights with
  kernel axes in front), zero mean, truncation at 2 standard deviations of the untruncated law."""
  keys = jax.random.split(jax.random.key(0), 8)
  ours = np.concatenate([np.asarray(inits.variance_scaling(2.0, mode, distribution)(k, shape))
                         .ravel() for k in keys]).astype(np.float64)
  ref = np.concatenate([np.asarray(jax.nn.initializers.variance_scaling(2.0, mode, distribution)(
      k, shape)).ravel() for k in keys]).astype(np.float64)
  n = ours.size
  # Two sample variances of n draws: their ratio's standard error is at most 2 / sqrt(n); 5 sigma.
  np.testing.assert_allclose(ours.var(), ref.var(), rtol=10 / np.sqrt(n))
  assert abs(ours.mean()) < 5 * ours.std() / np.sqrt(n)
  if distribution == "truncated_normal":
    # Truncated at 2 standard deviations of the normal before rescaling to the target variance.
    bound = 2 * np.sqrt(ref.var()) / inits._TRUNCATED_STD
    assert np.abs(ours).max() <= bound * (1 + 1e-6)
    assert np.abs(ours).max() > 0.95 * bound
  else:
    assert np.abs(ours).max() > 3 * ours.std()  # a normal's tails: 8 x 4k+ draws reach 3 sigma


def test_fixed_deviation_laws_and_dtypes():
  key = jax.random.key(1)
  x = np.asarray(inits.truncated_normal(0.02)(key, (256, 256)), np.float64)
  # std of a standard normal truncated to (-2, 2), times 0.02, not rescaled.
  np.testing.assert_allclose(x.std(), 0.02 * inits._TRUNCATED_STD, rtol=0.02)
  assert np.abs(x).max() <= 0.04 * (1 + 1e-6)
  y = np.asarray(inits.normal(0.5)(key, (300, 200)), np.float64)
  np.testing.assert_allclose(y.std(), 0.5, rtol=0.02)
  assert inits.normal(0.5)(key, (3, 4), jnp.bfloat16).dtype == jnp.bfloat16
  assert inits.LECUN(key, (5, 7)).shape == (5, 7)


def test_bad_arguments():
  with pytest.raises(ValueError, match="mode"):
    inits.variance_scaling(1.0, "fan_sum")
  with pytest.raises(ValueError, match="distribution"):
    inits.variance_scaling(1.0, "fan_in", "uniform")
  with pytest.raises(ValueError, match="2 axes"):
    inits.LECUN(jax.random.key(0), (7,))


def test_shapes_of_one_bucket_share_one_compiled_draw():
  """Parameters whose sizes round up to the same bucket reuse the compiled random draw: only the
  slice-and-scale program is compiled per shape."""
  key = jax.random.key(2)
  sizes = [(33, 35), (40, 41), (7, 3, 60)]  # 1155, 1640, 1260 entries: the 4096 bucket
  before = inits._standard._cache_size()
  for shape in sizes:
    inits.LECUN(key, shape)
  assert inits._standard._cache_size() - before <= 1
  assert inits._bucket(1) == inits._bucket(4096) == 4096
  assert inits._bucket(4097) == 8192
  assert inits._bucket(2 ** 20 + 1) == 2 * 2 ** 20 and inits._bucket(3 * 2 ** 20 - 5) == 3 * 2 ** 20


def test_same_values_eagerly_under_jit_and_under_vmap():
  """A model built eagerly and the same model built inside jit or vmap (models.stack.stacked)
  get the same parameters."""
  keys = jax.random.split(jax.random.key(3), 3)
  init = inits.variance_scaling(1.0, "fan_avg", "truncated_normal")
  eager = np.stack([np.asarray(init(k, (9, 17))) for k in keys])
  np.testing.assert_array_equal(jax.jit(jax.vmap(lambda k: init(k, (9, 17))))(keys), eager)
  np.testing.assert_array_equal(jax.vmap(lambda k: init(k, (9, 17)))(keys), eager)
  # ... and through an nnx layer.
  a = nnx.Linear(9, 17, kernel_init=init, rngs=nnx.Rngs(4)).kernel[...]
  b = nnx.jit(lambda: nnx.Linear(9, 17, kernel_init=init, rngs=nnx.Rngs(4)))().kernel[...]
  np.testing.assert_array_equal(a, b)
