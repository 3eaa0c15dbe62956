"""Tests of the serialised point transformer: shapes, equivariances, grads, jit, size, overfitting."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxrecon.models.point_transformer import (PointTransformer, PointTransformerConfig,
                                               abstract_point_transformer, count_params)

K = 3


@functools.partial(jax.jit, static_argnums=0)
def _forward_jit(graphdef, state, xyz, rgb, valid):
  return nnx.merge(graphdef, state)(xyz, rgb, valid)


def _forward(model, xyz, rgb, valid):
  graphdef, state = nnx.split(model)
  return _forward_jit(graphdef, state, jnp.asarray(xyz), jnp.asarray(rgb), jnp.asarray(valid))


def _cloud(b, n, seed=0, extent=2.0):
  rng = np.random.default_rng(seed)
  xyz = rng.uniform(0, extent, size=(b, n, 3)).astype(np.float32)
  rgb = rng.uniform(0, 1, size=(b, n, 3)).astype(np.float32)
  return xyz, rgb


@pytest.fixture(scope="module")
def model():
  return PointTransformer(PointTransformerConfig.tiny(K), rngs=nnx.Rngs(0))


def test_shapes_and_finite_with_padding(model):
  b, n = 2, 512
  xyz, rgb = _cloud(b, n)
  valid = np.arange(n)[None] < np.array([[n], [300]])
  xyz[1, 300:] = 1e4                      # padding rows hold garbage
  out = _forward(model, xyz, rgb, valid)
  assert out.shape == (b, n, K) and out.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(out)))


def test_all_padding_cloud_is_finite(model):
  xyz, rgb = _cloud(1, 512)
  out = _forward(model, xyz, rgb, np.zeros((1, 512), bool))
  assert bool(jnp.all(jnp.isfinite(out)))


def test_permutation_equivariance(model):
  # Random float coordinates: points sharing a voxel are ordered by position, not by input index,
  # so the network is equivariant up to float summation order (segment means).
  n, nv = 512, 450
  xyz, rgb = _cloud(1, n, seed=1)
  valid = np.arange(n)[None] < nv
  shuffle = np.concatenate([np.random.default_rng(2).permutation(nv), np.arange(nv, n)])
  out1 = np.asarray(_forward(model, xyz, rgb, valid))
  out2 = np.asarray(_forward(model, xyz[:, shuffle], rgb[:, shuffle], valid))
  np.testing.assert_allclose(out2[0, :nv], out1[0, shuffle[:nv]], atol=1e-4, rtol=1e-4)


def test_padding_invariance(model):
  # 512 -> 576 entries: the patch size (64) and the valid entries' patches are unchanged.
  n, extra = 512, 64
  xyz, rgb = _cloud(1, n, seed=3)
  valid = np.ones((1, n), bool)
  out1 = np.asarray(_forward(model, xyz, rgb, valid))
  xyz2 = np.concatenate([xyz, np.full((1, extra, 3), -50.0, np.float32)], 1)
  rgb2 = np.concatenate([rgb, np.zeros((1, extra, 3), np.float32)], 1)
  valid2 = np.concatenate([valid, np.zeros((1, extra), bool)], 1)
  out2 = np.asarray(_forward(model, xyz2, rgb2, valid2))
  np.testing.assert_allclose(out2[:, :n], out1, atol=1e-5, rtol=1e-5)


def test_translation_invariance(model):
  # Coordinates on a 1/64 m lattice and a lattice shift: every subtraction is exact in float32,
  # so the voxels and the relative positions are identical and so are the logits.
  n = 512
  xyz, rgb = _cloud(1, n, seed=4)
  xyz = np.round(xyz * 64) / 64
  valid = np.ones((1, n), bool)
  out1 = np.asarray(_forward(model, xyz, rgb, valid))
  out2 = np.asarray(_forward(model, xyz + np.float32([8.0, -4.0, 16.0]), rgb, valid))
  np.testing.assert_allclose(out2, out1, atol=1e-5, rtol=1e-5)
  # An arbitrary shift of generic coordinates moves a few points across voxel boundaries by
  # rounding (~1e-7 m), which perturbs the logits of their patches a little.
  xyz, _ = _cloud(1, n, seed=5)
  out1 = np.asarray(_forward(model, xyz, rgb, valid))
  out3 = np.asarray(_forward(model, xyz + np.float32([0.3137, -1.771, 2.05]), rgb, valid))
  assert np.median(np.abs(out3 - out1)) < 0.02 * np.std(out1)


def _loss(model, xyz, rgb, valid, labels):
  logits = model(xyz, rgb, valid)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  return jnp.sum(ce * valid) / jnp.maximum(jnp.sum(valid), 1)


def test_gradients_finite(model):
  b, n = 2, 256
  xyz, rgb = _cloud(b, n, seed=5)
  valid = np.arange(n)[None] < np.array([[n], [200]])
  labels = (xyz[..., 0] > 1.0).astype(np.int32)
  grads = nnx.jit(nnx.grad(_loss))(model, jnp.asarray(xyz), jnp.asarray(rgb), jnp.asarray(valid),
                          jnp.asarray(labels))
  leaves = jax.tree.leaves(grads)
  assert leaves and all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
  assert sum(float(jnp.sum(jnp.abs(g))) for g in leaves) > 0


def test_bf16_remat_capacity_runs():
  # Two levels keep the compile short; capacity 0.5 at level 1 overflows for this dense cloud
  # only if it has more than 128 occupied 10 cm cells, and must run finite either way.
  cfg = PointTransformerConfig.tiny(K, dtype="bfloat16", remat=True, enc_dims=(16, 32),
                                    enc_depths=(1, 1), enc_heads=(1, 2), dec_dims=(16,),
                                    dec_depths=(1,), dec_heads=(1,), capacity=(1, 0.5))
  model = PointTransformer(cfg, rngs=nnx.Rngs(1))
  b, n = 1, 256
  xyz, rgb = _cloud(b, n, seed=6, extent=0.5)
  valid = np.ones((b, n), bool)
  labels = (xyz[..., 2] > 0.25).astype(np.int32)
  loss, grads = nnx.jit(nnx.value_and_grad(_loss))(model, jnp.asarray(xyz), jnp.asarray(rgb),
                                                   jnp.asarray(valid), jnp.asarray(labels))
  assert bool(jnp.isfinite(loss))
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_jit_compiles_once_per_shape(model):
  traces = []

  @jax.jit
  def fwd(state, xyz, rgb, valid):
    traces.append(1)
    return nnx.merge(graphdef, state)(xyz, rgb, valid)

  graphdef, state = nnx.split(model)
  for seed in range(2):
    xyz, rgb = _cloud(2, 256, seed=seed)
    valid = np.random.default_rng(seed).uniform(size=(2, 256)) < 0.8
    assert bool(jnp.all(jnp.isfinite(fwd(state, xyz, rgb, valid))))
  assert len(traces) == 1


def test_paper_parameter_count():
  n = count_params(abstract_point_transformer(PointTransformerConfig.paper(20)))
  assert 40e6 <= n <= 55e6, n


def test_config_validation():
  with pytest.raises(ValueError, match="enc_heads"):
    PointTransformerConfig.tiny(2, enc_heads=(3, 2, 4, 4))
  with pytest.raises(ValueError, match="dec_dims"):
    PointTransformerConfig.tiny(2, dec_dims=(16, 32))
  with pytest.raises(ValueError, match="orders"):
    PointTransformerConfig.tiny(2, orders=("peano",))
  with pytest.raises(ValueError, match="capacity"):
    PointTransformerConfig.tiny(2, capacity=(0.5, 0.5, 0.5, 0.5))
  with pytest.raises(ValueError, match="dtype"):
    PointTransformerConfig.tiny(2, dtype="float16")
  cfg = PointTransformerConfig.tiny(2, enc_dims=[16, 32, 64, 64])
  assert hash(cfg) == hash(PointTransformerConfig.tiny(2))


def test_tiny_overfits_plane_split():
  model = PointTransformer(PointTransformerConfig.tiny(2), rngs=nnx.Rngs(0))
  b, n = 1, 256
  xyz, rgb = _cloud(b, n, seed=7)
  valid = np.ones((b, n), bool)
  labels = (xyz @ np.float32([1.0, 0.5, -0.3]) > 1.2).astype(np.int32)
  data = tuple(jnp.asarray(a) for a in (xyz, rgb, valid, labels))
  opt = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

  @nnx.jit
  def step(model, opt, xyz, rgb, valid, labels):
    loss, grads = nnx.value_and_grad(_loss)(model, xyz, rgb, valid, labels)
    opt.update(model, grads)
    return loss

  losses = [float(step(model, opt, *data)) for _ in range(30)]
  assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("remat", [False, True])
def test_scanned_level_equals_a_python_loop_over_its_blocks(remat):
  """A level's blocks are stacked and scanned (models.stack) with block i attending in serialisation
  order orders[i % len(orders)]: float32, the same as layer_at(i) applied in a Python loop with
  that order's permutation."""
  from jaxrecon.models.point_layers import Level, serialise
  from jaxrecon.models.serialization import grid_coords
  from jaxrecon.models.stack import layer_at
  cfg = PointTransformerConfig.tiny(K, enc_depths=(3, 1, 1, 1), remat=remat)
  model = PointTransformer(cfg, rngs=nnx.Rngs(3))
  xyz, _ = _cloud(2, 256, seed=4)
  valid = np.arange(256)[None] < np.array([[256], [200]])
  xyz, valid = jnp.asarray(xyz), jnp.asarray(valid)
  coords = grid_coords(xyz, valid, grid_size=cfg.grid_size)
  lvl = Level(coords, xyz, valid, serialise(coords, xyz, valid, cfg.orders, cfg.code_bits))
  x = jax.random.normal(jax.random.key(5), (2, 256, cfg.enc_dims[0]), jnp.float32)
  blocks = model.enc[0]
  scanned = jax.jit(lambda x: model._run_blocks(blocks, x, lvl, 3))(x)

  def looped(x):
    for i in range(3):
      perm, inverse = lvl.perms[cfg.orders[i % len(cfg.orders)]]
      x = layer_at(blocks, i)(x, lvl.coords, lvl.valid, perm, inverse, cfg.patch_size)
    return x
  np.testing.assert_allclose(scanned, jax.jit(looped)(x), rtol=1e-5, atol=1e-5)
  # Three different orders, and independently initialised blocks.
  assert len({cfg.orders[i % len(cfg.orders)] for i in range(3)}) == 3
  kernel = np.asarray(blocks.fc1.kernel[...])
  assert not np.allclose(kernel[0], kernel[1])


