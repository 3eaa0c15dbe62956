"""jaxrecon.flops against analytic counts: matmuls, convolutions (grouped, and their gradients),
scan bodies times their length (where XLA's cost analysis counts one), branches and while loops."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrecon.flops import matmul_flops


def _flops(fn, *args):
  return matmul_flops(jax.make_jaxpr(fn)(*args))


def test_matmul_and_batched_matmul():
  a, b = jnp.ones((3, 5, 7)), jnp.ones((3, 7, 11))
  assert _flops(lambda x, y: x @ y, a, b).flops == 2 * 3 * 5 * 7 * 11
  einsum = _flops(lambda x, y: jnp.einsum("bij,bjk->bik", x, y) + 1.0, a, b)
  assert einsum.flops == 2 * 3 * 5 * 7 * 11


@pytest.mark.parametrize("groups", [1, 4])
def test_convolution_forward_and_gradient(groups):
  x = jnp.ones((2, 16, 16, 8))
  w = jnp.ones((3, 3, 8 // groups, 12))

  def conv(x, w):
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", feature_group_count=groups,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

  forward = 2 * (2 * 16 * 16 * 12) * (3 * 3 * 8 // groups)
  assert _flops(conv, x, w).flops == forward
  # Backward: the input gradient and the kernel gradient each cost one forward (up to the SAME
  # padding's border, which the padded convolution XLA emits still computes).
  grads = _flops(jax.grad(lambda x, w: conv(x, w).sum(), argnums=(0, 1)), x, w).flops
  assert grads == pytest.approx(3 * forward, rel=0.01)


def test_scan_body_counts_length_times_where_xla_counts_it_once():
  x, w = jnp.ones((4, 64)), jnp.ones((6, 64, 64))

  def layers(x, w):
    return jax.lax.scan(lambda h, wi: (jnp.tanh(h @ wi), None), x, w)[0]

  per_layer = 2 * 4 * 64 * 64
  assert _flops(layers, x, w).flops == 6 * per_layer
  compiled = jax.jit(layers).lower(x, w).compile().cost_analysis()
  compiled = compiled[0] if isinstance(compiled, (list, tuple)) else compiled
  assert compiled["flops"] < 2 * per_layer     # the reason this counter exists
  # forward + both gradients of a scanned stack: 3 matmuls per layer
  grads = _flops(jax.grad(lambda x, w: layers(x, w).sum(), argnums=(0, 1)), x, w)
  assert grads.flops == 3 * 6 * per_layer and grads.uncounted_loops == 0


def test_cond_takes_the_costliest_branch_and_while_is_reported():
  x = jnp.ones((8, 8))
  branches = _flops(lambda p, x: jax.lax.cond(p, lambda x: x @ x @ x, lambda x: x @ x, x),
                    True, x)
  assert branches.flops == 2 * 2 * 8 ** 3
  looped = _flops(lambda x: jax.lax.while_loop(lambda c: c[0] < 3,
                                               lambda c: (c[0] + 1, c[1] @ c[1]), (0, x))[1], x)
  assert looped.flops == 2 * 8 ** 3 and looped.uncounted_loops == 1


def test_real_model_matches_xla_where_nothing_is_looped():
  """A SegFormer forward with one block per stage: no scan trip count above 1, so XLA's count (which
  adds elementwise work) is at least this one and within a few percent of it."""
  from flax import nnx
  from jaxrecon.models.segformer import SegFormer, SegFormerConfig
  config = SegFormerConfig.tiny(5)
  model = SegFormer(config, rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(model)
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(1, 64, 64, 3)), jnp.float32)

  def forward(state, x):
    return nnx.merge(graphdef, state)(x)

  ours = _flops(forward, state, x).flops
  xla = jax.jit(forward).lower(state, x).compile().cost_analysis()
  xla = (xla[0] if isinstance(xla, (list, tuple)) else xla)["flops"]
  assert ours > 0 and ours <= xla <= 1.25 * ours
