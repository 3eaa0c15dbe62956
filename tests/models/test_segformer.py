"""Tests of the SegFormer network: shapes, dtype, input validation, published sizes, bf16, overfitting."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxrecon.models.reliev3r import count_params
from jaxrecon.models.segformer import SegFormer, SegFormerConfig, abstract_segformer


def _images(shape, seed=0):
  return jax.random.uniform(jax.random.key(seed), shape + (3,), jnp.float32, 0.0, 255.0)


@functools.partial(jax.jit, static_argnums=0)
def _forward_jit(graphdef, state, images):
  return nnx.merge(graphdef, state)(images)


def _forward(model, images):
  graphdef, state = nnx.split(model)
  return _forward_jit(graphdef, state, images)


@pytest.fixture(scope="module")
def tiny():
  return SegFormer(SegFormerConfig.tiny(num_classes=3), rngs=nnx.Rngs(0))


def test_config_hashable_and_validated():
  assert hash(SegFormerConfig.tiny(3)) == hash(SegFormerConfig.tiny(3))
  assert SegFormerConfig.tiny(3, depths=[1, 1, 1, 1]).depths == (1, 1, 1, 1)
  assert SegFormerConfig.tiny(3).size_multiple == 32
  with pytest.raises(ValueError, match="dtype"):
    SegFormerConfig.tiny(3, dtype="float16")
  with pytest.raises(ValueError, match="num_heads"):
    SegFormerConfig.tiny(3, num_heads=(1, 3, 4, 4))
  with pytest.raises(ValueError, match="depths"):
    SegFormerConfig.tiny(3, depths=(1, 1, 1))
  with pytest.raises(ValueError, match="i must be"):
    SegFormerConfig.b(6, 19)


@pytest.mark.parametrize("hw", [(64, 64), (64, 96)])
def test_tiny_output_shape_dtype_finite(tiny, hw):
  logits = _forward(tiny, _images((2,) + hw))
  assert logits.shape == (2,) + hw + (3,)
  assert logits.dtype == jnp.float32
  assert np.all(np.isfinite(np.asarray(logits)))


def test_uint8_input_matches_float(tiny):
  images = np.asarray(_images((2, 64, 64))).round().astype(np.uint8)
  a = _forward(tiny, jnp.asarray(images))
  b = _forward(tiny, jnp.asarray(images, jnp.float32))
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 64, 48, 3), (2, 40, 64, 3), (2, 64, 64), (2, 64, 64, 1)])
def test_bad_shape_raises(tiny, shape):
  with pytest.raises(ValueError, match=r"images"):
    tiny(jnp.zeros(shape, jnp.float32))


# Published totals (Xie et al., 2021, Table 1: 3.8M for B0, 64.1M for B4, with the 150-class ADE20K
# head; a 19-class head is 33k (B0) / 100k (B4) smaller, well inside the tolerance).
@pytest.mark.parametrize("variant, published", [(0, 3.8e6), (4, 64.1e6)])
def test_published_parameter_counts(variant, published):
  n = count_params(abstract_segformer(SegFormerConfig.b(variant, num_classes=19)))
  assert abs(n - published) / published < 0.05, n


def test_bf16_close_to_float32(tiny):
  images = _images((2, 64, 64), seed=1)
  ref = np.asarray(_forward(tiny, images))
  graphdef, _ = nnx.split(abstract_segformer(tiny.config.replace(dtype="bfloat16")))
  bf16 = nnx.merge(graphdef, nnx.state(tiny))
  out = np.asarray(_forward(bf16, images))
  assert out.dtype == np.float32 and np.all(np.isfinite(out))
  scale = np.abs(ref).max()
  assert np.abs(out - ref).max() < 0.1 * scale + 0.05, (np.abs(out - ref).max(), scale)


def test_remat_same_output(tiny):
  images = _images((2, 64, 64), seed=2)
  graphdef, _ = nnx.split(abstract_segformer(tiny.config.replace(remat=True)))
  remat = nnx.merge(graphdef, nnx.state(tiny))
  np.testing.assert_allclose(np.asarray(_forward(remat, images)),
                             np.asarray(_forward(tiny, images)), rtol=1e-5, atol=1e-5)


def test_tiny_overfits_two_images(tiny):
  # Two-class pattern: label 1 on the left half of image 0 and the top half of image 1, where the
  # pixels are also brighter; the model must learn the colour -> class map at full resolution.
  h = w = 64
  labels = np.zeros((2, h, w), np.int32)
  labels[0, :, : w // 2] = 1
  labels[1, : h // 2] = 1
  rng = np.random.default_rng(0)
  images = (rng.uniform(0, 80, (2, h, w, 3)) + 150 * labels[..., None]).astype(np.float32)
  images, labels = jnp.asarray(images), jnp.asarray(labels)

  # A copy of the shared 3-class model (initialising a fresh one costs more than training it on
  # CPU); class 2 never occurs, which the loss drives down as well.
  model = nnx.clone(tiny)
  optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

  def loss_fn(m):
    logits = m(images)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  @nnx.jit
  def step(m, opt):
    loss, grads = nnx.value_and_grad(loss_fn)(m)
    opt.update(m, grads)
    return loss

  # step returns the loss before its update: the 41st value is the loss after 40 Adam steps (an
  # eager loss_fn call would compile every op separately, which is slower than the training).
  losses = [float(step(model, optimizer)) for _ in range(41)]
  assert np.all(np.isfinite(losses))
  assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])


@pytest.mark.parametrize("remat", [False, True])
def test_scanned_stage_equals_a_python_loop_over_its_blocks(remat):
  """A stage's blocks are stacked and scanned (models.stack): float32, the stage equals embed,
  then layer_at(i) for i = 0..depth-1, then the norm; the blocks are initialised independently."""
  from jaxrecon.models.stack import layer_at
  model = SegFormer(SegFormerConfig.tiny(3, depths=(1, 3, 1, 1), remat=remat), rngs=nnx.Rngs(1))
  stage = model.stages[1]
  kernel = np.asarray(stage.blocks.attn.q.kernel[...])
  assert kernel.shape[0] == 3 and not np.allclose(kernel[0], kernel[1])
  x = jax.random.normal(jax.random.key(2), (2, 16, 16, 16), jnp.float32)
  scanned = jax.jit(lambda x: stage(x))(x)

  def looped(x):
    x = stage.embed(x)
    for i in range(3):
      x = layer_at(stage.blocks, i)(x)
    return stage.norm(x)
  np.testing.assert_allclose(scanned, jax.jit(looped)(x), rtol=1e-5, atol=1e-5)
