"""Serialisation of point clouds into 1-D orders (space-filling curves), as in Point Transformer V3.

Points are voxelised (`grid_coords`), each voxel gets an integer code along a space-filling curve
(`z_order`, `hilbert`, or their "transposed" variants with the x and y axes swapped), and sorting by
the code gives a 1-D order in which nearby entries are (mostly) nearby in space. Everything has fixed
shapes so it runs under jit: padding points are carried along with a `valid` mask and sorted last.

Codes are int32 so that the functions work with x64 disabled (the JAX default): with `bits` per axis
the code has 3 * bits bits, and `bits` is limited to `MAX_BITS` = 10 (30-bit codes, leaving the
int32 value 2^30 free as the sort key of padding). Coordinates outside [0, 2^bits) are clipped, so a
cloud wider than 2^bits voxels along an axis piles its far end onto the boundary voxels: the order is
still a valid permutation, only its locality degrades there. With 10 bits and a 2 cm grid the
lossless extent is 20.48 m per axis.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

MAX_BITS = 10
ORDERS = ("z", "z-trans", "hilbert", "hilbert-trans")
# Sort key of padding points: larger than every code (codes are < 2^(3 * MAX_BITS) = 2^30).
PAD_KEY = 1 << (3 * MAX_BITS)


def _check_bits(bits):
  if not isinstance(bits, int) or not 1 <= bits <= MAX_BITS:
    raise ValueError(f"bits must be an int in [1, {MAX_BITS}] (codes must fit in int32), got {bits!r}")


def grid_coords(xyz, valid, *, grid_size):
  """Voxel coordinates of points relative to the minimum corner of each cloud's valid points.

  Args:
    xyz: (..., n, 3) float positions in metres.
    valid: (..., n) bool; False marks padding rows (ignored by the minimum).
    grid_size: voxel side in metres (> 0).
  Returns:
    (..., n, 3) int32 voxel coordinates floor((xyz - min) / grid_size), >= 0 for valid points.
    Padding rows get 0. A cloud without valid points uses min = 0. Values are clipped to [0, 2^30]
    before the cast so that absurd extents cannot overflow int32.
  """
  if not grid_size > 0:
    raise ValueError(f"grid_size must be > 0 (metres), got {grid_size!r}")
  xyz = jnp.asarray(xyz, jnp.float32)
  valid = jnp.asarray(valid, bool)
  if xyz.shape[-1] != 3 or xyz.shape[:-1] != valid.shape:
    raise ValueError(f"xyz must be (..., n, 3) and valid (..., n); got {xyz.shape} and {valid.shape}")
  lo = jnp.min(jnp.where(valid[..., None], xyz, jnp.inf), axis=-2, keepdims=True)
  lo = jnp.where(jnp.isfinite(lo), lo, 0.0)
  g = jnp.floor((xyz - lo) / grid_size)
  g = jnp.clip(g, 0, float(PAD_KEY)).astype(jnp.int32)
  return jnp.where(valid[..., None], g, 0)


def _interleave(a, b, c, bits):
  """Bit interleaving: bit i of a, b, c goes to bit 3i+2, 3i+1, 3i of the result (a most significant
  within each triple). a, b, c: int32 arrays in [0, 2^bits). Returns int32."""
  code = jnp.zeros_like(a)
  for i in range(bits):
    code = code | (((a >> i) & 1) << (3 * i + 2)) | (((b >> i) & 1) << (3 * i + 1)) \
        | (((c >> i) & 1) << (3 * i))
  return code


def _clip_coords(coords, bits):
  coords = jnp.asarray(coords)
  if coords.shape[-1] != 3:
    raise ValueError(f"coords must be (..., 3), got shape {coords.shape}")
  return jnp.clip(coords.astype(jnp.int32), 0, (1 << bits) - 1)


def z_order(coords, *, bits=MAX_BITS):
  """Morton (z-order) codes.

  Args:
    coords: (..., 3) integer voxel coordinates (x, y, z); clipped to [0, 2^bits).
    bits: bits per axis, 1..10.
  Returns:
    (...) int32 codes in [0, 2^(3 bits)): bit i of x, y, z is bit 3i+2, 3i+1, 3i of the code.
  """
  _check_bits(bits)
  c = _clip_coords(coords, bits)
  return _interleave(c[..., 0], c[..., 1], c[..., 2], bits)


def hilbert(coords, *, bits=MAX_BITS):
  """3-D Hilbert curve codes (Skilling's transpose algorithm, "Programming the Hilbert curve", 2004).

  The codes are a bijection from the cube [0, 2^bits)^3 onto [0, 2^(3 bits)), and cells with
  consecutive codes share a face (the locality property that makes the curve useful).

  Args:
    coords: (..., 3) integer voxel coordinates (x, y, z); clipped to [0, 2^bits).
    bits: bits per axis, 1..10.
  Returns:
    (...) int32 codes in [0, 2^(3 bits)).
  """
  _check_bits(bits)
  c = _clip_coords(coords, bits)
  x = [c[..., 0], c[..., 1], c[..., 2]]
  # Inverse undo of the rotations/reflections, from the most significant bit down.
  q = 1 << (bits - 1)
  while q > 1:
    p = q - 1
    for i in range(3):
      bit = (x[i] & q) != 0
      if i == 0:
        x[0] = jnp.where(bit, x[0] ^ p, x[0])
        continue
      t = (x[0] ^ x[i]) & p
      x[0] = jnp.where(bit, x[0] ^ p, x[0] ^ t)
      x[i] = jnp.where(bit, x[i], x[i] ^ t)
    q >>= 1
  # Gray encode.
  x[1] = x[1] ^ x[0]
  x[2] = x[2] ^ x[1]
  t = jnp.zeros_like(x[0])
  q = 1 << (bits - 1)
  while q > 1:
    t = jnp.where((x[2] & q) != 0, t ^ (q - 1), t)
    q >>= 1
  x = [xi ^ t for xi in x]
  # The transposed form holds the index bits spread over the three axes, x[0] most significant.
  return _interleave(x[0], x[1], x[2], bits)


def encode(coords, *, order, bits=MAX_BITS):
  """Codes of `coords` (..., 3) int along the named order (one of `ORDERS`). The "-trans" variants
  swap the x and y axes before encoding (as PTv3 does) so that a second curve breaks the first one's
  seams in different places. Returns (...) int32."""
  if order not in ORDERS:
    raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
  coords = jnp.asarray(coords)
  if order.endswith("-trans"):
    coords = coords[..., jnp.array([1, 0, 2])]
  fn = z_order if order.startswith("z") else hilbert
  return fn(coords, bits=bits)


def sort_by_code(code, valid, tiebreak=None):
  """Stable sort permutation by code with padding last, and its inverse.

  Args:
    code: (..., n) int32 codes (< PAD_KEY).
    valid: (..., n) bool; padding entries sort after every valid entry.
    tiebreak: optional (..., n, t) float secondary keys (e.g. positions) that order entries with equal
      codes, so the order does not depend on the input order (exact duplicates fall back to the
      input index).
  Returns:
    perm: (..., n) int32 with sorted = take_along_axis(x, perm); inverse: (..., n) int32 with
    x = take_along_axis(sorted, inverse).
  """
  key = jnp.where(valid, code.astype(jnp.int32), PAD_KEY)
  iota = jax.lax.broadcasted_iota(jnp.int32, key.shape, key.ndim - 1)
  keys = [key]
  if tiebreak is not None:
    keys += [jnp.where(valid, tiebreak[..., i], 0.0) for i in range(tiebreak.shape[-1])]
  out = jax.lax.sort(tuple(keys) + (iota,), dimension=key.ndim - 1, is_stable=True,
                     num_keys=len(keys))
  perm = out[-1]
  # Inverse permutation: scatter the iota through perm (O(n), no second sort).
  inverse = jnp.put_along_axis(jnp.zeros_like(perm), perm, iota, axis=-1, inplace=False)
  return perm, inverse


def serialize(xyz, valid, *, grid_size, order, bits=MAX_BITS):
  """Order points by their voxel's code along a space-filling curve.

  Args:
    xyz: (..., n, 3) float positions in metres.
    valid: (..., n) bool; padding rows sort last.
    grid_size: voxel side in metres.
    order: one of "z", "z-trans", "hilbert", "hilbert-trans".
    bits: bits per axis of the code, 1..10 (voxel coordinates beyond 2^bits - 1 are clipped).
  Returns:
    perm: (..., n) int32, sorted = take_along_axis(xyz, perm[..., None], axis=-2): valid points by
      increasing code, points of one voxel ordered by position (x, then y, then z), padding last.
    inverse: (..., n) int32, the inverse permutation.
  """
  coords = grid_coords(xyz, valid, grid_size=grid_size)
  code = encode(coords, order=order, bits=bits)
  return sort_by_code(code, valid, jnp.asarray(xyz, jnp.float32))
