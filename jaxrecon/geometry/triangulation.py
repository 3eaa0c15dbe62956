"""Differentiable multi-view triangulation (weighted linear DLT), accurate in float32.

The DLT equations of an observation u (pixel, homogeneous u~) in a view with projection matrix
P = [M | p] are u~ x (P X~) = 0. Pre-multiplying them by M^-1 (the optimal conditioning when K is
folded into P) turns each into d x (X - c) = 0, with c = -M^-1 p the camera centre and
d = M^-1 u~ the viewing ray; normalising d makes the residual |(I - d d^T)(X - c)|, the distance
of X from the ray. The weighted least-squares point solves the 3x3 normal equations

    N X = b,   N = sum_i w_i (I - d_i d_i^T),   b = sum_i w_i (I - d_i d_i^T) c_i.

Why not the textbook 4x4 homogeneous solve: at small parallax N is nearly singular along the mean
ray direction m, and in world coordinates the one small eigenvalue is the difference of large
numbers (1 - cos^2), so float32 loses the depth entirely (and forming A^T A squares the condition
number). Here every point is solved in its own frame (e1, e2, m) with the origin at the mean camera
centre: the small entry N_mm = sum w (d.e1^2 + d.e2^2) is formed from the small components
directly, so depth keeps full relative precision down to parallax of about 1e-4 rad in float32.

The backward pass is the implicit-function-theorem VJP of N X = b (one extra 3x3 solve per point,
no differentiation through the elimination), which is several times faster than autodiff.
`solver="svd"` is the classic homogeneous DLT (Hartley-normalised, SVD), kept as a reference.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon.geometry.safe import safe_div
from jaxrecon.geometry.shapes import check_shape

SOLVERS = ("ray", "svd")


class TriangulationInfo(NamedTuple):
  """Per-point diagnostics of `triangulate_with_info`; every field has shape (..., n).

  num_views: number of views with weight > 0.
  parallax: ray spread in radians, 2 arcsin of the weighted RMS sine of the angles between the
    viewing rays and their mean direction; for two views it is the angle between the two rays.
    Near 0 the depth is unknown.
  in_front: the point lies in front of (positive depth in) every view that observes it.
  valid: num_views >= 2, parallax >= min_parallax and in_front.
  """
  num_views: jax.Array
  parallax: jax.Array
  in_front: jax.Array
  valid: jax.Array


def _inv3(m):
  """Closed-form inverse of (..., 3, 3) matrices (cheaper than LU for tiny batches of 3x3)."""
  a, b, c = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
  d, e, f = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
  g, h, i = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
  cof = jnp.stack([
      jnp.stack([e * i - f * h, c * h - b * i, b * f - c * e], -1),
      jnp.stack([f * g - d * i, a * i - c * g, c * d - a * f], -1),
      jnp.stack([d * h - e * g, b * g - a * h, a * e - b * d], -1)], -2)
  det = a * cof[..., 0, 0] + b * cof[..., 1, 0] + c * cof[..., 2, 0]
  return cof / det[..., None, None], det


def _orthonormal_basis(m):
  """Two unit vectors completing unit m (a 3-tuple of arrays) to a right-handed frame; branch-free,
  continuous except where m_z changes sign (irrelevant: no gradient flows through the frame)."""
  x, y, z = m
  sign = jnp.where(z >= 0, 1.0, -1.0).astype(z.dtype)
  a = -1.0 / (sign + z)
  b = x * y * a
  return (1.0 + sign * x * x * a, sign * b, -sign * x), (b, sign + y * y * a, -y)


def _dot(a, b):
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


# The core works on vectors stored as 3-tuples of (B, n) arrays ("structure of arrays") and loops
# over views with lax.scan: with a trailing axis of 3, or with sums over a short view axis, XLA
# splits the solve into dozens of passes over memory; this way each pass is one fused loop.


def _unit_ray(minv, u, v):
  """Unit rays d (3-tuple of (B, n)) and 1/|M^-1 u~| for one view: minv (B, 3, 3), u, v (B, n)."""
  r = tuple(minv[:, i, 0, None] * u + minv[:, i, 1, None] * v + minv[:, i, 2, None] for i in range(3))
  inv_len = jax.lax.rsqrt(_dot(r, r))
  return tuple(ri * inv_len for ri in r), inv_len


def _scan_views(body, init, xs):
  """Accumulates body(carry, per-view slice) over the leading (view) axis of xs."""
  views = jax.tree.leaves(xs)[0].shape[0]
  step = lambda carry, x: (body(carry, x), None)
  return jax.lax.scan(step, init, xs, unroll=views if views <= 16 else 1)[0]


def _frame_solve(minv, centres, u, v, w):
  """Solves N X = b in each point's ray-aligned frame.

  Args (views leading):
    minv: (v, B, 3, 3) inverse of the left 3x3 block of P, sign-fixed so rays point forward.
    centres: (v, B, 3) camera centres (world frame).
    u, v, w: (v, B, n) pixel coordinates (finite) and observation weights >= 0.
  Returns:
    points: 3-tuple of (B, n); ninv: dict (i, j), i <= j -> (B, n), the symmetric inverse normal
    matrix in world axes (for the VJP); schur: (B, n) the unregularised Schur complement along the
    mean ray, i.e. the squared ray spread (radians^2) times the total weight.
  """
  origin = jnp.mean(centres, axis=0)                                  # (B, 3)
  zeros = jnp.zeros_like(u[0])  # *_like keeps shard_map's per-device type of the carries

  def mean_pass(acc, x):
    minv_i, _, u_i, v_i, w_i = x
    d, _ = _unit_ray(minv_i, u_i, v_i)
    return tuple(a + w_i * di for a, di in zip(acc, d + (1.0,)))

  *mean_dir, wsum = _scan_views(mean_pass, (zeros,) * 4, (minv, centres, u, v, w))
  norm = jnp.sqrt(_dot(mean_dir, mean_dir))
  # Rays spread over more than a hemisphere (cameras around the point) leave no mean direction;
  # then the parallax is large and any frame is well conditioned, so fall back to +z.
  ok = norm > 1e-3 * wsum
  inv_norm = jnp.where(ok, 1.0 / jnp.where(ok, norm, 1.0), 0.0)
  m = (mean_dir[0] * inv_norm, mean_dir[1] * inv_norm, jnp.where(ok, mean_dir[2] * inv_norm, 1.0))
  e1, e2 = _orthonormal_basis(m)

  def normal_pass(acc, x):
    minv_i, c_i, u_i, v_i, w_i = x
    d, _ = _unit_ray(minv_i, u_i, v_i)
    q = tuple((c_i[:, k] - origin[:, k])[:, None] for k in range(3))
    dx, dy, dz = _dot(d, e1), _dot(d, e2), _dot(d, m)
    qx, qy, qz = _dot(q, e1), _dot(q, e2), _dot(q, m)
    perp2 = dx * dx + dy * dy                                         # 1 - dz^2, no cancellation
    dxy = dx * qx + dy * qy
    dq = dxy + dz * qz
    terms = (1.0 - dx * dx, 1.0 - dy * dy, perp2, -dx * dy, -dx * dz, -dy * dz,
             qx - dx * dq, qy - dy * dq, qz * perp2 - dz * dxy)
    return tuple(a + w_i * t for a, t in zip(acc, terms))

  n11, n22, n33, n12, n13, n23, r1, r2, r3 = _scan_views(
      normal_pass, (zeros,) * 9, (minv, centres, u, v, w))
  # Block elimination: the 2x2 block across the rays is ~ wsum * I; the depth equation is last.
  det2 = n11 * n22 - n12 * n12
  det2 = jnp.where(det2 > 0, det2, 1.0)
  a11, a22, a12 = n22 / det2, n11 / det2, -n12 / det2                 # inverse of the 2x2 block
  g1, g2 = a11 * n13 + a12 * n23, a12 * n13 + a22 * n23
  schur = jnp.maximum(n33 - (n13 * g1 + n23 * g2), 0.0)
  # A Tikhonov term at the resolution of unit vectors ((10 eps)^2, i.e. parallax ~2e-6 rad in
  # float32) keeps parallel rays (zero baseline) finite; it pulls such a point towards the mean
  # camera centre and is flagged through `parallax`. Above ~1e-4 rad its bias is below 1e-3.
  eps = (10.0 * jnp.finfo(w.dtype).eps) ** 2
  den = schur + eps * wsum
  ok = den > 1e-30  # false only for points no view observes: then everything below is 0
  i33 = jnp.where(ok, 1.0 / jnp.where(ok, den, 1.0), 0.0)
  y1, y2 = a11 * r1 + a12 * r2, a12 * r1 + a22 * r2
  z3 = (r3 - (n13 * y1 + n23 * y2)) * i33
  z1, z2 = y1 - g1 * z3, y2 - g2 * z3
  points = tuple(origin[:, k, None] + z1 * e1[k] + z2 * e2[k] + z3 * m[k] for k in range(3))
  # Inverse normal matrix: block inverse in the frame, rotated back to world axes.
  inv_f = {(0, 0): a11 + g1 * g1 * i33, (1, 1): a22 + g2 * g2 * i33, (2, 2): i33,
           (0, 1): a12 + g1 * g2 * i33, (0, 2): -g1 * i33, (1, 2): -g2 * i33}
  inv_f.update({(j, i): val for (i, j), val in list(inv_f.items())})
  basis = (e1, e2, m)                                                 # basis[k][a]: axis a of vector k
  ninv = {(a, b): sum(basis[k][a] * inv_f[k, l] * basis[l][b] for k in range(3) for l in range(3))
          for a in range(3) for b in range(a, 3)}
  return points, ninv, schur


def _interleave(components):
  """3-tuple of (B, n) -> (B, n, 3). A one-hot sum instead of jnp.stack: XLA fuses a stack into a
  concatenate that evaluates the whole solve per element unvectorised (measured 50x slower)."""
  eye = jnp.eye(3, dtype=components[0].dtype)
  return sum(c[..., None] * eye[k] for k, c in enumerate(components))


def _views_first(minv, centres, u, v, w):
  return (jnp.moveaxis(minv, 1, 0), jnp.moveaxis(centres, 1, 0),
          *(jnp.moveaxis(x, 1, 0) for x in (u, v, w)))


@jax.custom_vjp
def _ray_solve(minv, centres, u, v, w):
  """Points (B, n, 3) and the Schur complement (B, n) (a diagnostic: its cotangent is ignored).

  minv (B, v, 3, 3), centres (B, v, 3), u, v, w (B, v, n): see `_frame_solve`.
  """
  points, _, schur = _frame_solve(*_views_first(minv, centres, u, v, w))
  return _interleave(points), schur


def _ray_solve_fwd(minv, centres, u, v, w):
  args = _views_first(minv, centres, u, v, w)
  points, ninv, schur = _frame_solve(*args)
  return (_interleave(points), schur), (args, points, ninv)


def _ray_solve_bwd(res, cotangents):
  # X solves F(X, theta) = sum_i w_i (I - d_i d_i^T)(c_i - X) = 0, so dX = N^-1 dF|_X and the
  # cotangent of every input is the partial of lam . F with lam = N^-1 g (N symmetric). The rays
  # are recomputed view by view (cheaper than storing them) and differentiated by hand.
  (minv, centres, u, v, w), points, ninv = res
  g = cotangents[0]
  sym = lambda a, b: ninv[min(a, b), max(a, b)]
  lam = tuple(sum(sym(a, b) * g[..., b] for b in range(3)) for a in range(3))  # (B, n)

  def per_view(x):
    minv_i, c_i, u_i, v_i, w_i = x
    d, inv_len = _unit_ray(minv_i, u_i, v_i)
    e = tuple(c_i[:, k, None] - points[k] for k in range(3))          # c_i - X, (B, n)
    de, dl = _dot(d, e), _dot(d, lam)
    g_d = tuple(-w_i * (de * lam[k] + dl * e[k]) for k in range(3))
    g_c = jnp.stack([jnp.sum(w_i * (lam[k] - d[k] * dl), -1) for k in range(3)], -1)
    g_w = _dot(lam, e) - dl * de
    # Through d = r / |r|, r = M^-1 (u, v, 1).
    dgd = _dot(d, g_d)
    g_r = tuple(inv_len * (g_d[k] - d[k] * dgd) for k in range(3))
    g_u = sum(minv_i[:, k, 0, None] * g_r[k] for k in range(3))
    g_v = sum(minv_i[:, k, 1, None] * g_r[k] for k in range(3))
    g_minv = jnp.stack([jnp.stack([jnp.sum(g_r[k] * u_i, -1), jnp.sum(g_r[k] * v_i, -1),
                                   jnp.sum(g_r[k], -1)], -1) for k in range(3)], -2)
    return g_minv, g_c, g_u, g_v, g_w

  grads = jax.lax.map(per_view, (minv, centres, u, v, w))
  return tuple(jnp.moveaxis(x, 0, 1) for x in grads)


_ray_solve.defvjp(_ray_solve_fwd, _ray_solve_bwd)


def _ray_inputs(proj, pixels, weights):
  """Arguments of `_ray_solve` from P = [M | p] (B, v, 3, 4), pixels (B, v, n, 2), weights."""
  minv, det = _inv3(proj[..., :3])
  centres = -jnp.einsum("bvij,bvj->bvi", minv, proj[..., 3])
  # sign(det M) makes rays point forward also for a projection matrix scaled by a negative number.
  minv = minv * jnp.sign(det)[..., None, None]
  observed = weights > 0
  # Double-where: unobserved pixels may hold NaN (padding); replace them before any arithmetic.
  u = jnp.where(observed, pixels[..., 0], 0.0)
  v = jnp.where(observed, pixels[..., 1], 0.0)
  return minv, centres, u, v, jnp.where(observed, weights, 0.0)


def _hartley(pixels, weights):
  """Per-view similarity T (B, v, 3, 3) moving the observed pixels to zero mean, RMS norm sqrt 2."""
  wsum = jnp.maximum(jnp.sum(weights, -1), 1e-12)[..., None]
  mean = jnp.einsum("bvn,bvnk->bvk", weights, pixels) / wsum
  var = jnp.einsum("bvn,bvn->bv", weights, jnp.sum((pixels - mean[:, :, None]) ** 2, -1))
  scale = jnp.sqrt(2.0 / jnp.maximum(var / wsum[..., 0], 1e-12))
  zero, one = jnp.zeros_like(scale), jnp.ones_like(scale)
  return jnp.stack([jnp.stack([scale, zero, -scale * mean[..., 0]], -1),
                    jnp.stack([zero, scale, -scale * mean[..., 1]], -1),
                    jnp.stack([zero, zero, one], -1)], -2)


def _svd_solve(proj, pixels, weights):
  """Textbook homogeneous DLT: Hartley-normalised pixels and world, smallest right singular vector."""
  centres = -jnp.einsum("bvij,bvj->bvi", _inv3(proj[..., :3])[0], proj[..., 3])
  origin = jnp.mean(centres, axis=1)
  spread = jnp.sqrt(jnp.mean(jnp.sum((centres - origin[:, None]) ** 2, -1), axis=1))
  spread = jnp.where(spread > 0, spread, 1.0)
  world = jnp.concatenate([
      jnp.concatenate([spread[:, None, None] * jnp.eye(3, dtype=proj.dtype), origin[:, :, None]], -1),
      jnp.broadcast_to(jnp.asarray([0.0, 0.0, 0.0, 1.0], proj.dtype), origin.shape[:1] + (1, 4))], -2)
  t = _hartley(pixels, weights)
  pn = t @ proj @ world[:, None]                                      # (B, v, 3, 4)
  x = jnp.einsum("bvij,bvnj->bvni", t[..., :2, :2], pixels) + t[..., None, :2, 2]
  rows = jnp.stack([x[..., 0:1] * pn[:, :, None, 2] - pn[:, :, None, 0],
                    x[..., 1:2] * pn[:, :, None, 2] - pn[:, :, None, 1]], 2)  # (B, v, 2, n, 4)
  rows = rows * weights[:, :, None, :, None]
  a = jnp.moveaxis(rows, 3, 1).reshape(rows.shape[0], rows.shape[3], -1, 4)  # (B, n, 2v, 4)
  _, _, vt = jnp.linalg.svd(a, full_matrices=False)
  h = vt[..., -1, :]
  w4 = h[..., 3]
  w4 = jnp.where(jnp.abs(w4) > 1e-12, w4, jnp.where(w4 < 0, -1e-12, 1e-12))
  return origin[:, None] + spread[:, None, None] * h[..., :3] / w4[..., None]


def _prepare(proj, pixels, weights):
  dims = check_shape(proj, "... v 3 4", "proj")
  check_shape(pixels, "... v n 2", "pixels", dims)
  batch = dims.pop("...")
  if weights is None:
    weights = jnp.ones_like(jnp.asarray(pixels)[..., 0])  # per-device under shard_map, like pixels
  check_shape(weights, "... v n", "weights", dims)
  batch = tuple(np.broadcast_shapes(batch, jnp.shape(weights)[:-2]))
  v, n = dims["v"], dims["n"]
  dtype = jnp.result_type(proj, pixels, jnp.float32)
  flat = lambda x, tail: jnp.broadcast_to(jnp.asarray(x, dtype), batch + tail).reshape((-1,) + tail)
  return (flat(proj, (v, 3, 4)), flat(pixels, (v, n, 2)), flat(weights, (v, n)), batch)


# jit at definition: eager calls would otherwise retrace the view scans on every call (~1 s).
@functools.partial(jax.jit, static_argnames=("solver",))
def triangulate(proj, pixels, weights=None, *, solver: str = "ray"):
  """Triangulates tracks from several views by weighted linear least squares (DLT).

  Args:
    proj: (..., v, 3, 4) world -> pixel projection matrices K [R | t] (any non-zero scale).
    pixels: (..., v, n, 2) observed pixels (u, v) of n tracks in every view; entries with weight 0
      are ignored and may hold anything, NaN included.
    weights: (..., v, n) in [0, 1], 0 = not observed; default all 1. A weight scales the squared
      distance of the point from that observation's viewing ray.
    solver: "ray" (default; per-point ray-aligned frame, float32-accurate, implicit VJP) or "svd"
      (textbook Hartley-normalised homogeneous DLT with autodiff through the SVD; a reference, as
      accurate in float64 but not in float32 at small parallax).
  Returns:
    (..., n, 3) world points. Differentiable w.r.t. proj, pixels and weights. Tracks seen in fewer
    than two views or with parallel rays are finite but meaningless: use `triangulate_with_info`.
  """
  if solver not in SOLVERS:
    raise ValueError(f"solver: expected one of {SOLVERS}, got {solver!r}")
  proj, pixels, weights, batch = _prepare(proj, pixels, weights)
  if solver == "svd":
    points = _svd_solve(proj, jnp.where(weights[..., None] > 0, pixels, 0.0), weights)
  else:
    points, _ = _ray_solve(*_ray_inputs(proj, pixels, weights))
  return points.reshape(batch + points.shape[1:])


@jax.jit
def triangulate_with_info(proj, pixels, weights=None, *,
                          min_parallax: float = float(np.deg2rad(0.5))):
  """`triangulate` (ray solver) plus per-point `TriangulationInfo`.

  Args as in `triangulate`; min_parallax (radians) is the ray spread below which a point is not
  `valid` (0.5 degrees by default: below it the depth error grows as noise / parallax).
  Returns:
    points (..., n, 3) and TriangulationInfo of (..., n) arrays. The info is not differentiable.
  """
  proj, pixels, weights, batch = _prepare(proj, pixels, weights)
  args = _ray_inputs(proj, pixels, weights)
  points, schur = _ray_solve(*args)
  schur = jax.lax.stop_gradient(schur)
  observed = weights > 0
  wsum = jnp.sum(args[-1], axis=1)
  parallax = 2.0 * jnp.arcsin(jnp.minimum(jnp.sqrt(safe_div(schur, wsum)), 1.0))
  num_views = jnp.sum(observed, axis=1)
  pts = jax.lax.stop_gradient(points)
  hom_depth = jnp.einsum("bvk,bnk->bvn", proj[:, :, 2, :3], pts) + proj[:, :, None, 2, 3]
  det = _inv3(proj[..., :3])[1]
  in_front = jnp.all(~observed | (hom_depth * jnp.sign(det)[..., None] > 0), axis=1)
  valid = (num_views >= 2) & (parallax >= min_parallax) & in_front
  info = TriangulationInfo(num_views, parallax, in_front, valid)
  unflat = lambda x: x.reshape(batch + x.shape[1:])
  return unflat(points), TriangulationInfo(*map(unflat, info))
