"""Robust penalties on non-negative residual magnitudes, so that outlier tracks cannot dominate."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

KINDS = ("l2", "l1", "huber", "cauchy")


def robust_penalty(r, *, kind: str = "cauchy", scale=1.0):
  """Penalty rho(r) of a residual magnitude r >= 0 (any shape, same units as `scale`).

  All kinds behave like r^2 / 2 near 0 (except "l1"), so they agree for inliers:
    l2:     r^2 / 2
    l1:     r
    huber:  r^2 / 2 for r <= s, s (r - s / 2) beyond (linear growth)
    cauchy: s^2 / 2 log(1 + (r / s)^2) (logarithmic growth: an outlier's gradient decays as 1 / r)

  `scale` (s > 0) is a Python number or an array broadcastable against r (e.g. a jnp scalar),
  possibly traced: a traced scale lets one compiled function serve a whole schedule of scales
  (`jaxrecon.fit` anneals it) instead of recompiling for each. Only a concrete scale is checked
  (> 0); a traced one cannot be inspected and is trusted (s <= 0 gives inf / NaN penalties).
  """
  if kind not in KINDS:
    raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
  if not isinstance(scale, jax.core.Tracer) and np.any(np.asarray(scale) <= 0):
    raise ValueError(f"scale: expected > 0, got {scale}")
  if kind == "l2":
    return 0.5 * r * r
  if kind == "l1":
    return r
  if kind == "huber":
    return jnp.where(r <= scale, 0.5 * r * r, scale * (r - 0.5 * scale))
  return 0.5 * scale * scale * jnp.log1p((r / scale) ** 2)
