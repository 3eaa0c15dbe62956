"""Bilinear sampling of images at continuous pixel positions (pixel centres at integers)."""
from __future__ import annotations

import jax.numpy as jnp

from jaxrecon.geometry.shapes import check_shape


def sample_bilinear(image, pixels):
  """Bilinear interpolation of an image at sub-pixel positions, border clamped.

  Args:
    image: (..., h, w, c) values; pixel (row i, col j) sits at (u, v) = (j, i).
    pixels: (..., n, 2) (u, v) positions in pixels; the leading axes broadcast with `image`'s.
      NaN or inf positions (e.g. padded tracks) are allowed.
  Returns:
    values: (..., n, c) interpolated values (float). Positions outside the image take the value at
      the nearest border point; non-finite positions take the value at pixel (0, 0). Both are
      finite, and so are their gradients.
    inside: (..., n) bool, True where the position is finite and within [0, w-1] x [0, h-1].

  Differentiable w.r.t. `image` and `pixels` (the gradient w.r.t. a position is 0 where it is
  clamped, i.e. outside the image).
  """
  dims = check_shape(image, "... h w c", "image")
  check_shape(pixels, "... n 2", "pixels", dims)
  batch, h, w, c, n = dims["..."], dims["h"], dims["w"], dims["c"], dims["n"]
  image = jnp.asarray(image)
  image = image.astype(jnp.result_type(image, float))
  image = jnp.broadcast_to(image, batch + (h, w, c))
  pixels = jnp.broadcast_to(pixels, batch + (n, 2))

  u, v = pixels[..., 0], pixels[..., 1]
  finite = jnp.isfinite(u) & jnp.isfinite(v)
  # Double-where: a NaN position is replaced before any arithmetic, so its cotangent is exactly 0.
  u = jnp.where(finite, u, 0.0)
  v = jnp.where(finite, v, 0.0)
  inside = finite & (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)

  uc = jnp.clip(u, 0, w - 1)
  vc = jnp.clip(v, 0, h - 1)
  # The left/top neighbour is capped at w-2 (h-2) so that u = w-1 interpolates with weight 1 on the
  # last column instead of reading past it; a one-pixel-wide axis uses column 0 twice.
  u0 = jnp.clip(jnp.floor(uc), 0, max(w - 2, 0))
  v0 = jnp.clip(jnp.floor(vc), 0, max(h - 2, 0))
  fu = (uc - u0).astype(image.dtype)[..., None]
  fv = (vc - v0).astype(image.dtype)[..., None]
  u0 = u0.astype(jnp.int32)
  v0 = v0.astype(jnp.int32)
  u1 = jnp.minimum(u0 + 1, w - 1)
  v1 = jnp.minimum(v0 + 1, h - 1)

  flat = image.reshape(batch + (h * w, c))

  def gather(vi, ui):
    return jnp.take_along_axis(flat, (vi * w + ui)[..., None], axis=-2)

  values = ((1 - fu) * (1 - fv) * gather(v0, u0) + fu * (1 - fv) * gather(v0, u1)
            + (1 - fu) * fv * gather(v1, u0) + fu * fv * gather(v1, u1))
  return values, inside
