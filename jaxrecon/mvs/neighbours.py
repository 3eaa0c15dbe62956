"""Which views to match against each reference view, and the depth range to sweep there.

Both read a set of world points: the sparse points of a reconstruction when there are some, else
`frustum_points` spread through every camera's viewing frustum between a given near and far, so
the same scoring serves calibrated rigs with and without a sparse model.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxrecon.geometry import camera_centers, project, unproject


def _visible(points, intrinsics, cam_from_world, image_size):
  """(v, n) bool: point in front of view v and inside its image; (v, n) camera z."""
  h, w = image_size
  pix, z = project(points[None], intrinsics, cam_from_world)
  inside = ((pix[..., 0] >= -0.5) & (pix[..., 0] <= w - 0.5)
            & (pix[..., 1] >= -0.5) & (pix[..., 1] <= h - 0.5))
  return inside & (z > 0), z


@functools.partial(jax.jit, static_argnames=("image_size", "grid", "layers"))
def frustum_points(intrinsics, cam_from_world, near, far, *, image_size, grid=8, layers=3):
  """Stand-in sparse points when a scene has none: a grid of pixels of every view, lifted to
  `layers` depths at the centres of `layers` equal steps of log depth between near and far.

  The ends of the range are left out on purpose: points right in front of one camera see every
  other camera under a wide angle and would make distant views look like good partners.

  Args:
    intrinsics: (v, 3, 3) K; cam_from_world: (v, 4, 4) extrinsics.
    near, far: scalars, 0 < near < far, camera z in world units.
    image_size: (h, w) static; grid: pixels per image axis; layers: depths per pixel.
  Returns:
    (v * layers * grid * grid, 3) world points.
  """
  h, w = image_size
  us = (jnp.arange(grid) + 0.5) * (w / grid) - 0.5
  vs = (jnp.arange(grid) + 0.5) * (h / grid) - 0.5
  pix = jnp.stack(jnp.meshgrid(us, vs, indexing="xy"), -1).reshape(-1, 2)
  t = (jnp.arange(layers) + 0.5) / layers
  depths = jnp.exp((1.0 - t) * jnp.log(near) + t * jnp.log(far))
  world_from_cam = jnp.linalg.inv(cam_from_world)
  pts = jax.vmap(lambda d: unproject(pix[None], jnp.full((1, pix.shape[0]), d), intrinsics,
                                     world_from_cam))(depths)        # (layers, v, g*g, 3)
  return pts.reshape(-1, 3)


@functools.partial(jax.jit, static_argnames=("image_size",))
def pair_weights(points, intrinsics, cam_from_world, *, image_size, observed=None,
                 peak_degrees=8.0, low_sigma_degrees=None, high_sigma_degrees=15.0):
  """What each point adds to each view pair: G(angle) where both views see it, else 0.

  G is a function of the angle at the point between the two camera centres: a Gaussian around
  `peak_degrees`, narrow below it (small baselines give depth that hypotheses cannot resolve) and
  wide above it (wide baselines still match, only less reliably as appearance changes).

  Args:
    points: (n, 3) world points; intrinsics: (v, 3, 3) K; cam_from_world: (v, 4, 4).
    image_size: (h, w) static, pixels.
    observed: optional (n, v) bool, the views that observed each point (a sparse model's
      inliers); a pair then counts only the points both observed and both see by projection.
    peak_degrees, low_sigma_degrees, high_sigma_degrees: shape of G, degrees (low_sigma_degrees
      None: 3/8 of the peak, 3 degrees for the default peak of 8).
  Returns:
    (v, v, n) float weights in [0, 1], 0 on the diagonal (a view is never its own neighbour).
  """
  visible, _ = _visible(points, intrinsics, cam_from_world, image_size)
  if observed is not None:
    visible = visible & jnp.asarray(observed, bool).T
  rays = points[None] - camera_centers(cam_from_world)[:, None]
  rays = rays / jnp.maximum(jnp.linalg.norm(rays, axis=-1, keepdims=True), 1e-12)
  cos = jnp.einsum("inc,jnc->ijn", rays, rays)
  angle = jnp.rad2deg(jnp.arccos(jnp.clip(cos, -1.0, 1.0)))
  if low_sigma_degrees is None:
    low_sigma_degrees = 0.375 * peak_degrees
  sigma = jnp.where(angle < peak_degrees, low_sigma_degrees, high_sigma_degrees)
  weight = jnp.exp(-0.5 * ((angle - peak_degrees) / sigma) ** 2)
  v = visible.shape[0]
  both = visible[:, None, :] & visible[None, :, :] & ~jnp.eye(v, dtype=bool)[..., None]
  return jnp.where(both, weight, 0.0)


def view_scores(points, intrinsics, cam_from_world, *, image_size, **shape):
  """(v, v) co-visibility score of every view pair weighted by triangulation angle: the sum over
  the points of `pair_weights` (same arguments), 0 on the diagonal."""
  return jnp.sum(pair_weights(points, intrinsics, cam_from_world, image_size=image_size, **shape),
                 -1)


@functools.partial(jax.jit, static_argnames=("num",))
def select_neighbours(scores, *, num):
  """The `num` best-scoring other views of each view.

  Args:
    scores: (v, v) from `view_scores` (diagonal ignored).
    num: N, static, 1 <= N <= v - 1.
  Returns:
    indices: (v, N) int32 neighbour views, best first; score: (v, N) their scores.
  """
  v = scores.shape[0]
  masked = jnp.where(jnp.eye(v, dtype=bool), -jnp.inf, scores)
  score, idx = jax.lax.top_k(masked, num)
  return idx.astype(jnp.int32), score


@functools.partial(jax.jit, static_argnames=("num", "cover"))
def select_covering_neighbours(weights, *, num, cover):
  """Neighbours chosen greedily so that every point of the reference view is seen by `cover` of
  them before any point counts a further time.

  The plain best-scoring views can all look at the same part of the reference image: on a camera
  driving ahead, the points that many views share are the distant ones near the focus of
  expansion, and views seconds apart score highest on them (wide angle) while they miss the near
  structure at the image's borders, which only the next few frames see. Counting a point only
  until `cover` chosen views see it (the top-k of the cost needs that many) makes later picks go
  to the views that see the rest (a greedy set cover, as in Goesele et al., ICCV 2007, whose view
  selection also rewards views that add what the chosen ones lack).

  Args:
    weights: (v, v, n) from `pair_weights`: [reference, candidate, point].
    num: N, static, 1 <= N <= v - 1; cover: views per point that count, static >= 1.
  Returns:
    indices: (v, N) int32 neighbour views in the order chosen; gain: (v, N) what each pick added.
  """
  v = weights.shape[0]

  def one(w, ref):
    chosen = jnp.zeros(v, bool).at[ref].set(True)
    covered = jnp.zeros(w.shape[1], jnp.int32)
    # Points already covered still break ties, a million times weaker, so that a reference whose
    # points are all covered keeps picking by the plain score.
    total = jnp.sum(w, -1)
    picks, gains = [], []
    for _ in range(num):
      gain = jnp.sum(jnp.where(covered < cover, w, 0.0), -1)
      j = jnp.argmax(jnp.where(chosen, -jnp.inf, gain + 1e-6 * total))
      chosen = chosen.at[j].set(True)
      covered = covered + (w[j] > 0)
      picks.append(j)
      gains.append(gain[j])
    return jnp.stack(picks).astype(jnp.int32), jnp.stack(gains)

  return jax.vmap(one)(weights, jnp.arange(v))


@functools.partial(jax.jit, static_argnames=("image_size",))
def depth_ranges(points, intrinsics, cam_from_world, *, image_size, low_percentile=1.0,
                 high_percentile=99.0, margin=0.25):
  """Near and far depth of each view from the points it sees.

  The percentiles drop stray points (outlier tracks), the margin widens the range in inverse
  depth so that surfaces just beyond the sparse points are still swept. A view that sees no point
  takes the range of all views' points.

  Args:
    points: (n, 3) world points; intrinsics: (v, 3, 3); cam_from_world: (v, 4, 4).
    image_size: (h, w) static; low_percentile, high_percentile: in [0, 100];
    margin: fraction of the range's inverse-depth span added on both ends.
  Returns:
    (v, 2) (near, far) camera z in world units, 0 < near < far.
  """
  visible, z = _visible(points, intrinsics, cam_from_world, image_size)
  zs = jnp.where(visible, z, jnp.nan)
  lo = jnp.nanpercentile(zs, low_percentile, axis=-1)
  hi = jnp.nanpercentile(zs, high_percentile, axis=-1)
  lo = jnp.where(jnp.isfinite(lo), lo, jnp.nanpercentile(zs, low_percentile))
  hi = jnp.where(jnp.isfinite(hi), hi, jnp.nanpercentile(zs, high_percentile))
  inv_near, inv_far = 1.0 / jnp.maximum(lo, 1e-6), 1.0 / jnp.maximum(hi, 1e-6)
  span = jnp.maximum(inv_near - inv_far, 1e-3 * inv_near)
  # The far end is kept at positive inverse depth: a plane at infinity is not a depth.
  inv_far = jnp.maximum(inv_far - margin * span, 0.05 * inv_far)
  inv_near = inv_near + margin * span
  return jnp.stack([1.0 / inv_near, 1.0 / inv_far], -1)
