"""Robust statistics (weighted median, weighted mean absolute deviation) and similarity alignment
of point sets (weighted Umeyama)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrecon.geometry.safe import masked_mean
from jaxrecon.geometry.shapes import check_shape
from jaxrecon.geometry.rotations import rotation_from_9d


def weighted_median(x, weights, *, axis=-1):
  """Weighted (lower) median along an axis.

  Args:
    x: (..., n) values (n along `axis`).
    weights: non-negative weights broadcastable to x (negative ones count as 0). They are treated
      as constants: the result is piecewise constant in them, so they are wrapped in stop_gradient.
    axis: the reduced axis.
  Returns:
    (...) the smallest x (in sorted order) whose cumulative weight reaches half the total weight,
    i.e. the lower weighted median: with unit weights and even n it is the lower of the two middle
    values. Entries of weight 0 are never selected (they may hold NaN). All weights 0 -> 0.
    The gradient w.r.t. x is 1 at the selected element and 0 elsewhere.
  """
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    x = x.astype(jnp.result_type(float))
  if x.ndim == 0:
    raise ValueError(f"x: expected shape (..., n), got {x.shape}")
  try:
    w = jnp.broadcast_to(jnp.asarray(weights, x.dtype), x.shape)
  except ValueError:
    raise ValueError(f"weights: expected a shape broadcastable to x {x.shape}, got "
                     f"{jnp.shape(weights)}") from None
  x = jnp.moveaxis(x, axis, -1)
  w = jax.lax.stop_gradient(jnp.maximum(jnp.moveaxis(w, axis, -1), 0.0))
  # Unweighted entries cannot be selected; zeroing them keeps NaN padding out of the sort.
  x = jnp.where(w > 0, x, 0.0)
  xs, ws = jax.lax.sort((x, w), dimension=x.ndim - 1, num_keys=1)
  cum = jnp.cumsum(ws, axis=-1)
  total = cum[..., -1:]
  # Index of the first cumulative weight >= total / 2 (cum is non-decreasing).
  idx = jnp.sum(cum < 0.5 * total, axis=-1, keepdims=True)
  idx = jnp.minimum(idx, x.shape[-1] - 1)
  med = jnp.take_along_axis(xs, idx, axis=-1)[..., 0]
  return jnp.where(total[..., 0] > 0, med, 0.0)


def weighted_mad(x, weights, center, *, axis=-1):
  """Weighted mean absolute deviation sum_i w_i |x_i - center| / sum_i w_i.

  Args:
    x: (..., n) values (n along `axis`).
    weights: non-negative weights broadcastable to x (differentiable; entries of weight 0 may hold
      NaN).
    center: (...) centre, e.g. `weighted_median(x, weights)`.
    axis: the reduced axis.
  Returns:
    (...) the deviation, in the units of x; 0 when all weights are 0.
  """
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    x = x.astype(jnp.result_type(float))
  if x.ndim == 0:
    raise ValueError(f"x: expected shape (..., n), got {x.shape}")
  center = jnp.expand_dims(jnp.asarray(center, x.dtype), axis)
  try:
    shape = jnp.broadcast_shapes(x.shape, center.shape, jnp.shape(weights))
  except ValueError:
    raise ValueError(f"weights, center: expected shapes broadcastable to x {x.shape} and "
                     f"{x.shape[:axis % x.ndim] + x.shape[axis % x.ndim + 1:]}, got "
                     f"{jnp.shape(weights)} and {jnp.shape(center)[:-1]}") from None
  w = jnp.broadcast_to(jnp.asarray(weights, x.dtype), shape)
  dev = jnp.abs(jnp.broadcast_to(x, shape) - center)
  return masked_mean(dev, jnp.maximum(w, 0.0), axis=axis)


def umeyama(src, dst, weights=None, *, with_scale=True):
  """Weighted least-squares similarity (Umeyama / Horn) with dst ~= scale * R @ src + t.

  Minimises sum_i w_i |dst_i - (s R src_i + t)|^2 over s > 0, R in SO(3) (the SVD's reflection is
  corrected), t.

  Args:
    src: (..., n, 3) source points.
    dst: (..., n, 3) target points (same frame units as the result).
    weights: optional (..., n) non-negative weights; points of weight 0 (which may hold NaN) are
      ignored. Default: all 1.
    with_scale: fit the scale; otherwise scale = 1 (rigid alignment).
  Returns:
    scale: (...) dimensionless (dst units per src unit).
    R: (..., 3, 3) rotation.
    t: (..., 3) translation (dst units).

  Degenerate inputs stay finite (values and gradients): with no weighted spread in both sets (all
  points equal, or all weights 0) R = I; with no spread in src, scale = 1; with all weights 0 also
  t = 0. Collinear points leave the rotation about the line undetermined (an arbitrary, finite
  choice). The rotation is `rotation_from_9d` of the cross-covariance, whose gradient is finite.
  """
  dims = check_shape(src, "... n 3", "src")
  check_shape(dst, "... n 3", "dst", dims)
  dtype = jnp.result_type(src, dst, float)
  src = jnp.asarray(src, dtype)
  dst = jnp.asarray(dst, dtype)
  if weights is None:
    weights = jnp.ones(src.shape[:-1], dtype)
  else:
    check_shape(weights, "... n", "weights", dims)
  batch = dims["..."]
  w = jnp.broadcast_to(jnp.maximum(jnp.asarray(weights, dtype), 0.0), batch + (dims["n"],))
  src = jnp.broadcast_to(src, batch + src.shape[-2:])
  dst = jnp.broadcast_to(dst, batch + dst.shape[-2:])
  keep = (w > 0)[..., None]
  src = jnp.where(keep, src, 0.0)
  dst = jnp.where(keep, dst, 0.0)

  mu_src = masked_mean(src, w[..., None], axis=-2)
  mu_dst = masked_mean(dst, w[..., None], axis=-2)
  total = jnp.sum(w, axis=-1, keepdims=True)
  wn = jnp.where(total > 0, w / jnp.where(total > 0, total, 1.0), 0.0)
  xs = src - mu_src[..., None, :]
  xd = dst - mu_dst[..., None, :]
  cov = jnp.einsum("...n,...ni,...nj->...ij", wn, xd, xs)  # dst x src^T
  var_src = jnp.einsum("...n,...ni,...ni->...", wn, xs, xs)

  # No spread in either set, or zero cross-covariance: any rotation is optimal; use the identity
  # (double-where so the SVD never sees the zero matrix). Thresholds are relative (a spread below
  # 10 eps of the points' magnitude is rounding noise of coincident points).
  rel = (10 * jnp.finfo(dtype).eps) ** 2
  floor = jnp.finfo(dtype).tiny
  var_dst = jnp.einsum("...n,...ni,...ni->...", wn, xd, xd)
  flat_src = var_src <= rel * jnp.einsum("...n,...ni,...ni->...", wn, src, src) + floor
  flat_dst = var_dst <= rel * jnp.einsum("...n,...ni,...ni->...", wn, dst, dst) + floor
  cov_norm2 = jnp.sum(cov * cov, axis=(-2, -1))
  degenerate = flat_src | flat_dst | (cov_norm2 <= rel * var_src * var_dst + floor)
  eye = jnp.eye(3, dtype=dtype)
  R = rotation_from_9d(jnp.where(degenerate[..., None, None], eye, cov))
  R = jnp.where(degenerate[..., None, None], eye, R)

  if with_scale:
    ok = ~flat_src
    # trace(R^T cov) = sum of the (sign-corrected) singular values.
    num = jnp.sum(R * cov, axis=(-2, -1))
    scale = jnp.where(ok, num / jnp.where(ok, var_src, 1.0), 1.0)
  else:
    scale = jnp.ones(batch, dtype)
  t = mu_dst - scale[..., None] * jnp.einsum("...ij,...j->...i", R, mu_src)
  return scale, R, t


def apply_similarity(scale, R, t, points):
  """Applies x -> scale * R @ x + t.

  Args:
    scale: (...) scale.
    R: (..., 3, 3) rotation.
    t: (..., 3) translation.
    points: (..., n, 3) points.
  Returns:
    (..., n, 3) transformed points.
  """
  dims = check_shape(R, "... 3 3", "R")
  check_shape(t, "... 3", "t", dims)
  check_shape(scale, "...", "scale", dims)
  check_shape(points, "... n 3", "points", dims)
  scale = jnp.asarray(scale)
  return (scale[..., None, None] * jnp.einsum("...ij,...nj->...ni", R, points)
          + jnp.asarray(t)[..., None, :])
