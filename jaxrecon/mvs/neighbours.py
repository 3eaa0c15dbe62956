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


def _angle_weight(angle, peak_degrees, low_sigma_degrees, high_sigma_degrees):
  """G(angle) of `pair_weights` (degrees in, weights in [0, 1] out)."""
  if low_sigma_degrees is None:
    low_sigma_degrees = 0.375 * peak_degrees
  sigma = jnp.where(angle < peak_degrees, low_sigma_degrees, high_sigma_degrees)
  return jnp.exp(-0.5 * ((angle - peak_degrees) / sigma) ** 2)


def _scene_rays(points, intrinsics, cam_from_world, image_size, observed):
  """(v, n) bool points each view sees (and observed, if given); (v, n, 3) unit rays from each
  camera centre to each point."""
  visible, _ = _visible(points, intrinsics, cam_from_world, image_size)
  if observed is not None:
    visible = visible & jnp.asarray(observed, bool).T
  rays = points[None] - camera_centers(cam_from_world)[:, None]
  return visible, rays / jnp.maximum(jnp.linalg.norm(rays, axis=-1, keepdims=True), 1e-12)


def _reference_weights(ref, visible, rays, shape):
  """(v, n) `pair_weights` of reference view `ref` with every view (0 for ref itself)."""
  cos = jnp.einsum("nc,jnc->jn", rays[ref], rays)
  weight = _angle_weight(jnp.rad2deg(jnp.arccos(jnp.clip(cos, -1.0, 1.0))), **shape)
  both = visible[ref][None] & visible & (jnp.arange(visible.shape[0]) != ref)[:, None]
  return jnp.where(both, weight, 0.0)


def _per_reference(fn, points, intrinsics, cam_from_world, image_size, observed, shape):
  """fn(ref, (v, n) weights of ref) stacked over the references, one reference at a time (lax.map):
  memory O(v n), where all the pairs' weights at once are (v, v, n) (300 frames x 4096 points:
  1.5 GB per array in float32)."""
  visible, rays = _scene_rays(points, intrinsics, cam_from_world, image_size, observed)
  return jax.lax.map(lambda ref: fn(ref, _reference_weights(ref, visible, rays, shape)),
                     jnp.arange(visible.shape[0]))


@functools.partial(jax.jit, static_argnames=("image_size",))
def pair_weights(points, intrinsics, cam_from_world, *, image_size, observed=None,
                 peak_degrees=8.0, low_sigma_degrees=None, high_sigma_degrees=15.0):
  """What each point adds to each view pair: G(angle) where both views see it, else 0.

  G is a function of the angle at the point between the two camera centres: a Gaussian around
  `peak_degrees`, narrow below it (small baselines give depth that hypotheses cannot resolve) and
  wide above it (wide baselines still match, only less reliably as appearance changes).
  (v, v, n) at once: `view_scores` and `covering_neighbours` use it one reference at a time.

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
  shape = dict(peak_degrees=peak_degrees, low_sigma_degrees=low_sigma_degrees,
               high_sigma_degrees=high_sigma_degrees)
  return _per_reference(lambda ref, w: w, points, intrinsics, cam_from_world, image_size,
                        observed, shape)


@functools.partial(jax.jit, static_argnames=("image_size",))
def view_scores(points, intrinsics, cam_from_world, *, image_size, observed=None,
                peak_degrees=8.0, low_sigma_degrees=None, high_sigma_degrees=15.0):
  """(v, v) co-visibility score of every view pair weighted by triangulation angle: the sum over
  the points of `pair_weights` (same arguments), 0 on the diagonal; memory O(v n)."""
  shape = dict(peak_degrees=peak_degrees, low_sigma_degrees=low_sigma_degrees,
               high_sigma_degrees=high_sigma_degrees)
  return _per_reference(lambda ref, w: jnp.sum(w, -1), points, intrinsics, cam_from_world,
                        image_size, observed, shape)


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


def _cover(w, ref, num, cover):
  """Greedy covering choice of one reference: w (v, n) its pair weights; (N,) picks, (N,) gains."""
  v = w.shape[0]
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
  return jax.vmap(lambda w, ref: _cover(w, ref, num, cover))(weights,
                                                               jnp.arange(weights.shape[0]))


@functools.partial(jax.jit, static_argnames=("image_size", "num", "cover"))
def covering_neighbours(points, intrinsics, cam_from_world, *, image_size, num, cover,
                        observed=None, peak_degrees=8.0, low_sigma_degrees=None,
                        high_sigma_degrees=15.0):
  """`select_covering_neighbours` of the `pair_weights` of these points (same arguments), one
  reference at a time: memory O(v n) instead of (v, v, n). Returns (v, N) indices, (v, N) gains."""
  shape = dict(peak_degrees=peak_degrees, low_sigma_degrees=low_sigma_degrees,
               high_sigma_degrees=high_sigma_degrees)
  return _per_reference(lambda ref, w: _cover(w, ref, num, cover), points, intrinsics,
                        cam_from_world, image_size, observed, shape)


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
