"""Numerically safe primitives (double-where), shared by geometry and losses.

Each keeps both the value and the gradient finite where the naive expression has a singularity:
the unsafe branch is evaluated on a harmless substitute input, so no NaN or inf reaches the
backward pass through `jnp.where`.
"""
from __future__ import annotations

import jax.numpy as jnp


def as_float(x):
  """x as an array of its floating dtype, at least float32 (ints and bf16/f16 are upcast)."""
  x = jnp.asarray(x)
  return x.astype(jnp.promote_types(jnp.result_type(x, float), jnp.float32))


def safe_norm(x, axis=-1, keepdims=False, eps=1e-12):
  """Euclidean norm with gradient 0 (not NaN) at x = 0. x: (..., d) -> (...)."""
  sq = jnp.sum(x * x, axis=axis, keepdims=keepdims)
  ok = sq > eps * eps
  return jnp.where(ok, jnp.sqrt(jnp.where(ok, sq, 1.0)), 0.0)


def safe_normalize(x, axis=-1, eps=1e-12):
  """x / |x|, and 0 where |x| <= eps (with zero gradient there)."""
  sq = jnp.sum(x * x, axis=axis, keepdims=True)
  ok = sq > eps * eps
  return jnp.where(ok, x * jnp.where(ok, jnp.reciprocal(jnp.sqrt(jnp.where(ok, sq, 1.0))), 0.0), 0.0)


def safe_div(num, den, eps=1e-12):
  """num / den where |den| > eps, else 0; gradients finite everywhere."""
  ok = jnp.abs(den) > eps
  return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def masked_mean(x, mask, axis=None, keepdims=False):
  """Mean of x over entries with mask > 0 (mask may be float weights); 0 when the mask is empty.

  Never uses boolean indexing, so shapes stay static under jit. Entries with mask 0 may hold NaN
  or inf: they are replaced before the multiply so they cannot poison the value or gradient.
  """
  mask = jnp.asarray(mask, x.dtype) if not jnp.issubdtype(jnp.asarray(mask).dtype, jnp.floating) \
      else jnp.asarray(mask)
  x = jnp.where(mask > 0, x, 0.0)
  total = jnp.sum(x * mask, axis=axis, keepdims=keepdims)
  count = jnp.sum(mask, axis=axis, keepdims=keepdims)
  return safe_div(total, count)
