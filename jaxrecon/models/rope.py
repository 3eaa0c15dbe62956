"""2D rotary position embedding (RoPE) on a patch grid, with position-free register tokens.

Each head of size hd is split in two halves: the first half encodes the patch row, the second the
patch column, each as hd/4 (cos, sin) rotation pairs with frequencies base^(-k / (hd/4)). Register
tokens get the identity rotation (cos 1, sin 0): they carry no position.

The tables depend only on the grid shape, never on the view index, so every view uses the same
tables and the network stays permutation-equivariant over views.
"""
from __future__ import annotations

import jax.numpy as jnp


def rope_tables(grid_h, grid_w, num_registers, head_dim, *, base=100.0, dtype=jnp.float32):
  """Cos/sin tables for the tokens of one view: registers first, then patches in row-major order.

  Args:
    grid_h, grid_w: patch grid size (static ints).
    num_registers: number of register tokens in front of the patch tokens (static int).
    head_dim: per-head width, divisible by 4.
    base: frequency base; positions are in patch units.
    dtype: dtype of the tables.
  Returns:
    (cos, sin), each (num_registers + grid_h * grid_w, head_dim / 2): the angles for the hd/2
    rotation pairs, first hd/4 pairs from the row index, last hd/4 from the column index.
  """
  if head_dim % 4:
    raise ValueError(f"head_dim must be divisible by 4, got {head_dim}")
  quarter = head_dim // 4
  # Computed in float32 regardless of the compute dtype: angles up to grid_size rad need the bits.
  freqs = base ** (-jnp.arange(quarter, dtype=jnp.float32) / quarter)          # (hd/4,)
  rows, cols = jnp.meshgrid(jnp.arange(grid_h, dtype=jnp.float32),
                            jnp.arange(grid_w, dtype=jnp.float32), indexing="ij")
  angles = jnp.concatenate([rows.reshape(-1, 1) * freqs, cols.reshape(-1, 1) * freqs], -1)
  angles = jnp.concatenate([jnp.zeros((num_registers, 2 * quarter), jnp.float32), angles], 0)
  return jnp.cos(angles).astype(dtype), jnp.sin(angles).astype(dtype)


def apply_rope(x, cos, sin):
  """Rotates consecutive feature pairs (x[2i], x[2i+1]) of every head by the table angles.

  Args:
    x: (..., n, heads, head_dim) queries or keys.
    cos, sin: (n, head_dim / 2) from `rope_tables` (tiled over views for global attention).
  Returns:
    (..., n, heads, head_dim), same dtype as x.
  """
  pairs = x.reshape(x.shape[:-1] + (x.shape[-1] // 2, 2))
  x0, x1 = pairs[..., 0], pairs[..., 1]
  c = cos[:, None, :].astype(x.dtype)  # broadcast over heads
  s = sin[:, None, :].astype(x.dtype)
  out = jnp.stack([x0 * c - x1 * s, x0 * s + x1 * c], -1)
  return out.reshape(x.shape)
