"""Fixed-shape pieces of the point transformer (`jaxrecon.models.point_transformer`): gathers and
shifts along the slot axis, serialisation and grid pooling of one level, and the layers (the
serialised conditional positional encoding, patch attention, the PTv3 block).

Shapes: b clouds, m slots of a level, c channels; coords are int32 cell coordinates (grid units
of the level), valid masks mark occupied slots; padding slots travel with the masks.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxrecon.models import serialization as ser
from jaxrecon.models.attention_kernels import dot_product_attention
from jaxrecon.models.initializers import linear, normal


# ------------------------------------------------------------------------------------------------
# Fixed-shape helpers.


def take(x, idx):
  """x: (b, m, ...) gathered along axis 1 by idx (b, j) int -> (b, j, ...)."""
  return jnp.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), axis=1)


def shift(x, k):
  """y[:, i] = x[:, i + k] where 0 <= i + k < m, else 0 (x: (b, m, ...), static int k)."""
  if k == 0:
    return x
  m = x.shape[1]
  if abs(k) >= m:
    return jnp.zeros_like(x)
  pad = [(0, 0)] * x.ndim
  if k > 0:
    pad[1] = (0, k)
    return jnp.pad(x[:, k:], pad)
  pad[1] = (-k, 0)
  return jnp.pad(x[:, :m + k], pad)


@dataclasses.dataclass
class Level:
  """Per-level geometry (a plain container, rebuilt every call)."""
  coords: jax.Array          # (b, m, 3) int32 cell coordinates (grid units of this level)
  pos: jax.Array             # (b, m, 3) float32 mean position of the cell's points (metres, rel.)
  valid: jax.Array           # (b, m) bool occupied slots
  perms: dict                # order -> (perm, inverse), each (b, m) int32


# The serialisation and pooling geometry is integer work of hundreds of small ops per call, called
# for students and teachers alike with the same shapes: as nested jits they are traced once per
# shape instead of at every call (tracing the tiny Rewis3d train step: 25 s -> 18-23 s on 2 CPU
# cores, single runs beside other work: the size of the gain is not resolved).
@functools.partial(jax.jit, static_argnames=("orders", "bits"))
def serialise(coords, pos, valid, orders, bits):
  """Sort permutations of one level for every order; ties within a cell broken by position."""
  return {o: ser.sort_by_code(ser.encode(coords, order=o, bits=bits), valid, pos) for o in orders}


@functools.partial(jax.jit, static_argnames=("stride", "capacity", "bits"))
def pool_ids(coords, pos, valid, *, stride, capacity, bits):
  """Parent slot ids of the children of a level (fixed shapes).

  Args:
    coords: (b, m, 3) int32 child cells; pos: (b, m, 3) float32; valid: (b, m) bool.
  Returns:
    ids: (b, m) int32 parent slot in [0, capacity) or capacity for padding / dropped children;
    parent_coords: (b, m, 3) int32 (child cells // stride); num_cells: (b,) int32 occupied cells.
  """
  parent = coords // stride
  code = ser.z_order(parent, bits=bits)
  perm, inverse = ser.sort_by_code(code, valid, pos)
  code_s = jnp.where(take(valid, perm), take(code, perm), ser.PAD_KEY)
  valid_s = take(valid, perm)
  first = jnp.concatenate([valid_s[:, :1], (code_s[:, 1:] != code_s[:, :-1]) & valid_s[:, 1:]], 1)
  ids_s = jnp.cumsum(first.astype(jnp.int32), axis=1) - 1
  ids_s = jnp.where(valid_s & (ids_s < capacity), ids_s, capacity)
  return take(ids_s, inverse), parent, jnp.sum(first, axis=1, dtype=jnp.int32)


def segment_reduce(x, ids, num, op):
  """Per-cloud segment reduction. x: (b, m, c); ids: (b, m) in [0, num] (num = dump slot).
  Returns (b, num, c); empty segments hold the op's identity (0 or -inf)."""
  b, m = ids.shape
  flat = (ids + jnp.arange(b, dtype=jnp.int32)[:, None] * (num + 1)).reshape(-1)
  out = op(x.reshape(b * m, -1), flat, num_segments=b * (num + 1))
  return out.reshape(b, num + 1, -1)[:, :num]


# ------------------------------------------------------------------------------------------------
# Layers.


class SerializedCPE(nnx.Module):
  """Conditional positional encoding: a 3x3x3 "sparse conv" whose neighbours are searched within
  +-window entries of the serialised order, then Linear and LayerNorm (PTv3's CPE layout).

  Neighbour j of slot i contributes to the offset bin d = cell_j - cell_i when d is in {-1, 0, 1}^3;
  contributions per bin are averaged, then out_i = sum_bins W[bin] mean_bin + bias.
  """

  def __init__(self, dim, *, window, dtype=jnp.float32, rngs: nnx.Rngs):
    self.window = window
    self.dtype = dtype
    self.kernel = nnx.Param(normal(1.0 / math.sqrt(27 * dim))(rngs.params(), (27 * dim, dim)))
    self.bias = nnx.Param(jnp.zeros((dim,), jnp.float32))
    self.linear = linear(dim, dim, dtype=dtype, rngs=rngs)
    self.norm = nnx.LayerNorm(dim, dtype=dtype, rngs=rngs)

  def __call__(self, x, coords, valid):
    """x: (b, m, c) in serialised order; coords: (b, m, 3) int32 cells; valid: (b, m) bool.
    Returns (b, m, c) in x's dtype."""
    b, m, c = x.shape
    offsets = range(-self.window, self.window + 1)
    nbr = jnp.stack([shift(x, k) for k in offsets], axis=2)                  # (b, m, w, c)
    d = jnp.stack([shift(coords, k) for k in offsets], axis=2) - coords[:, :, None]
    ok = (jnp.stack([shift(valid, k) for k in offsets], axis=2) & valid[:, :, None]
          & jnp.all(jnp.abs(d) <= 1, axis=-1))                               # (b, m, w)
    bin_ = (d[..., 0] + 1) * 9 + (d[..., 1] + 1) * 3 + (d[..., 2] + 1)
    onehot = jax.nn.one_hot(jnp.where(ok, bin_, -1), 27, dtype=jnp.float32)  # zero row if not ok
    # Mean per offset bin (several slots can share a cell at level 0), then the 27 c x c kernels.
    onehot = onehot / jnp.maximum(jnp.sum(onehot, axis=2, keepdims=True), 1.0)
    acc = jnp.einsum("bmwq,bmwc->bmqc", onehot.astype(x.dtype), nbr)
    y = acc.reshape(b, m, 27 * c) @ self.kernel[...].astype(x.dtype) + self.bias[...].astype(x.dtype)
    return self.norm(self.linear(y))


class PatchAttention(nnx.Module):
  """Multi-head self-attention within consecutive patches of a serialised sequence.

  `attention` picks the kernel (`models.attention_kernels`: "auto" = fused cuDNN on GPU in bf16,
  Pallas on TPU, query blocks of `chunk` elsewhere; "xla" materialises every patch's p x p logits
  for all heads at once, which at the paper's patches of 1024 and 32 heads is ~128 KB per slot).
  """

  def __init__(self, dim, num_heads, *, qk_norm=True, attention="auto", chunk=128,
               dtype=jnp.float32, rngs: nnx.Rngs):
    self.num_heads = num_heads
    self.attention, self.chunk = attention, chunk
    self.head_dim = dim // num_heads
    self.qkv = linear(dim, 3 * dim, dtype=dtype, rngs=rngs)
    if qk_norm:
      self.q_norm = nnx.LayerNorm(self.head_dim, dtype=dtype, rngs=rngs)
      # No bias on the normed keys: it would add q . b to every logit of a query alike, which
      # the softmax cancels, so its gradient is exactly 0 up to rounding, and Adam turns rounding
      # noise into +-lr steps (1-vs-8-device updates differed by 69% there, #11).
      self.k_norm = nnx.LayerNorm(self.head_dim, use_bias=False, dtype=dtype, rngs=rngs)
    else:
      self.q_norm = self.k_norm = None
    self.proj = linear(dim, dim, dtype=dtype, rngs=rngs)

  def __call__(self, x, valid, patch):
    """x: (b, m, c) serialised; valid: (b, m) bool, True on a prefix of each row (serialised
    order puts the valid entries first); patch: static int. Returns (b, m, c)."""
    b, m, c = x.shape
    p = min(patch, m)
    g = -(-m // p)
    pad = g * p - m
    x = jnp.pad(x, ((0, 0), (0, pad), (0, 0)))
    # Valid keys are a prefix of each patch: attention over the first `lengths` keys. A patch
    # without any valid key (pure padding) lets all its keys be seen: its (padding) queries then
    # get finite values with every kernel, and nothing valid is affected.
    lengths = jnp.sum(jnp.pad(valid, ((0, 0), (0, pad))).reshape(b * g, p), axis=1)
    lengths = jnp.where(lengths > 0, lengths, p).astype(jnp.int32)
    qkv = self.qkv(x).reshape(b * g, p, 3, self.num_heads, self.head_dim)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    if self.q_norm is not None:
      q, k = self.q_norm(q), self.k_norm(k)
    out = dot_product_attention(q, k.astype(q.dtype), v.astype(q.dtype),
                                implementation=self.attention, chunk=self.chunk,
                                key_lengths=lengths)
    out = self.proj(out.reshape(b, g * p, c).astype(x.dtype))
    return out[:, :m]


class Block(nnx.Module):
  """PTv3 block on one serialisation order (given by the caller as perm / inverse):
  x += CPE(x); x += attn(LN(x)); x += MLP(LN(x))."""

  def __init__(self, dim, num_heads, *, mlp_ratio, qk_norm, window, dtype, attention="auto",
               chunk=128, rngs: nnx.Rngs):
    self.cpe = SerializedCPE(dim, window=window, dtype=dtype, rngs=rngs)
    self.norm1 = nnx.LayerNorm(dim, dtype=dtype, rngs=rngs)
    self.attn = PatchAttention(dim, num_heads, qk_norm=qk_norm, attention=attention, chunk=chunk,
                               dtype=dtype, rngs=rngs)
    self.norm2 = nnx.LayerNorm(dim, dtype=dtype, rngs=rngs)
    hidden = int(dim * mlp_ratio)
    self.fc1 = linear(dim, hidden, dtype=dtype, rngs=rngs)
    self.fc2 = linear(hidden, dim, dtype=dtype, rngs=rngs)

  def __call__(self, x, coords, valid, perm, inverse, patch):
    """x: (b, m, c) slots; coords (b, m, 3); valid (b, m); perm/inverse (b, m) of this block's order.
    Returns (b, m, c) slots in the original slot order."""
    xs, cs, vs = take(x, perm), take(coords, perm), take(valid, perm)
    xs = xs + self.cpe(xs, cs, vs).astype(xs.dtype)
    xs = xs + self.attn(self.norm1(xs), vs, patch).astype(xs.dtype)
    xs = xs + self.fc2(jax.nn.gelu(self.fc1(self.norm2(xs)))).astype(xs.dtype)
    return take(xs, inverse)


class Proj(nnx.Module):
  """Linear -> LayerNorm -> GELU."""

  def __init__(self, din, dout, *, dtype, rngs: nnx.Rngs):
    self.linear = linear(din, dout, dtype=dtype, rngs=rngs)
    self.norm = nnx.LayerNorm(dout, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    return jax.nn.gelu(self.norm(self.linear(x)))


