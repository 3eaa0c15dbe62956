"""Plane-sweep matching cost: zero-mean normalised cross-correlation (ZNCC) of a reference window
with the neighbours' images warped through fronto-parallel planes of the reference camera.

Images are grey (h, w) floats (any affine scale: ZNCC does not see gain or offset). A hypothesis is
an inverse depth 1 / z of the reference camera's frame (world units^-1); the cost of a pixel at a
hypothesis is 1 - ZNCC, in [0, 2], aggregated over the neighbours by the mean of the k lowest, so
that a neighbour in which the surface is occluded or out of view does not spoil a good match.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxrecon.geometry import (compose_poses, inverse_intrinsics, invert_pose, pixel_grid,
                               sample_bilinear)

# The cost of a neighbour that cannot see the pixel at a hypothesis (behind it or outside its
# image): that of an uncorrelated window, so it neither wins nor vetoes a match.
UNSEEN_COST = 1.0


def box_mean(x, radius):
  """Mean over the (2r+1) x (2r+1) window around every pixel, edges replicated.

  Sums of shifted slices rather than cumulative sums: exact for small windows in float32, and XLA
  fuses them into one pass.

  Args:
    x: (..., h, w) values; radius: r, static int >= 0.
  Returns:
    (..., h, w) window means.
  """
  if radius == 0:
    return x
  h, w = x.shape[-2:]
  pad = [(0, 0)] * (x.ndim - 2) + [(radius, radius), (radius, radius)]
  xp = jnp.pad(x, pad, mode="edge")
  rows = sum(xp[..., i:i + h, :] for i in range(2 * radius + 1))
  total = sum(rows[..., :, j:j + w] for j in range(2 * radius + 1))
  return total / (2 * radius + 1) ** 2


def zncc(ref, src, *, radius, min_std=2e-3):
  """ZNCC of the windows around every pixel of two aligned images.

  Args:
    ref, src: (..., h, w) grey images (broadcasting leading axes).
    radius: window half-size r (window 2r+1 square), static.
    min_std: windows whose standard deviation is below this (in image units) in either image carry
      no texture; their ZNCC is 0 instead of a ratio of rounding errors.
  Returns:
    (..., h, w) ZNCC in [-1, 1]; invariant to src -> a src + b (a > 0) and likewise for ref.
  """
  # Removing each image's global mean first keeps E[x^2] - E[x]^2 from cancelling in float32.
  ref = ref - jnp.mean(ref, axis=(-2, -1), keepdims=True)
  src = src - jnp.mean(src, axis=(-2, -1), keepdims=True)
  mr, ms = box_mean(ref, radius), box_mean(src, radius)
  var_r = jnp.maximum(box_mean(ref * ref, radius) - mr * mr, 0.0)
  var_s = jnp.maximum(box_mean(src * src, radius) - ms * ms, 0.0)
  cov = box_mean(ref * src, radius) - mr * ms
  textured = (var_r > min_std ** 2) & (var_s > min_std ** 2)
  denom = jnp.sqrt(jnp.where(textured, var_r * var_s, 1.0))
  return jnp.where(textured, jnp.clip(cov / denom, -1.0, 1.0), 0.0)


def _warp_setup(ref_intrinsics, src_intrinsics, ref_cam_from_world, src_cam_from_world, h, w):
  """Per-neighbour terms of the plane-induced warp: a reference pixel x at depth z lands in
  neighbour n at the dehomogenised z (A_n ray(x) + b_n / z), with ray(x) = K_ref^-1 [x, 1],
  A_n = K_n R_n, b_n = K_n t_n and [R_n | t_n] = n_from_ref. Returns (N, h, w, 3) A ray, (N, 3) b."""
  src_from_ref = compose_poses(src_cam_from_world, invert_pose(ref_cam_from_world)[None])
  grid = pixel_grid(h, w, ref_intrinsics.dtype)
  rays = jnp.concatenate([grid, jnp.ones_like(grid[..., :1])], -1) @ inverse_intrinsics(
      ref_intrinsics).T
  a = src_intrinsics @ src_from_ref[:, :3, :3]
  b = jnp.einsum("nij,nj->ni", src_intrinsics, src_from_ref[:, :3, 3])
  return jnp.einsum("nij,hwj->nhwi", a, rays), b


def warp_to_reference(src_images, a_rays, b, inv_depth):
  """Neighbour images resampled onto the reference pixels through the plane z = 1 / inv_depth.

  Args:
    src_images: (N, h, w) grey; a_rays: (N, h, w, 3), b: (N, 3) from the warp set-up;
    inv_depth: inverse depth > 0 in the reference frame: a scalar (a plane), or (h, w), one per
      pixel (a local refinement around a first estimate).
  Returns:
    warped: (N, h, w) values (border-clamped where outside); seen: (N, h, w) bool, True where the
    plane point is in front of the neighbour and inside its image.
  """
  n, h, w = src_images.shape
  hom = a_rays + jnp.asarray(inv_depth)[..., None] * b[:, None, None, :]
  in_front = hom[..., 2] > 1e-9
  pix = hom[..., :2] / jnp.where(in_front, hom[..., 2], 1.0)[..., None]
  pix = jnp.where(in_front[..., None], pix, jnp.nan)
  values, inside = sample_bilinear(src_images[..., None], pix.reshape(n, h * w, 2))
  return values.reshape(n, h, w), inside.reshape(n, h, w)


@functools.partial(jax.jit, static_argnames=("radius", "top_k", "chunk"))
def sweep_cost(ref_image, src_images, ref_intrinsics, src_intrinsics, ref_cam_from_world,
               src_cam_from_world, inv_depths, *, radius=3, top_k=2, chunk=8, min_std=2e-3):
  """Plane-sweep cost volume of one reference view.

  Memory is bounded by `chunk`: only chunk x N warped images exist at a time (lax.map over the
  hypotheses in vectorised batches), besides the (D, h, w) volume itself.

  Args:
    ref_image: (h, w) grey reference; src_images: (N, h, w) grey neighbours (same size).
    ref_intrinsics: (3, 3) K; src_intrinsics: (N, 3, 3).
    ref_cam_from_world: (4, 4); src_cam_from_world: (N, 4, 4) extrinsics (world units).
    inv_depths: (D,) inverse depths > 0 of the reference frame (world units^-1), or (D, h, w) to
      sweep different hypotheses at every pixel.
    radius: ZNCC window half-size (pixels); top_k: neighbours averaged (1 <= top_k <= N);
    chunk: hypotheses warped together; min_std: see `zncc`.
  Returns:
    (D, h, w) cost in [0, 2]: mean of the top_k lowest 1 - ZNCC over the neighbours, UNSEEN_COST
    for a neighbour that does not see the plane point.
  """
  h, w = ref_image.shape
  a_rays, b = _warp_setup(ref_intrinsics, src_intrinsics, ref_cam_from_world, src_cam_from_world,
                          h, w)

  def one(inv_depth):
    warped, seen = warp_to_reference(src_images, a_rays, b, inv_depth)
    cost = jnp.where(seen, 1.0 - zncc(ref_image[None], warped, radius=radius, min_std=min_std),
                     UNSEEN_COST)
    return jnp.mean(jnp.sort(cost, axis=0)[:top_k], axis=0)

  return jax.lax.map(one, inv_depths, batch_size=chunk)
