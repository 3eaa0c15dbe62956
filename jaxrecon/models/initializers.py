"""Parameter initialisers whose random draws compile once per size bucket, not once per shape.

A model built eagerly runs every initialiser as its own XLA program, compiled for that exact shape.
The random-number code (threefry hashing plus the inverse-erf of a truncated normal) takes about
0.3 s to compile on 2 CPU cores, and a model has dozens of distinct parameter shapes: building the
tiny SegFormer cost 30 s, 24 of them compiling 64 truncated normals. Here the draw is made for a
flat vector whose length is the parameter's size rounded up to a power of two (at least 4096; past
2^20, to a multiple of 2^20), and the parameter is its first `size` entries, reshaped and scaled:
the costly program is compiled once per bucket, and what is compiled per shape is a slice and a
multiply. Under jax.jit or jax.vmap (`models.stack.stacked`) the same functions run inside the
caller's program, with the same values. `linear` and `conv` build nnx's layers with these draws.

The distributions are the usual ones (flax / jax.nn.initializers semantics): `variance_scaling`
with fans taken from the last two axes times the receptive field (kernel axes), `lecun_normal`
(nnx.Linear's and nnx.Conv's default), `truncated_normal` and `normal` with a fixed deviation.
The values differ from jax.nn.initializers' for the same key (another draw of the same law).
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

Initializer = Callable[..., jax.Array]

_MIN_BUCKET = 4096
_MAX_POW2 = 2 ** 20
# Standard deviation of a standard normal truncated to (-2, 2): scales a truncated draw to unit
# variance.
_TRUNCATED_STD = 0.87962566103423978


def _bucket(size: int) -> int:
  """A power of two of at least _MIN_BUCKET up to 2^20; beyond, the next multiple of 2^20 (a big
  parameter's draw costs more to run than to compile)."""
  if size > _MAX_POW2:
    return -(-size // _MAX_POW2) * _MAX_POW2
  return max(_MIN_BUCKET, 1 << max(size - 1, 0).bit_length())


@functools.partial(jax.jit, static_argnames=("size", "truncated"))
def _standard(key, *, size: int, truncated: bool) -> jax.Array:
  """(size,) float32 standard normal draws, truncated to (-2, 2) when `truncated`."""
  if truncated:
    return jax.random.truncated_normal(key, -2.0, 2.0, (size,), jnp.float32)
  return jax.random.normal(key, (size,), jnp.float32)


@functools.partial(jax.jit, static_argnames=("shape", "dtype"))
def _shaped(flat, scale, *, shape: tuple[int, ...], dtype) -> jax.Array:
  return (flat[:math.prod(shape)].reshape(shape) * scale).astype(dtype)


def _draw(key, shape, dtype, scale: float, truncated: bool) -> jax.Array:
  shape = tuple(int(s) for s in shape)
  flat = _standard(key, size=_bucket(math.prod(shape)), truncated=truncated)
  return _shaped(flat, jnp.float32(scale), shape=shape, dtype=jnp.dtype(dtype))


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
  """(fan_in, fan_out) of a weight (..., in, out): the kernel axes multiply both."""
  if len(shape) < 2:
    raise ValueError(f"variance_scaling: a weight needs at least 2 axes, got shape {shape}")
  receptive = math.prod(shape[:-2])
  return shape[-2] * receptive, shape[-1] * receptive


def variance_scaling(scale: float, mode: str = "fan_in",
                     distribution: str = "truncated_normal") -> Initializer:
  """Draws with variance scale / fan ("fan_in", "fan_out" or "fan_avg") from a normal
  ("normal") or a normal truncated at 2 standard deviations and rescaled to that variance
  ("truncated_normal"). Weight shape (..., in, out): leading axes are the kernel's."""
  if mode not in ("fan_in", "fan_out", "fan_avg"):
    raise ValueError(f"variance_scaling: mode must be fan_in, fan_out or fan_avg, got {mode!r}")
  if distribution not in ("truncated_normal", "normal"):
    raise ValueError("variance_scaling: distribution must be truncated_normal or normal, got "
                     f"{distribution!r}")
  truncated = distribution == "truncated_normal"

  def init(key, shape, dtype=jnp.float32):
    fan_in, fan_out = _fans(tuple(shape))
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    std = math.sqrt(scale / fan) / (_TRUNCATED_STD if truncated else 1.0)
    return _draw(key, shape, dtype, std, truncated)
  return init


def lecun_normal() -> Initializer:
  """Truncated normal with variance 1 / fan_in (nnx.Linear's and nnx.Conv's default law)."""
  return variance_scaling(1.0, "fan_in", "truncated_normal")


def truncated_normal(stddev: float) -> Initializer:
  """stddev times a standard normal truncated to (-2, 2) (not rescaled)."""
  return lambda key, shape, dtype=jnp.float32: _draw(key, shape, dtype, stddev, True)


def normal(stddev: float) -> Initializer:
  """A normal with standard deviation `stddev`."""
  return lambda key, shape, dtype=jnp.float32: _draw(key, shape, dtype, stddev, False)


# The default kernel initialiser of jaxrecon.models' Linear and Conv layers.
LECUN = lecun_normal()


def linear(in_features: int, out_features: int, **kwargs) -> nnx.Linear:
  """nnx.Linear whose kernel is drawn by `LECUN` (nnx's default law, bucketed) unless kwargs give
  another kernel_init; every other argument as nnx.Linear's."""
  return nnx.Linear(in_features, out_features, **{"kernel_init": LECUN, **kwargs})


def conv(in_features: int, out_features: int, kernel_size, *args, **kwargs) -> nnx.Conv:
  """nnx.Conv whose kernel is drawn by `LECUN` unless kwargs give another kernel_init; every
  other argument as nnx.Conv's."""
  return nnx.Conv(in_features, out_features, kernel_size, *args,
                  **{"kernel_init": LECUN, **kwargs})
