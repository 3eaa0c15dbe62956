"""Robust penalties on non-negative residual magnitudes, so that outlier tracks cannot dominate."""
from __future__ import annotations

import jax.numpy as jnp

KINDS = ("l2", "l1", "huber", "cauchy")


def robust_penalty(r, *, kind: str = "cauchy", scale: float = 1.0):
  """Penalty rho(r) of a residual magnitude r >= 0 (any shape, same units as `scale`).

  All kinds behave like r^2 / 2 near 0 (except "l1"), so they agree for inliers:
    l2:     r^2 / 2
    l1:     r
    huber:  r^2 / 2 for r <= s, s (r - s / 2) beyond (linear growth)
    cauchy: s^2 / 2 log(1 + (r / s)^2) (logarithmic growth: an outlier's gradient decays as 1 / r)
  """
  if kind not in KINDS:
    raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
  if scale <= 0:
    raise ValueError(f"scale: expected > 0, got {scale}")
  if kind == "l2":
    return 0.5 * r * r
  if kind == "l1":
    return r
  if kind == "huber":
    return jnp.where(r <= scale, 0.5 * r * r, scale * (r - 0.5 * scale))
  return 0.5 * scale * scale * jnp.log1p((r / scale) ** 2)
