"""Procedural solid textures and the sky (pure jnp, one point at a time; vmap for more).

Textures are functions of the 3D world point (solid textures), so a surface point has the same
albedo in every view: with Lambertian shading this makes the rendered colour view-independent,
which is what photometric consistency (and a matcher) relies on.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

_OCTAVES = 4


def _hash(ix, iy, iz, seed):
  """Integer lattice hash -> uniform value in [0, 1) (float32). All inputs uint32, any shape.

  Integer (not sin-based) hashing: bit-exact on every backend and at any coordinate magnitude.
  """
  u = lambda c: jnp.uint32(c)      # explicit: Python ints above 2**31 do not convert implicitly
  h = ix * u(0x8DA6B343) ^ iy * u(0xD8163841) ^ iz * u(0xCB1AB31F) ^ seed
  h = h ^ (h >> u(16))
  h = h * u(0x7FEB352D)
  h = h ^ (h >> u(15))
  h = h * u(0x846CA68B)
  h = h ^ (h >> u(16))
  return (h >> u(8)).astype(jnp.float32) * (1.0 / (1 << 24))


def _to_uint(x):
  """int32 lattice coordinate -> uint32 with the same bits (negative coordinates wrap)."""
  return jax.lax.bitcast_convert_type(x.astype(jnp.int32), jnp.uint32)


def value_noise(q, seed):
  """Trilinear value noise with a smoothstep fade: q (3,) texture coordinates -> () in [0, 1)."""
  cell = jnp.floor(q)
  f = q - cell
  f = f * f * (3.0 - 2.0 * f)
  i = _to_uint(cell)
  corners = jnp.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], jnp.uint32)
  ijk = i[None, :] + corners                                   # (8, 3)
  vals = _hash(ijk[:, 0], ijk[:, 1], ijk[:, 2], seed).reshape(2, 2, 2)
  vals = vals[0] * (1 - f[0]) + vals[1] * f[0]
  vals = vals[0] * (1 - f[1]) + vals[1] * f[1]
  return vals[0] * (1 - f[2]) + vals[1] * f[2]


def fbm(q, seed):
  """Fractal sum of _OCTAVES value-noise octaves (lacunarity 2, gain 0.6), normalised to [0, 1)."""
  total, amp, norm = 0.0, 1.0, 0.0
  for k in range(_OCTAVES):       # static unroll: a fixed small number of octaves
    total = total + amp * value_noise(q * (2.0**k), seed + jnp.uint32(k * 7919))
    norm += amp
    amp *= 0.6
  return total / norm


def albedo(p, colour_a, colour_b, frequency, checker, offset, seed):
  """Albedo of a surface point.

  Args:
    p: (3,) world point (metres).
    colour_a, colour_b: (3,) RGB ends of the colour ramp; frequency: () cells per metre;
    checker: () weight of a 3D checker in [0, 1]; offset: (3,) texture shift; seed: () uint32.
  Returns:
    (3,) RGB in [0, 1]: the ramp at a contrast-stretched fBm value mixed with a checker whose cells
    are two noise cells wide (blobs and corners: both give keypoints).
  """
  q = p * frequency + offset
  noise = jnp.clip((fbm(q, seed) - 0.5) * 3.0 + 0.5, 0.0, 1.0)
  parity = (jnp.sum(jnp.floor(q * 0.5)).astype(jnp.int32) % 2).astype(q.dtype)
  value = (1.0 - checker) * noise + checker * (0.15 + 0.7 * parity)
  return colour_a + (colour_b - colour_a) * value


def sky(d, zenith, horizon):
  """Sky colour seen along direction d (3,) (any length): a gradient from horizon to zenith with
  elevation, darkening a little below the horizon. Returns (3,) RGB in [0, 1]."""
  elevation = d[2] / jnp.maximum(jnp.linalg.norm(d), 1e-12)
  up = jnp.sqrt(jnp.clip(elevation, 0.0, 1.0))
  down = jnp.clip(-elevation, 0.0, 1.0)
  return (horizon + (zenith - horizon) * up) * (1.0 - 0.4 * down)
