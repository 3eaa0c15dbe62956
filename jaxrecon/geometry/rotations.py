"""Rotation parameterisations (quaternion, axis-angle, 9D/SVD) and the geodesic angle.

All rotation matrices are (..., 3, 3) and act on column vectors (x' = R x). Quaternions are
(x, y, z, w), scalar last. Axis-angle vectors are (..., 3): unit axis times angle in radians.
Every function is smooth (finite value and gradient) at the identity and at 180 degrees.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxrecon.geometry.safe import safe_norm, safe_normalize
from jaxrecon.geometry.shapes import check_shape

# Below these squared magnitudes a Taylor series replaces the closed form, whose naive evaluation
# (sin x / x, atan2(s, w) / s) has a 0/0 at the identity and, just above it, loses precision in
# its derivative (cancellation in x cos x - sin x). The series are truncated far below float64 eps
# at the switch, so values and gradients agree on both sides.
_RODRIGUES_TAYLOR_SQ = 1e-2
_LOG_TAYLOR_SQ = 1e-4


def _skew(v):
  """(..., 3) -> (..., 3, 3) matrix [v]_x with [v]_x u = v x u."""
  x, y, z = v[..., 0], v[..., 1], v[..., 2]
  o = jnp.zeros_like(x)
  return jnp.stack([
      jnp.stack([o, -z, y], -1),
      jnp.stack([z, o, -x], -1),
      jnp.stack([-y, x, o], -1)], -2)


def _vee_antisym(m):
  """(..., 3, 3) -> (..., 3): the vector of the skew part (m - m^T) / 2."""
  return 0.5 * jnp.stack([
      m[..., 2, 1] - m[..., 1, 2],
      m[..., 0, 2] - m[..., 2, 0],
      m[..., 1, 0] - m[..., 0, 1]], -1)


def quaternion_to_matrix(q):
  """Rotation matrix of a quaternion.

  Args:
    q: (..., 4) quaternion (x, y, z, w), scalar last. Normalised first, so any non-zero scale is
      accepted; the zero quaternion maps to the identity (finite gradient).
  Returns:
    (..., 3, 3) rotation matrix R with R v = q v q*.
  """
  check_shape(q, "... 4", "q")
  q = safe_normalize(q)
  x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
  xx, yy, zz = x * x, y * y, z * z
  xy, xz, yz = x * y, x * z, y * z
  wx, wy, wz = w * x, w * y, w * z
  return jnp.stack([
      jnp.stack([1 - 2 * (yy + zz), 2 * (xy - wz), 2 * (xz + wy)], -1),
      jnp.stack([2 * (xy + wz), 1 - 2 * (xx + zz), 2 * (yz - wx)], -1),
      jnp.stack([2 * (xz - wy), 2 * (yz + wx), 1 - 2 * (xx + yy)], -1)], -2)


def matrix_to_quaternion(R):
  """Unit quaternion of a rotation matrix (Shepperd's method).

  Args:
    R: (..., 3, 3) rotation matrix.
  Returns:
    (..., 4) quaternion (x, y, z, w) with w >= 0 (of the two signs, the one with non-negative scalar
    part; at exactly 180 degrees, w = 0, either sign of the vector part may come back).

  Each of the four candidate formulas divides by the square root of one of
  t = 1 + (+-R00 +-R11 +-R22) = 4 q_i^2; the largest t is chosen (with `where`), which is >= 1
  because the four always sum to 4, so the chosen division is always well conditioned, including at
  180 degrees where the usual trace-based formula breaks down.
  """
  check_shape(R, "... 3 3", "R")
  r00, r01, r02 = R[..., 0, 0], R[..., 0, 1], R[..., 0, 2]
  r10, r11, r12 = R[..., 1, 0], R[..., 1, 1], R[..., 1, 2]
  r20, r21, r22 = R[..., 2, 0], R[..., 2, 1], R[..., 2, 2]
  t = jnp.stack([
      1 + r00 - r11 - r22,  # 4 x^2
      1 - r00 + r11 - r22,  # 4 y^2
      1 - r00 - r11 + r22,  # 4 z^2
      1 + r00 + r11 + r22,  # 4 w^2
  ], -1)
  # Rows: 4 q_i * q for the candidate i (before dividing by 4 |q_i| = 2 sqrt(t_i)).
  cand = jnp.stack([
      jnp.stack([t[..., 0], r10 + r01, r02 + r20, r21 - r12], -1),
      jnp.stack([r10 + r01, t[..., 1], r21 + r12, r02 - r20], -1),
      jnp.stack([r02 + r20, r21 + r12, t[..., 2], r10 - r01], -1),
      jnp.stack([r21 - r12, r02 - r20, r10 - r01, t[..., 3]], -1)], -2)
  # The floor only touches candidates that are never selected (the selected t is >= 1); it keeps
  # their value and hence their (zero-weighted) gradient finite.
  cand = cand / (2.0 * jnp.sqrt(jnp.maximum(t, 0.1)))[..., None]
  best = jnp.argmax(t, axis=-1)
  onehot = jax.nn.one_hot(best, 4, dtype=cand.dtype)
  q = jnp.sum(cand * onehot[..., None], axis=-2)
  q = jnp.where(q[..., 3:4] < 0, -q, q)
  return safe_normalize(q)


def axis_angle_to_matrix(aa):
  """Rotation matrix of an axis-angle vector (Rodrigues' formula, exponential map of so(3)).

  Args:
    aa: (..., 3) rotation vector: unit axis times angle in radians.
  Returns:
    (..., 3, 3) R = I + A(theta) K + B(theta) K^2, K = [aa]_x, A = sin(theta) / theta,
    B = (1 - cos(theta)) / theta^2. Near theta = 0 A and B come from their Taylor series, so the
    gradient at aa = 0 is finite and exact (dR = [d aa]_x).
  """
  check_shape(aa, "... 3", "aa")
  th2 = jnp.sum(aa * aa, axis=-1)
  small = th2 < _RODRIGUES_TAYLOR_SQ
  th2_safe = jnp.where(small, 1.0, th2)  # double-where: the closed form never sees theta = 0
  th = jnp.sqrt(th2_safe)
  a_exact = jnp.sin(th) / th
  # 1 - cos(theta) = 2 sin^2(theta / 2): no cancellation for small theta.
  b_exact = 0.5 * jnp.square(jnp.sin(0.5 * th) / (0.5 * th))
  a_taylor = 1.0 - th2 / 6.0 * (1.0 - th2 / 20.0 * (1.0 - th2 / 42.0))
  b_taylor = 0.5 - th2 / 24.0 * (1.0 - th2 / 30.0 * (1.0 - th2 / 56.0))
  a = jnp.where(small, a_taylor, a_exact)[..., None, None]
  b = jnp.where(small, b_taylor, b_exact)[..., None, None]
  k = _skew(aa)
  eye = jnp.eye(3, dtype=aa.dtype)
  return eye + a * k + b * (k @ k)


def matrix_to_axis_angle(R):
  """Axis-angle vector of a rotation matrix (logarithm map of SO(3)).

  Args:
    R: (..., 3, 3) rotation matrix.
  Returns:
    (..., 3) rotation vector with angle in [0, pi] (radians). At exactly pi the sign of the axis is
    arbitrary (both are valid).

  Goes through the Shepperd quaternion (robust near pi) and theta = 2 atan2(|v|, w), so neither
  end of [0, pi] loses precision the way acos((trace - 1) / 2) does.
  """
  check_shape(R, "... 3 3", "R")
  q = matrix_to_quaternion(R)
  v, w = q[..., :3], q[..., 3]
  s2 = jnp.sum(v * v, axis=-1)
  small = s2 < _LOG_TAYLOR_SQ
  s = jnp.sqrt(jnp.where(small, 1.0, s2))  # double-where: no sqrt'(0)
  factor_exact = 2.0 * jnp.arctan2(s, w) / s
  # 2 atan(r) / s with r = s / w: 2 / w (1 - r^2/3 + r^4/5 - r^6/7); w ~ 1 in this branch.
  w_safe = jnp.where(small, w, 1.0)
  r2 = s2 / (w_safe * w_safe)
  factor_taylor = 2.0 / w_safe * (1.0 - r2 / 3.0 + r2 * r2 / 5.0 - r2 * r2 * r2 / 7.0)
  factor = jnp.where(small, factor_taylor, factor_exact)
  return v * factor[..., None]


def rotation_angle(R1, R2=None):
  """Geodesic angle (radians, in [0, pi]) of R1, or between R1 and R2.

  Args:
    R1: (..., 3, 3) rotation matrix.
    R2: optional (..., 3, 3) rotation matrix (leading axes broadcast with R1's).
  Returns:
    (...) angle of R1^T R2 (of R1 when R2 is None).

  Uses atan2(|vee(skew part)|, (trace - 1) / 2): acos of the trace alone has an infinite derivative
  at 0 and pi, and loses precision there. The gradient is finite everywhere (0 at exactly 0 and pi,
  where the angle is not differentiable).
  """
  dims = check_shape(R1, "... 3 3", "R1")
  if R2 is None:
    rel = R1
  else:
    check_shape(R2, "... 3 3", "R2", dims)
    rel = jnp.swapaxes(R1, -1, -2) @ R2
  cos = 0.5 * (jnp.trace(rel, axis1=-2, axis2=-1) - 1.0)
  sin = safe_norm(_vee_antisym(rel))
  return jnp.arctan2(sin, cos)


def _closest_rotation_fwd_value(m):
  u, s, vt = jnp.linalg.svd(m)
  d = jnp.where(jnp.linalg.det(u) * jnp.linalg.det(vt) < 0, -1.0, 1.0).astype(m.dtype)
  # R = U diag(1, 1, d) V^T: negate the last singular direction when U V^T is a reflection.
  u = u.at[..., :, 2].multiply(d[..., None])
  r = u @ vt
  return r, (r, s, d, jnp.swapaxes(vt, -1, -2))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _closest_rotation(m, eps):
  return _closest_rotation_fwd_value(m)[0]


def _closest_rotation_fwd(m, eps):
  return _closest_rotation_fwd_value(m)


def _closest_rotation_bwd(eps, res, g):
  # R is the orthogonal factor of the polar decomposition M = R P, P = V S' V^T with the signed
  # singular values S' = diag(s1, s2, d s3). From dM = dR P + R dP and R^T dR skew:
  # in the V basis, omega = V^T R^T dR V solves omega S' + S' omega = B - B^T with B = V^T R^T dM V,
  # so omega_ij = (B - B^T)_ij / (s'_i + s'_j). Its adjoint is
  #   grad_M = R V [ (A - A^T) / (s'_i + s'_j) ] V^T,  A = V^T R^T G V.
  # s'_i + s'_j >= 0 always (s3 <= s2); it vanishes only where the closest rotation is not unique
  # (rank <= 1, or a reflection with s2 = s3), so it is clamped: large but finite gradients there.
  r, s, d, v = res
  sp = jnp.concatenate([s[..., :2], (d * s[..., 2])[..., None]], -1)
  den = sp[..., :, None] + sp[..., None, :]
  floor = eps * s[..., :1, None] + 1e-12
  den = jnp.maximum(den, floor)
  vt = jnp.swapaxes(v, -1, -2)
  a = vt @ jnp.swapaxes(r, -1, -2) @ g @ v
  omega = (a - jnp.swapaxes(a, -1, -2)) / den
  return (r @ v @ omega @ vt,)


_closest_rotation.defvjp(_closest_rotation_fwd, _closest_rotation_bwd)


def rotation_from_9d(x, *, eps=1e-6):
  """Closest rotation (Frobenius norm) to an unconstrained 3x3 matrix: the 9D representation.

  Args:
    x: (..., 9) (row-major 3x3) or (..., 3, 3) network output.
    eps: relative floor of the singular-value sums in the backward pass (units of the largest
      singular value, plus 1e-12 absolute); bounds the gradient (to about |G| / (eps s1)) where
      the closest rotation is not unique (rank <= 1 input, or a reflection with s2 = s3).
  Returns:
    (..., 3, 3) special-orthogonal R = U diag(1, 1, det(U V^T)) V^T, with x = U S V^T.

  The backward pass is an analytic custom VJP (see `_closest_rotation_bwd`), not autodiff through
  the SVD, whose gradient is NaN for repeated singular values (e.g. the identity matrix).
  """
  shape = jnp.shape(x)
  if len(shape) >= 1 and shape[-1] == 9:
    m = jnp.reshape(x, shape[:-1] + (3, 3))
  elif len(shape) >= 2 and shape[-2:] == (3, 3):
    m = x
  else:
    raise ValueError(f"x: expected shape (..., 9) or (..., 3, 3), got {tuple(shape)}")
  m = jnp.asarray(m)
  if not jnp.issubdtype(m.dtype, jnp.floating):
    m = m.astype(jnp.result_type(float))
  return _closest_rotation(m, float(eps))


def random_rotation(key, shape=(), *, dtype=None):
  """Rotations drawn uniformly (Haar measure) from SO(3).

  Args:
    key: a jax.random key.
    shape: leading shape of the result.
    dtype: float dtype (default: jax's default float).
  Returns:
    (*shape, 3, 3) rotation matrices; a normalised 4D Gaussian is a uniform unit quaternion.
  """
  dtype = jnp.result_type(float) if dtype is None else dtype
  q = jax.random.normal(key, tuple(shape) + (4,), dtype=dtype)
  return quaternion_to_matrix(q)
