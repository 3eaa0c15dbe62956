"""From a cost volume to depth: hypotheses, winner-take-all with parabolic sub-hypothesis
refinement, a confidence from the cost profile, and a light median filter.

Depth is camera-frame z of the reference view in world units; hypotheses are inverse depths
(world units^-1), evenly spaced, so that equal steps are equal disparities in every neighbour.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def inverse_depth_hypotheses(near, far, num):
  """(num,) inverse depths evenly spaced from 1 / near down to 1 / far (world units^-1).

  Args:
    near, far: scalars or (...) arrays, 0 < near < far, world units; num: D >= 2, static.
  Returns:
    (..., D) inverse depths, decreasing.
  """
  t = jnp.linspace(0.0, 1.0, num)
  near, far = jnp.asarray(near)[..., None], jnp.asarray(far)[..., None]
  return (1.0 - t) / near + t / far


def interior_index(index, num):
  """True where a best hypothesis index has a neighbour on both sides (not 0, not num - 1)."""
  return (index > 0) & (index < num - 1)


@jax.jit
def winner_take_all(cost, inv_depths):
  """Best hypothesis per pixel, refined between hypotheses, and how trustworthy it is.

  The refinement fits a parabola through the best cost and its two neighbours in the profile
  (offset clipped to half a step; none at the ends of the range, where the minimum may lie
  outside it). The confidence is (1 - best cost) times the distinctiveness (c2 - c1) / c2, where
  c2 is the lowest cost more than two hypotheses away from the best: a flat profile (no texture,
  nothing seen) or a repeated pattern (a second, equally good minimum) gives a value near 0, and a
  winner at either end of the range gets 0.

  Args:
    cost: (D, h, w) cost volume, lower is better (1 - ZNCC in [0, 2]).
    inv_depths: (D,) evenly spaced inverse depths of the hypotheses, or (D, h, w), evenly spaced
      at every pixel.
  Returns:
    dict of (h, w) arrays: "depth" (world units), "inv_depth", "best_cost", "confidence" in [0, 1],
    "index" (int32, best hypothesis).
  """
  num = cost.shape[0]
  best = jnp.argmin(cost, axis=0)
  take = lambda i: jnp.take_along_axis(cost, jnp.clip(i, 0, num - 1)[None], 0)[0]
  c0, cm, cp = take(best), take(best - 1), take(best + 1)
  curvature = cm - 2.0 * c0 + cp
  interior = interior_index(best, num) & (curvature > 1e-6)
  offset = jnp.where(interior, 0.5 * (cm - cp) / jnp.where(interior, curvature, 1.0), 0.0)
  offset = jnp.clip(offset, -0.5, 0.5)
  inv_depths = jnp.broadcast_to(
      jnp.reshape(inv_depths, inv_depths.shape + (1,) * (3 - inv_depths.ndim)), cost.shape)
  step = (inv_depths[-1] - inv_depths[0]) / (num - 1)
  inv_depth = jnp.take_along_axis(inv_depths, best[None], 0)[0] + offset * step
  far_from_best = jnp.abs(jnp.arange(num)[:, None, None] - best[None]) > 2
  c2 = jnp.min(jnp.where(far_from_best, cost, jnp.inf), axis=0)
  c2 = jnp.where(jnp.isfinite(c2), c2, c0)
  distinct = jnp.clip((c2 - c0) / jnp.maximum(c2, 1e-6), 0.0, 1.0)
  # A winner at either end of the range is no located minimum: the true one may lie beyond it
  # (sky, and any surface outside the swept range, wins at the far end), so it gets no trust.
  confidence = jnp.where(interior_index(best, num), jnp.clip(1.0 - c0, 0.0, 1.0) * distinct, 0.0)
  inv_depth = jnp.maximum(inv_depth, 1e-12)
  return {"depth": 1.0 / inv_depth, "inv_depth": inv_depth, "best_cost": c0,
          "confidence": confidence, "index": best.astype(jnp.int32)}


def refinement_hypotheses(inv_depth, step, num):
  """(num, h, w) inverse depths spanning one coarse step either side of each pixel's estimate.

  A second, per-pixel sweep over them resolves depth num / 2 times finer than the coarse sweep
  for num / D of its cost; the coarse parabola alone is biased towards the hypotheses.

  Args:
    inv_depth: (h, w) first estimate; step: scalar coarse hypothesis spacing (signed);
    num: hypotheses, static, >= 3.
  Returns:
    (num, h, w) evenly spaced inverse depths, all > 0.
  """
  offsets = jnp.linspace(-1.0, 1.0, num)[:, None, None] * jnp.abs(step)
  return jnp.maximum(inv_depth[None] + offsets, 1e-6)


@jax.jit
def median_filter(inv_depth, mask):
  """3 x 3 median of the inverse depth over the masked neighbours of each pixel.

  Removes isolated wrong winners (speckle) without blurring depth edges the way a mean would;
  unmasked (untrusted) neighbours take no part, so a textureless region does not pull a textured
  edge next to it.

  Args:
    inv_depth: (h, w) inverse depth; mask: (h, w) bool, pixels whose depth may be used.
  Returns:
    (h, w) filtered inverse depth (unchanged where no pixel of the window is masked).
  """
  h, w = inv_depth.shape
  windows = lambda x: jnp.stack([jnp.pad(x, 1, mode="edge")[i:i + h, j:j + w]
                                 for i in range(3) for j in range(3)])
  stack, ok = windows(inv_depth), windows(mask)
  # Untrusted entries sort to the end as +inf and the median index counts the trusted ones only.
  ordered = jnp.sort(jnp.where(ok, stack, jnp.inf), axis=0)
  count = jnp.sum(ok, axis=0)
  med = jnp.take_along_axis(ordered, jnp.maximum((count - 1) // 2, 0)[None], 0)[0]
  return jnp.where(count > 0, med, inv_depth)