def test_attention_kernel_leaves_outputs_and_gradients_unchanged():
  """The reference ("xla", every patch's logits at once) and the query-chunked kernel (blocks of
  16 queries in patches of 64) give the same logits and parameter gradients, float32, on clouds
  with padding (a patch straddling the end of the valid points, and all-padding patches)."""
  base = PointTransformerConfig.tiny(K, attention="xla")
  model = PointTransformer(base, rngs=nnx.Rngs(6))
  chunked = nnx.merge(nnx.graphdef(nnx.eval_shape(lambda: PointTransformer(
      base.replace(attention="chunked", attention_chunk=16), rngs=nnx.Rngs(0)))),
      nnx.state(model))
  xyz, rgb = _cloud(2, 512, seed=7)
  valid = jnp.asarray(np.arange(512)[None] < np.array([[512], [290]]))
  xyz, rgb = jnp.asarray(xyz), jnp.asarray(rgb)

  def loss_and_grads(m):
    def loss(m):
      out = m(xyz, rgb, valid)
      return jnp.sum(jnp.where(valid[..., None], out, 0.0) ** 2), out
    (_, out), grads = nnx.value_and_grad(loss, has_aux=True)(m)
    return out, nnx.state(grads, nnx.Param)

  fn = jax.jit(loss_and_grads)
  out_r, g_r = fn(model)
  out_c, g_c = fn(chunked)
  np.testing.assert_allclose(np.asarray(out_c)[np.asarray(valid)],
                             np.asarray(out_r)[np.asarray(valid)], rtol=1e-4, atol=1e-5)
  for a, b in zip(jax.tree.leaves(g_c), jax.tree.leaves(g_r)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * max(float(np.abs(b).max()), 1e-3))
