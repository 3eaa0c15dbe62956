"""Permutation-equivariant multi-view transformer backbone (pi3-style, no reference view).

Images -> patch tokens (+ register tokens) -> alternating frame / global attention layers.

Permutation equivariance over views holds by construction: every per-view operation (patch
embedding, registers, RoPE tables, frame attention, MLPs, norms) is the same function for every view,
and global attention treats the tokens of all views as an unordered set (no view-index embedding, no
mask, no special first view). Permuting the input views therefore permutes every output.
"""
from __future__ import annotations

import einops
import jax
import jax.numpy as jnp
from flax import nnx

from jaxrecon.models.attention import TransformerLayer
from jaxrecon.models.config import ModelConfig
from jaxrecon.models.rope import rope_tables

# ImageNet statistics: the usual input normalisation of ViT encoders (keeps the door open to
# initialising the patch embedding / early layers from a pretrained image encoder).
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def normalize_images(images, dtype):
  """images: (..., h, w, 3) in [0, 1] -> (..., h, w, 3) standardised, in `dtype`."""
  mean = jnp.asarray(_MEAN, jnp.float32)
  std = jnp.asarray(_STD, jnp.float32)
  return ((images.astype(jnp.float32) - mean) / std).astype(dtype)


class PatchEmbed(nnx.Module):
  """Non-overlapping p x p patches -> Linear(p*p*3, d) (equivalent to a stride-p convolution)."""

  def __init__(self, patch_size, dim, *, dtype=jnp.float32, rngs: nnx.Rngs):
    self.patch_size = patch_size
    self.proj = nnx.Linear(patch_size * patch_size * 3, dim, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    """x: (B, h, w, 3) normalised images -> (B, (h/p) * (w/p), d) tokens, row-major patch order."""
    p = self.patch_size
    patches = einops.rearrange(x, "b (gh ph) (gw pw) c -> b (gh gw) (ph pw c)", ph=p, pw=p)
    return self.proj(patches)


def _apply_layer(layer, x, cos, sin):
  return layer(x, cos, sin)


class Backbone(nnx.Module):
  """Patch embedding, registers and 2 * depth alternating frame/global transformer layers.

  Layer i is a frame-attention layer for even i and a global-attention layer for odd i.
  """

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    self.config = config
    dt = config.compute_dtype
    d = config.embed_dim
    self.patch_embed = PatchEmbed(config.patch_size, d, dtype=dt, rngs=rngs)
    # One set of registers shared by all views: a per-view set would tag views and break
    # permutation equivariance.
    self.registers = nnx.Param(
        0.02 * jax.random.normal(rngs.params(), (config.num_registers, d), jnp.float32))
    self.layers = nnx.List([
        TransformerLayer(d, config.num_heads, config.mlp_ratio,
                         layer_scale_init=config.layer_scale_init, dtype=dt, rngs=rngs)
        for _ in range(config.num_layers)])
    self.norm = nnx.LayerNorm(d, dtype=jnp.float32, rngs=rngs)

  def __call__(self, images):
    """Runs the backbone.

    Args:
      images: (b, v, h, w, 3) in [0, 1]; h and w multiples of patch_size.
    Returns:
      (b, v, r + gh * gw, d) final (normed) tokens in the compute dtype: r registers first, then the
      gh x gw patch tokens in row-major order (gh = h / p, gw = w / p).
    """
    cfg = self.config
    b, v, h, w, _ = images.shape
    p = cfg.patch_size
    if h % p or w % p:
      raise ValueError(f"image size {(h, w)} is not a multiple of patch_size {p}")
    gh, gw = h // p, w // p
    r = cfg.num_registers
    dt = cfg.compute_dtype

    x = self.patch_embed(normalize_images(images.reshape(b * v, h, w, 3), dt))  # (b*v, gh*gw, d)
    # The residual stream is float32 (see `models.attention`); layers compute in dt.
    regs = jnp.broadcast_to(self.registers[...].astype(jnp.float32), (b * v, r, cfg.embed_dim))
    x = jnp.concatenate([regs, x.astype(jnp.float32)], 1)                        # (b*v, n, d)
    n = r + gh * gw

    cos, sin = rope_tables(gh, gw, r, cfg.head_dim, base=cfg.rope_base)          # (n, hd/2)
    # Global attention sees the views concatenated; each view's tokens reuse the same positions.
    cos_g, sin_g = jnp.tile(cos, (v, 1)), jnp.tile(sin, (v, 1))                  # (v*n, hd/2)

    call = nnx.remat(_apply_layer) if cfg.remat else _apply_layer
    for i, layer in enumerate(self.layers):
      if i % 2 == 0:   # frame attention: tokens of one view
        x = call(layer, x, cos, sin)
      else:            # global attention: tokens of all views of a scene
        x = call(layer, x.reshape(b, v * n, -1), cos_g, sin_g).reshape(b * v, n, -1)
    return self.norm(x).astype(dt).reshape(b, v, n, -1)
