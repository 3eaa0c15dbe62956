"""Geometric transforms of a whole `Scene`: resize and crop, keeping intrinsics consistent.

Pixels follow the package's convention (centre of the top-left pixel at (0, 0), image spanning
[-0.5, w - 0.5]), so a resize maps the image edges onto each other: u' = (u + 0.5) s - 0.5, the
rule of `geometry.scale_intrinsics`. Poses never change: neither transform moves the camera.
The array-level pieces (`resize_images`, `resize_nearest`, `crop_resize_camera`) also serve the
training pipelines.

Resampling per field:
* images: area averaging when shrinking (no aliasing), bilinear when enlarging.
* depth: nearest. Averaging across a depth edge would invent depths between foreground and
  background where no surface exists ("flying pixels"), and blending with 0 (unknown) would give
  small bogus depths; nearest keeps every value a real measurement (or 0).
* labels: nearest. Class ids are categories: an average of "road" and "sky" is no class.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from jaxrecon.data.scene import Scene


def _nearest_indices(size_in: int, size_out: int) -> np.ndarray:
  """Source index of each output pixel centre: floor((i + 0.5) size_in / size_out), (size_out,).

  cv2.INTER_NEAREST uses floor(i * size_in / size_out), half a pixel off our centre convention.
  """
  centres = (np.arange(size_out) + 0.5) * (size_in / size_out)
  return np.clip(np.floor(centres).astype(np.int64), 0, size_in - 1)


def resize_nearest(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """(v, h, w) -> (v, *size) by nearest pixel centre (depth, labels); the dtype is kept."""
  rows = _nearest_indices(maps.shape[1], size[0])
  cols = _nearest_indices(maps.shape[2], size[1])
  return maps[:, rows[:, None], cols[None, :]]


def resize_images(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """(v, h, w, c) -> (v, *size, c): area averaging when shrinking, bilinear when enlarging."""
  h, w = size
  shrink = h <= images.shape[1] and w <= images.shape[2]
  interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
  return np.stack([cv2.resize(np.asarray(image), (w, h), interpolation=interpolation)
                   for image in images])


def crop_resize_camera(intrinsics, pixels, box, out_hw):
  """Intrinsics (..., 3, 3) and pixels (..., 2) after cutting `box` and resizing it to `out_hw`.

  box = (top, left, crop_h, crop_w) in source pixels (may be fractional). A source pixel u lands
  at (u - left + 0.5) s - 0.5 with s = out_w / crop_w (likewise v), and K changes the same way:
  fx s, (cx - left + 0.5) s - 0.5 (`geometry.crop_intrinsics` then `scale_intrinsics`; this is
  their float64 numpy twin for host-side data code, tested against them). pixels may be None.
  """
  top, left, ch, cw = box
  sy, sx = out_hw[0] / ch, out_hw[1] / cw
  k = np.array(intrinsics, np.float64)
  k[..., 0, :] *= sx
  k[..., 1, :] *= sy
  k[..., 0, 2] += (0.5 - left) * sx - 0.5
  k[..., 1, 2] += (0.5 - top) * sy - 0.5
  if pixels is None:
    return k, None
  return k, (np.asarray(pixels) - [left - 0.5, top - 0.5]) * [sx, sy] - 0.5


def resize(scene: Scene, size: tuple[int, int]) -> Scene:
  """The scene with every view resampled to `size` = (h, w) pixels (aspect may change).

  Args:
    scene: any `Scene`.
    size: (h, w) of the output, positive integers.
  Returns:
    `Scene` with images (v, h, w, 3) area / bilinear, depth and labels nearest, intrinsics scaled
    by (w / w_in, h / h_in) about the image edge; poses, names and name unchanged.
  """
  h, w = (int(s) for s in size)
  if h <= 0 or w <= 0:
    raise ValueError(f"resize: size must be positive (h, w), got {size}")
  h_in, w_in = scene.image_size
  images = resize_images(np.asarray(scene.images), (h, w))
  intrinsics = None
  if scene.intrinsics is not None:
    intrinsics, _ = crop_resize_camera(scene.intrinsics, None, (0, 0, h_in, w_in), (h, w))
  nearest = lambda x: None if x is None else resize_nearest(np.asarray(x), (h, w))
  return dataclasses.replace(scene, images=images, intrinsics=intrinsics,
                             depth=nearest(scene.depth), labels=nearest(scene.labels))


def crop(scene: Scene, top: int, left: int, h: int, w: int) -> Scene:
  """The (h, w) window whose top-left pixel is (row top, column left) of every view.

  Args:
    scene: any `Scene`.
    top, left: integer pixel offsets, >= 0.
    h, w: positive integer size; the window must lie inside the image.
  Returns:
    `Scene` with images, depth and labels cut, the principal point moved by (-left, -top);
    focal lengths, poses, names and name unchanged.
  Raises:
    ValueError if the window is empty or leaves the image.
  """
  top, left, h, w = int(top), int(left), int(h), int(w)
  h_in, w_in = scene.image_size
  if h <= 0 or w <= 0 or top < 0 or left < 0 or top + h > h_in or left + w > w_in:
    raise ValueError(f"crop: window rows {top}..{top + h}, columns {left}..{left + w} is empty or "
                     f"outside the {h_in}x{w_in} image")
  cut = lambda x: None if x is None else np.asarray(x)[:, top:top + h, left:left + w].copy()
  intrinsics = None
  if scene.intrinsics is not None:
    intrinsics, _ = crop_resize_camera(scene.intrinsics, None, (top, left, h, w), (h, w))
  return dataclasses.replace(scene, images=cut(scene.images), intrinsics=intrinsics,
                             depth=cut(scene.depth), labels=cut(scene.labels))
