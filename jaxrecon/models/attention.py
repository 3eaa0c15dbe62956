"""Transformer layer pieces: multi-head self-attention with qk-norm and 2D RoPE, MLP, pre-norm layer.

A layer does not know whether it is a frame or a global layer: the caller reshapes the tokens to
(b * v, n, d) (frame attention) or (b, v * n, d) (global attention) and passes the matching RoPE
tables. Parameters are float32; `dtype` is the compute dtype of attention and MLP. The residual
stream, the pre-norms and LayerScale stay float32: a LayerScale of 0.01 makes each increment ~1%
of the stream, which bfloat16's 8-bit mantissa (relative step 2^-8 = 0.4%) would mostly round
away, layer after layer (#11).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxrecon.models.attention_kernels import dot_product_attention
from jaxrecon.models.rope import apply_rope
from jaxrecon.models.initializers import linear


class Attention(nnx.Module):
  """Multi-head self-attention: fused qkv, per-head LayerNorm on q and k (qk-norm), RoPE, output proj.

  qk-norm bounds the attention logits, which keeps deep/wide training stable (and bf16 safe).
  `implementation` and `chunk` choose the kernel (`models.attention_kernels`); they change memory
  and speed, never the parameters or (beyond rounding) the result.
  """

  def __init__(self, dim, num_heads, *, dtype=jnp.float32, implementation="auto", chunk=512,
               rngs: nnx.Rngs):
    self.num_heads = num_heads
    self.implementation = implementation
    self.chunk = chunk
    self.head_dim = dim // num_heads
    self.qkv = linear(dim, 3 * dim, dtype=dtype, rngs=rngs)
    self.q_norm = nnx.LayerNorm(self.head_dim, dtype=dtype, rngs=rngs)
    self.k_norm = nnx.LayerNorm(self.head_dim, dtype=dtype, rngs=rngs)
    self.proj = linear(dim, dim, dtype=dtype, rngs=rngs)

  def __call__(self, x, cos, sin):
    """x: (B, n, d) tokens; cos, sin: (n, head_dim / 2) RoPE tables. Returns (B, n, d)."""
    bsz, n, d = x.shape
    qkv = self.qkv(x).reshape(bsz, n, 3, self.num_heads, self.head_dim)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]          # (B, n, heads, head_dim)
    q = apply_rope(self.q_norm(q), cos, sin)
    k = apply_rope(self.k_norm(k), cos, sin)
    # No mask: every token sees every token (no view order, no causality).
    out = dot_product_attention(q, k, v.astype(q.dtype), implementation=self.implementation,
                                chunk=self.chunk)
    return self.proj(out.reshape(bsz, n, d))


class Mlp(nnx.Module):
  """Linear -> GELU -> Linear."""

  def __init__(self, dim, hidden, *, dtype=jnp.float32, rngs: nnx.Rngs):
    self.fc1 = linear(dim, hidden, dtype=dtype, rngs=rngs)
    self.fc2 = linear(hidden, dim, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    """x: (..., dim) -> (..., dim)."""
    return self.fc2(jax.nn.gelu(self.fc1(x)))


class LayerScale(nnx.Module):
  """Per-channel learnable scale of a residual branch, initialised small so that a deep stack starts
  close to the identity map."""

  def __init__(self, dim, init_value):
    self.gamma = nnx.Param(jnp.full((dim,), init_value, jnp.float32))

  def __call__(self, x):
    return x * self.gamma[...].astype(x.dtype)


class TransformerLayer(nnx.Module):
  """Pre-norm layer: x + ls1 * attn(norm1(x)); x + ls2 * mlp(norm2(x)).

  x, the norms and the LayerScale products are float32 (the residual stream); attention and MLP
  run in `dtype` on the normed input cast to it.
  """

  def __init__(self, dim, num_heads, mlp_ratio, *, layer_scale_init=0.01, dtype=jnp.float32,
               attention="auto", attention_chunk=512, rngs: nnx.Rngs):
    self.dtype = dtype
    self.norm1 = nnx.LayerNorm(dim, dtype=jnp.float32, rngs=rngs)
    self.attn = Attention(dim, num_heads, dtype=dtype, implementation=attention,
                          chunk=attention_chunk, rngs=rngs)
    self.norm2 = nnx.LayerNorm(dim, dtype=jnp.float32, rngs=rngs)
    self.mlp = Mlp(dim, int(dim * mlp_ratio), dtype=dtype, rngs=rngs)
    if layer_scale_init:
      self.ls1 = LayerScale(dim, layer_scale_init)
      self.ls2 = LayerScale(dim, layer_scale_init)
    else:
      self.ls1 = self.ls2 = None

  def __call__(self, x, cos, sin):
    """x: (B, n, d) residual stream (cast to float32); cos, sin: (n, head_dim / 2).
    Returns (B, n, d) float32."""
    x = x.astype(jnp.float32)
    a = self.attn(self.norm1(x).astype(self.dtype), cos, sin).astype(jnp.float32)
    x = x + (self.ls1(a) if self.ls1 is not None else a)
    m = self.mlp(self.norm2(x).astype(self.dtype)).astype(jnp.float32)
    return x + (self.ls2(m) if self.ls2 is not None else m)
