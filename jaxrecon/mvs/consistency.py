"""Multi-view geometric consistency of depth maps, and their fusion into one point cloud.

A reference pixel's depth is confirmed by a neighbour when the point it defines, projected into the
neighbour, meets the neighbour's own depth there and that point projects back onto the reference
pixel (within `pixel_tolerance` pixels) at the same depth (within `depth_tolerance`, relative).
Independent errors rarely agree across views, so the count of confirming neighbours separates
right depths from wrong ones far better than any single view's cost can.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon import xla_options
from jaxrecon.geometry import (backproject_depth, invert_pose, pixel_grid, project,
                               sample_bilinear, unproject)


def _check_pair(depth_r, k_r, cam_r, depth_n, k_n, cam_n, pixel_tolerance, depth_tolerance):
  """(h, w) bool confirmation of reference depth_r by neighbour n; (h, w) the depth in the
  reference frame of the neighbour's point (what n says the reference depth is)."""
  h, w = depth_r.shape
  world = backproject_depth(depth_r, k_r, invert_pose(cam_r)).reshape(h * w, 3)
  pix_n, z_n = project(world, k_n, cam_n)
  # Bilinear in inverse depth, which is affine in the pixel on a plane, so interpolation adds no
  # error there; across a depth edge (or next to a pixel without depth, inverse depth 0) it blends
  # into a depth that neither side has, which then fails the check instead of confirming either.
  inv_n = jnp.where(depth_n > 0, 1.0 / jnp.where(depth_n > 0, depth_n, 1.0), 0.0)
  inv_sampled, inside = sample_bilinear(inv_n[..., None], pix_n)
  has_depth = inv_sampled[:, 0] > 0
  d_n = 1.0 / jnp.where(has_depth, inv_sampled[:, 0], 1.0)
  back = unproject(pix_n, d_n, k_n, invert_pose(cam_n))
  pix_r, z_r = project(back, k_r, cam_r)
  grid = pixel_grid(h, w, depth_r.dtype).reshape(h * w, 2)
  pixel_error = jnp.linalg.norm(pix_r - grid, axis=-1)
  ref = depth_r.reshape(-1)
  depth_error = jnp.abs(z_r - ref) / jnp.maximum(ref, 1e-12)
  ok = (inside & (z_n > 0) & has_depth & (ref > 0) & (z_r > 0)
        & (pixel_error < pixel_tolerance) & (depth_error < depth_tolerance))
  return ok.reshape(h, w), z_r.reshape(h, w)


@xla_options.jit
def geometric_consistency(depth, intrinsics, cam_from_world, neighbours, *, pixel_tolerance=1.0,
                          depth_tolerance=0.01):
  """How many neighbours confirm each pixel's depth, and the depth they agree on.

  Args:
    depth: (v, h, w) camera z per view (world units; <= 0 means none).
    intrinsics: (v, 3, 3) K; cam_from_world: (v, 4, 4).
    neighbours: (v, N) int indices of the views that check each view.
    pixel_tolerance: forward-backward reprojection error allowed, pixels.
    depth_tolerance: relative depth difference allowed.
  Returns:
    count: (v, h, w) int32 confirming neighbours, in [0, N].
    fused: (v, h, w) mean of the view's own depth and the confirming neighbours' depths (in the
      view's frame), which averages out part of each map's noise; the own depth where none confirm.
  """
  check = functools.partial(_check_pair, pixel_tolerance=pixel_tolerance,
                            depth_tolerance=depth_tolerance)

  def one_view(d_r, k_r, cam_r, nbrs):
    ok, z = jax.vmap(check, in_axes=(None, None, None, 0, 0, 0))(
        d_r, k_r, cam_r, depth[nbrs], intrinsics[nbrs], cam_from_world[nbrs])
    count = jnp.sum(ok, axis=0)
    fused = (d_r + jnp.sum(jnp.where(ok, z, 0.0), axis=0)) / (1 + count)
    return count.astype(jnp.int32), fused

  return jax.vmap(one_view)(depth, intrinsics, cam_from_world, neighbours)


def fuse_points(depth, confidence, images, intrinsics, cam_from_world, *, min_confidence=0.0):
  """Point cloud of the pixels whose confidence exceeds `min_confidence` (host side: the number
  of points depends on the data).

  Every view contributes its own confident pixels; a surface seen confidently by several views
  appears once per view (the consistency check has already made those copies agree).

  Args:
    depth: (v, h, w) camera z (world units); confidence: (v, h, w) in [0, 1] (0 = not a point).
    images: (v, h, w, 3) uint8 RGB; intrinsics: (v, 3, 3); cam_from_world: (v, 4, 4).
    min_confidence: keep pixels with confidence > this.
  Returns:
    points (n, 3) float32 world coordinates, colors (n, 3) uint8, confidence (n,) float32,
    view (n,) int32 source view, pixel (n, 2) int32 source (u, v).
  """
  world = np.asarray(backproject_depth(jnp.asarray(depth), jnp.asarray(intrinsics),
                                       invert_pose(jnp.asarray(cam_from_world))))
  confidence = np.asarray(confidence)
  keep = (confidence > min_confidence) & (np.asarray(depth) > 0)
  view, row, col = np.nonzero(keep)
  return {"points": world[keep].astype(np.float32), "colors": np.asarray(images)[keep],
          "confidence": confidence[keep].astype(np.float32), "view": view.astype(np.int32),
          "pixel": np.stack([col, row], -1).astype(np.int32)}
