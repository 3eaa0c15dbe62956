"""Permutation-equivariant multi-view transformer backbone (pi3-style, no reference view).

Images -> patch tokens (+ register tokens) -> alternating frame / global attention layers.

Permutation equivariance over views holds by construction: every per-view operation (patch
embedding, registers, RoPE tables, frame attention, MLPs, norms) is the same function for every view,
and global attention treats the tokens of all views as an unordered set (no view-index embedding, no
mask, no special first view). Permuting the input views therefore permutes every output.
"""
from __future__ import annotations

import einops
import jax.numpy as jnp
from flax import nnx

from jaxrecon.models.attention import TransformerLayer
from jaxrecon.models.config import ModelConfig
from jaxrecon.models.rope import rope_tables
from jaxrecon.models.stack import scan_layers, stacked
from jaxrecon.models.initializers import linear, normal

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
    self.proj = linear(patch_size * patch_size * 3, dim, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    """x: (B, h, w, 3) normalised images -> (B, (h/p) * (w/p), d) tokens, row-major patch order."""
    p = self.patch_size
    patches = einops.rearrange(x, "b (gh ph) (gw pw) c -> b (gh gw) (ph pw c)", ph=p, pw=p)
    return self.proj(patches)


class Block(nnx.Module):
  """One frame-attention layer followed by one global-attention layer.

  The backbone holds `depth` of them with their parameters stacked along a leading axis and scans
  over that axis (`models.stack`), so the program holds one block whatever the depth.
  """

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    layer = lambda: TransformerLayer(
        config.embed_dim, config.num_heads, config.mlp_ratio,
        layer_scale_init=config.layer_scale_init, dtype=config.compute_dtype,
        attention=config.attention, attention_chunk=config.attention_chunk, rngs=rngs)
    self.frame_layer = layer()
    self.global_layer = layer()

  def __call__(self, x, views, frame_rope, global_rope):
    """x: (b * views, n, d) float32 residual stream, view-major; frame_rope: (cos, sin) each
    (n, hd/2); global_rope: the same tiled over views, each (views * n, hd/2).
    Returns (b * views, n, d) float32."""
    bv, n, d = x.shape
    x = self.frame_layer(x, *frame_rope)                        # tokens of one view
    x = self.global_layer(x.reshape(bv // views, views * n, d), *global_rope)  # all views
    return x.reshape(bv, n, d)


class Backbone(nnx.Module):
  """Patch embedding, registers and `depth` (frame, global) blocks, scanned.

  Parameters of the blocks live in `self.blocks` with a leading (depth,) axis: block i's frame
  layer is layer 2i and its global layer layer 2i + 1 of the frame/global alternation.
  """

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    self.config = config
    dt = config.compute_dtype
    d = config.embed_dim
    self.patch_embed = PatchEmbed(config.patch_size, d, dtype=dt, rngs=rngs)
    # One set of registers shared by all views: a per-view set would tag views and break
    # permutation equivariance.
    self.registers = nnx.Param(normal(0.02)(rngs.params(), (config.num_registers, d)))
    self.blocks = stacked(lambda r: Block(config, rngs=r), config.depth, rngs.params())
    self.norm = nnx.LayerNorm(d, dtype=jnp.float32, rngs=rngs)

  def embed(self, images):
    """Tokens entering the first block and the RoPE tables.

    Args:
      images: (b, v, h, w, 3) in [0, 1]; h and w multiples of patch_size.
    Returns:
      x: (b * v, r + gh * gw, d) float32 (registers first, then patches in row-major order);
      frame_rope: (cos, sin) each (r + gh * gw, hd / 2); global_rope: the same tiled over views.
    """
    cfg = self.config
    b, v, h, w, _ = images.shape
    p = cfg.patch_size
    if h % p or w % p:
      raise ValueError(f"image size {(h, w)} is not a multiple of patch_size {p}")
    gh, gw = h // p, w // p
    r = cfg.num_registers
    x = self.patch_embed(normalize_images(images.reshape(b * v, h, w, 3), cfg.compute_dtype))
    # The residual stream is float32 (see `models.attention`); layers compute in dt.
    regs = jnp.broadcast_to(self.registers[...].astype(jnp.float32), (b * v, r, cfg.embed_dim))
    x = jnp.concatenate([regs, x.astype(jnp.float32)], 1)                        # (b*v, n, d)
    cos, sin = rope_tables(gh, gw, r, cfg.head_dim, base=cfg.rope_base)          # (n, hd/2)
    # Global attention sees the views concatenated; each view's tokens reuse the same positions.
    return x, (cos, sin), (jnp.tile(cos, (v, 1)), jnp.tile(sin, (v, 1)))

  def __call__(self, images):
    """Runs the backbone.

    Args:
      images: (b, v, h, w, 3) in [0, 1]; h and w multiples of patch_size.
    Returns:
      (b, v, r + gh * gw, d) final (normed) tokens in the compute dtype: r registers first, then the
      gh x gw patch tokens in row-major order (gh = h / p, gw = w / p).
    """
    b, v = images.shape[:2]
    x, frame_rope, global_rope = self.embed(images)
    # The residual stream stays float32 through the scan (the blocks compute in the compute dtype).
    x = scan_layers(self.blocks, x.astype(jnp.float32),
                    lambda block, x, _: block(x, v, frame_rope, global_rope),
                    remat=self.config.remat)
    return self.norm(x).astype(self.config.compute_dtype).reshape(b, v, x.shape[1], -1)
