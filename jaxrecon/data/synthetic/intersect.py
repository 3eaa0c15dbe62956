"""Analytic ray-primitive intersections (one ray, one primitive; vmap for more).

A ray is origin o (3,) + t * direction d (3,), world frame, d not necessarily unit length, so t is
in units of |d| (the renderer uses camera-z-normalised directions, making t the depth). Each
function returns (t, normal): t () the nearest hit with t > t_min, or FAR when the ray misses;
normal (3,) the unit outward surface normal at that hit (arbitrary when missed). All branches are
`jnp.where`, so the functions jit and vmap without Python control flow on values.
"""
from __future__ import annotations

import jax.numpy as jnp

FAR = 1e10  # "no hit"; finite so that FAR * 0 stays 0 in later arithmetic


def _safe_recip(x):
  """Sign-preserving 1 / x that never divides by zero (axis-parallel rays give huge, finite t)."""
  tiny = jnp.asarray(1e-12, x.dtype)
  return 1.0 / jnp.where(jnp.abs(x) < tiny, jnp.where(x < 0, -tiny, tiny), x)


def ground(o, d, extent, t_min):
  """The square {|x|, |y| <= extent, z = 0}; normal +z."""
  t = -o[2] * _safe_recip(d[2])
  p = o + t * d
  hit = (t > t_min) & (jnp.abs(p[0]) <= extent) & (jnp.abs(p[1]) <= extent)
  return jnp.where(hit, t, FAR), jnp.array([0.0, 0.0, 1.0], o.dtype)


def box(o, d, centre, half, yaw, active, t_min):
  """Box with half-extents `half` along its axes, rotated by `yaw` about z (slab method).

  A ray starting inside the box hits it from the inside (at the far slab).
  """
  c, s = jnp.cos(yaw), jnp.sin(yaw)
  to_local = lambda x: jnp.stack([c * x[0] + s * x[1], -s * x[0] + c * x[1], x[2]])
  ol, dl = to_local(o - centre), to_local(d)
  inv = _safe_recip(dl)
  t1, t2 = (-half - ol) * inv, (half - ol) * inv
  t_lo, t_hi = jnp.minimum(t1, t2), jnp.maximum(t1, t2)
  t_near, t_far = jnp.max(t_lo), jnp.min(t_hi)
  outside = t_near > t_min
  t = jnp.where(outside, t_near, t_far)
  hit = active & (t_near <= t_far) & (t > t_min)
  # The face hit is the slab that set t; its outward normal points along that local axis with the
  # sign of the hit point's coordinate.
  axis = jnp.where(outside, jnp.argmax(t_lo), jnp.argmin(t_hi))
  onehot = jnp.arange(3) == axis
  n_local = jnp.where(onehot, jnp.sign(ol + t * dl), 0.0).astype(o.dtype)
  normal = jnp.stack([c * n_local[0] - s * n_local[1], s * n_local[0] + c * n_local[1],
                      n_local[2]])
  return jnp.where(hit, t, FAR), normal


def sphere(o, d, centre, radius, active, t_min):
  """Sphere; a ray starting inside hits the far side."""
  oc = o - centre
  a = jnp.dot(d, d)
  b = jnp.dot(oc, d)
  disc = b * b - a * (jnp.dot(oc, oc) - radius * radius)
  root = jnp.sqrt(jnp.maximum(disc, 0.0))
  t0, t1 = (-b - root) / a, (-b + root) / a
  t = jnp.where(t0 > t_min, t0, t1)
  hit = active & (disc >= 0) & (t > t_min)
  normal = (o + t * d - centre) / radius
  return jnp.where(hit, t, FAR), normal


def cylinder(o, d, base, radius, height, active, t_min):
  """Vertical cylinder: side {|xy - base_xy| = radius, base_z <= z <= base_z + height} and caps."""
  oc = o[:2] - base[:2]
  dxy = d[:2]
  a = jnp.maximum(jnp.dot(dxy, dxy), 1e-12)       # 0 for vertical rays: they hit only the caps
  b = jnp.dot(oc, dxy)
  disc = b * b - a * (jnp.dot(oc, oc) - radius * radius)
  root = jnp.sqrt(jnp.maximum(disc, 0.0))
  z0, z1 = base[2], base[2] + height

  def side(t):
    z = o[2] + t * d[2]
    return jnp.where((disc >= 0) & (t > t_min) & (z >= z0) & (z <= z1), t, FAR)

  def cap(z):
    t = (z - o[2]) * _safe_recip(d[2])
    p = o[:2] + t * dxy - base[:2]
    return jnp.where((t > t_min) & (jnp.dot(p, p) <= radius * radius), t, FAR)

  ts = jnp.stack([side((-b - root) / a), side((-b + root) / a), cap(z0), cap(z1)])
  which = jnp.argmin(ts)
  t = ts[which]
  p = o + t * d
  side_normal = jnp.concatenate([(p[:2] - base[:2]) / radius, jnp.zeros(1, o.dtype)])
  cap_normal = jnp.array([0.0, 0.0, 1.0], o.dtype) * jnp.where(which == 2, -1.0, 1.0)
  normal = jnp.where(which < 2, side_normal, cap_normal)
  return jnp.where(active & (t < FAR), t, FAR), normal
