"""Seeded 2D and 3D augmentations for mean-teacher segmentation training (Rewis3d).

2D: one random geometry (`shared_geometry`: rescale, crop box, horizontal flip) is drawn per
target view and applied to the image (`apply_geometry_image`), its labels
(`apply_geometry_labels`) and the 2D-3D correspondence pixels (`apply_geometry_pixels`). The
teacher sees the weak view (geometry only); the student sees the same geometry plus
`strong_photometric`, so teacher and student pixels stay aligned.

Geometry of a 2D transform, with the package's pixel convention (centre of the top-left pixel at
(0, 0), an (h, w) image spanning [-0.5, w - 0.5] x [-0.5, h - 0.5]):
1. rescale (h, w) -> (sh, sw) = (round(h s), round(w s)); the image edges map onto each other, so
   source pixel (r, c) has its centre at ((r + 0.5) sh / h - 0.5, (c + 0.5) sw / w - 0.5);
2. cut the out_hw window whose top-left pixel is (top, left) of the rescaled image; top / left
   are negative when the rescaled image is smaller than out_hw, and the uncovered part is padding;
3. optionally mirror left-right: column c -> out_w - 1 - c.
Labels are resampled by nearest pixel centre, the rule of `transforms.resize_nearest`; a pixel maps
to the output pixel containing its rescaled centre. The two agree exactly whenever the rescale
does not shrink (s >= 1): the output pixel a source pixel maps to takes its label from that pixel.

3D: `augment_points` applies a random similarity (rotation about the up axis, small tilt, uniform
scale, mirror) plus clipped jitter to the xyz of a point cloud and keeps the point order, so
point indices and correspondences stay valid. `WEAK_POINTS` / `STRONG_POINTS` are its teacher /
student presets.

Host-side numpy; randomness comes only from the numpy Generator passed in.
"""
from __future__ import annotations

import dataclasses
import types

import cv2
import numpy as np

from jaxrecon.data.scene import IGNORE_LABEL
from jaxrecon.data.transforms import resize_images, resize_nearest

# --- 2D geometry --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Geometry:
  """One rescale + crop + flip of an (h, w) image to out_hw (see the module docstring).

  image_hw: (h, w) of the source image, pixels.
  scaled_hw: (sh, sw) of the rescaled image, pixels.
  top, left: row / column of the rescaled image at the crop's top-left pixel (negative: padding).
  out_hw: (out_h, out_w) of the output, pixels.
  flip: mirror the crop left-right.
  """
  image_hw: tuple[int, int]
  scaled_hw: tuple[int, int]
  top: int
  left: int
  out_hw: tuple[int, int]
  flip: bool


def _check_hw(hw, name: str) -> tuple[int, int]:
  try:
    out = tuple(int(s) for s in hw)
  except TypeError:
    raise ValueError(f"{name}: expected (h, w), got {hw!r}") from None
  if len(out) != 2 or min(out) <= 0:
    raise ValueError(f"{name}: expected positive (h, w), got {hw!r}")
  return out


def shared_geometry(image_hw, rng: np.random.Generator, *, out_hw,
                    scale_range=(0.75, 1.5), flip_prob: float = 0.5) -> Geometry:
  """A random rescale + crop + flip, to be shared by the teacher and student views of one image.

  Args:
    image_hw: (h, w) of the source image, pixels.
    rng: numpy Generator.
    out_hw: (out_h, out_w) of the output crop, pixels.
    scale_range: (lo, hi), 0 < lo <= hi; the rescale factor s is uniform in it (one s for both
      axes, aspect kept up to rounding).
    flip_prob: probability of a left-right mirror, in [0, 1].
  Returns:
    `Geometry`. The crop position is uniform over the positions where the window lies inside the
    rescaled image (or, along an axis where the rescaled image is smaller, where the image lies
    inside the window).
  """
  h, w = _check_hw(image_hw, "image_hw")
  oh, ow = _check_hw(out_hw, "out_hw")
  lo, hi = (float(s) for s in scale_range)
  if not 0 < lo <= hi:
    raise ValueError(f"scale_range: expected 0 < lo <= hi, got {scale_range}")
  if not 0.0 <= flip_prob <= 1.0:
    raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob}")
  s = rng.uniform(lo, hi)
  sh, sw = max(1, int(round(h * s))), max(1, int(round(w * s)))
  offset = lambda size, out: (int(rng.integers(0, size - out + 1)) if size >= out
                              else -int(rng.integers(0, out - size + 1)))
  top, left = offset(sh, oh), offset(sw, ow)
  flip = bool(rng.random() < flip_prob)
  return Geometry(image_hw=(h, w), scaled_hw=(sh, sw), top=top, left=left, out_hw=(oh, ow),
                  flip=flip)


def _crop_pad(array: np.ndarray, top: int, left: int, out_hw, fill) -> np.ndarray:
  """The out_hw window of array (h, w, ...) at (top, left), `fill` outside the array."""
  oh, ow = out_hw
  h, w = array.shape[:2]
  out = np.full((oh, ow) + array.shape[2:], fill, array.dtype)
  r0, r1 = max(top, 0), min(top + oh, h)
  c0, c1 = max(left, 0), min(left + ow, w)
  if r1 > r0 and c1 > c0:
    out[r0 - top:r1 - top, c0 - left:c1 - left] = array[r0:r1, c0:c1]
  return out


def _check_image(array: np.ndarray, geom: Geometry, name: str) -> None:
  if array.ndim < 2 or tuple(array.shape[:2]) != geom.image_hw:
    raise ValueError(f"{name}: expected leading shape {geom.image_hw} (geom.image_hw), got "
                     f"{array.shape}")


def apply_geometry_image(img, geom: Geometry, *, fill=0) -> np.ndarray:
  """The image under `geom`.

  Args:
    img: (h, w) or (h, w, c) image (uint8 RGB, or float), (h, w) = geom.image_hw.
    geom: from `shared_geometry`.
    fill: value of padded pixels.
  Returns:
    (out_h, out_w[, c]) array of img's dtype. Resampled as `transforms.resize_images`: bilinear
    when enlarging, area averaging when shrinking (no aliasing); same edge-to-edge pixel grid as
    the labels.
  """
  img = np.asarray(img)
  _check_image(img, geom, "img")
  if geom.scaled_hw != geom.image_hw:
    img = resize_images(img[None], geom.scaled_hw)[0].reshape(geom.scaled_hw + img.shape[2:])
  out = _crop_pad(img, geom.top, geom.left, geom.out_hw, fill)
  return np.ascontiguousarray(out[:, ::-1]) if geom.flip else out


def apply_geometry_labels(labels, geom: Geometry) -> np.ndarray:
  """The label map under `geom`: nearest pixel centre, padding IGNORE_LABEL.

  Args:
    labels: (h, w) uint8 labels, (h, w) = geom.image_hw, IGNORE_LABEL where unlabelled.
    geom: from `shared_geometry`.
  Returns:
    (out_h, out_w) uint8.
  """
  labels = np.asarray(labels)
  if labels.ndim != 2:
    raise ValueError(f"labels: expected a (h, w) label map, got shape {labels.shape}")
  _check_image(labels, geom, "labels")
  if geom.scaled_hw != geom.image_hw:
    labels = resize_nearest(labels[None], geom.scaled_hw)[0]
  out = _crop_pad(labels.astype(np.uint8), geom.top, geom.left, geom.out_hw, IGNORE_LABEL)
  return np.ascontiguousarray(out[:, ::-1]) if geom.flip else out


def apply_geometry_pixels(flat_pixels, geom: Geometry, image_hw) -> np.ndarray:
  """Flat pixel indices of the source image mapped into the output crop.

  A source pixel maps to the output pixel containing its rescaled centre; pixels that leave the
  crop, and input -1 (no correspondence), give -1. Agrees with `apply_geometry_labels` (the
  label there is the source pixel's label) whenever the rescale factor is >= 1.

  Args:
    flat_pixels: (...,) integer `row * w + col` in the source (h, w) image, or -1.
    geom: from `shared_geometry`.
    image_hw: (h, w) of the source image; must equal geom.image_hw.
  Returns:
    (...,) int32 `row * out_w + col` in the (out_h, out_w) output, or -1.
  """
  h, w = _check_hw(image_hw, "image_hw")
  if (h, w) != geom.image_hw:
    raise ValueError(f"image_hw: {image_hw} differs from geom.image_hw {geom.image_hw}")
  flat = np.asarray(flat_pixels)
  if flat.size and not np.issubdtype(flat.dtype, np.integer):
    raise ValueError(f"flat_pixels: expected integers, got {flat.dtype}")
  flat = flat.astype(np.int64)
  known = flat >= 0
  if np.any(flat >= h * w):
    raise ValueError(f"flat_pixels: indices must be < h * w = {h * w}, got max {flat.max()}")
  row, col = np.divmod(np.where(known, flat, 0), w)
  sh, sw = geom.scaled_hw
  oh, ow = geom.out_hw
  # floor((r + 0.5) sh / h) in exact integer arithmetic: (2 r + 1) sh // (2 h).
  out_row = (2 * row + 1) * sh // (2 * h) - geom.top
  out_col = (2 * col + 1) * sw // (2 * w) - geom.left
  inside = known & (out_row >= 0) & (out_row < oh) & (out_col >= 0) & (out_col < ow)
  if geom.flip:
    out_col = ow - 1 - out_col
  return np.where(inside, out_row * ow + out_col, -1).astype(np.int32)


# --- 2D photometric (student only) --------------------------------------------------------------


def strong_photometric(img, rng: np.random.Generator, *, blur_prob: float = 0.5,
                       blur_sigma=(0.1, 2.0), colour_strength: float = 0.4,
                       colour_prob: float = 0.8, grayscale_prob: float = 0.2,
                       cutout_prob: float = 0.5, cutout_size=(0.2, 0.5), cutout_fill: int = 0):
  """Strong photometric augmentation of the student's image (never moves a pixel).

  In order, each with its probability: colour jitter (brightness, contrast and saturation
  factors uniform in [1 - s, 1 + s], hue shifted by up to s / 4 of the hue circle, s =
  colour_strength, the ColorJitter(0.4, 0.4, 0.4, 0.1) of the usual strong view for s = 0.4),
  grayscale, Gaussian blur (sigma uniform in blur_sigma, pixels), one cutout rectangle (each side
  a uniform fraction in cutout_size of the image side, anywhere inside the image, filled with
  `cutout_fill`).

  Args:
    img: (h, w, 3) uint8 RGB.
    rng: numpy Generator.
    blur_prob, colour_prob, grayscale_prob, cutout_prob: probabilities in [0, 1].
    blur_sigma: (lo, hi) Gaussian sigma range in pixels, 0 < lo <= hi.
    colour_strength: s in [0, 1].
    cutout_size: (lo, hi) fraction of each image side, 0 < lo <= hi <= 1.
    cutout_fill: uint8 value of the cut-out pixels.
  Returns:
    (image (h, w, 3) uint8, cutout (h, w) bool, True on cut-out pixels, all False without
    cutout; fixed shapes either way).
  """
  img = np.asarray(img)
  if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
    raise ValueError(f"img: expected uint8 (h, w, 3), got {img.dtype} {img.shape}")
  for name, p in (("blur_prob", blur_prob), ("colour_prob", colour_prob),
                  ("grayscale_prob", grayscale_prob), ("cutout_prob", cutout_prob)):
    if not 0.0 <= p <= 1.0:
      raise ValueError(f"{name} must be in [0, 1], got {p}")
  if not 0.0 <= colour_strength <= 1.0:
    raise ValueError(f"colour_strength must be in [0, 1], got {colour_strength}")
  if not 0 < blur_sigma[0] <= blur_sigma[1]:
    raise ValueError(f"blur_sigma: expected 0 < lo <= hi, got {blur_sigma}")
  if not 0 < cutout_size[0] <= cutout_size[1] <= 1:
    raise ValueError(f"cutout_size: expected 0 < lo <= hi <= 1, got {cutout_size}")
  h, w = img.shape[:2]
  out = img.astype(np.float32)
  if rng.random() < colour_prob:
    s = colour_strength
    brightness, contrast, saturation = rng.uniform(1 - s, 1 + s, size=3)
    hue = rng.uniform(-s / 4, s / 4)
    out *= brightness
    gray = out @ np.array([0.299, 0.587, 0.114], np.float32)
    out = (out - gray.mean()) * contrast + gray.mean()
    gray = out @ np.array([0.299, 0.587, 0.114], np.float32)
    out = (out - gray[..., None]) * saturation + gray[..., None]
    hsv = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV_FULL)
    hsv[..., 0] = (hsv[..., 0].astype(np.int32) + int(round(hue * 256))) % 256
    out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL).astype(np.float32)
  if rng.random() < grayscale_prob:
    out = np.repeat(out @ np.array([0.299, 0.587, 0.114], np.float32), 3).reshape(h, w, 3)
  if rng.random() < blur_prob:
    sigma = rng.uniform(*blur_sigma)
    out = cv2.GaussianBlur(out, (0, 0), sigmaX=sigma, sigmaY=sigma,
                           borderType=cv2.BORDER_REFLECT_101)
  out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
  mask = np.zeros((h, w), bool)
  if rng.random() < cutout_prob:
    ch = max(1, int(round(h * rng.uniform(*cutout_size))))
    cw = max(1, int(round(w * rng.uniform(*cutout_size))))
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    mask[top:top + ch, left:left + cw] = True
    out[mask] = cutout_fill
  return out, mask


# --- 3D -----------------------------------------------------------------------------------------


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
  """3x3 rotation by `angle` radians about the unit `axis` (Rodrigues)."""
  x, y, z = axis
  k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
  return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def augment_points(xyz, rng: np.random.Generator, *, rotate_about_up: bool = True,
                   max_tilt_deg: float = 0.0, scale_range=(0.9, 1.1), flip_prob: float = 0.5,
                   jitter_sigma: float = 0.005, jitter_clip: float = 0.02,
                   up=(0.0, 0.0, 1.0)) -> np.ndarray:
  """A random similarity (plus jitter) of a point cloud, about its bounding-box centre.

  x -> centre + scale * R_up(yaw) R_tilt M (x - centre) + clip(N(0, jitter_sigma), +-jitter_clip)
  where M mirrors one horizontal axis (with flip_prob), R_tilt rotates about a random horizontal
  axis by an angle uniform in [-max_tilt_deg, max_tilt_deg], R_up(yaw) rotates about `up` by a
  uniform angle in [0, 2 pi) (when rotate_about_up), and scale is uniform in scale_range. Without
  jitter it is a similarity: pairwise distances all scale by the same factor.

  Which axis is "up" depends on the reconstruction's world frame: world z in the synthetic scenes
  (`jaxrecon.data.synthetic`); a feed-forward model's or a fit's frame is its own gauge, so there
  it is estimated from the cameras (`geometry.up_from_cameras`, stored as the record's "up").

  Args:
    xyz: (n, 3) float world coordinates.
    rng: numpy Generator.
    rotate_about_up: full random rotation about `up`.
    max_tilt_deg: largest tilt of `up`, degrees, >= 0.
    scale_range: (lo, hi), 0 < lo <= hi.
    flip_prob: probability of the mirror, in [0, 1].
    jitter_sigma, jitter_clip: per-coordinate Gaussian noise and its clip, world units (metres in
      the synthetic scenes; reconstructions up to scale need values in their own units), >= 0.
    up: 3-vector, the world's up direction (normalised here).
  Returns:
    (n, 3) float32, the same points in the same order (indices and correspondences stay valid).
  """
  xyz = np.asarray(xyz)
  if xyz.ndim != 2 or xyz.shape[1] != 3:
    raise ValueError(f"xyz: expected shape (n, 3), got {xyz.shape}")
  lo, hi = (float(s) for s in scale_range)
  if not 0 < lo <= hi:
    raise ValueError(f"scale_range: expected 0 < lo <= hi, got {scale_range}")
  if not 0.0 <= flip_prob <= 1.0:
    raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob}")
  if max_tilt_deg < 0 or jitter_sigma < 0 or jitter_clip < 0:
    raise ValueError(f"max_tilt_deg, jitter_sigma and jitter_clip must be >= 0, got "
                     f"{max_tilt_deg}, {jitter_sigma}, {jitter_clip}")
  up = np.asarray(up, np.float64)
  if up.shape != (3,) or not np.linalg.norm(up) > 0:
    raise ValueError(f"up: expected a non-zero 3-vector, got {up}")
  up = up / np.linalg.norm(up)
  # An orthonormal horizontal basis (e1, e2) perpendicular to up.
  helper = np.eye(3)[np.argmin(np.abs(up))]
  e1 = np.cross(up, helper)
  e1 /= np.linalg.norm(e1)
  e2 = np.cross(up, e1)

  transform = np.eye(3)
  if rng.random() < flip_prob:
    transform = np.eye(3) - 2 * np.outer(e1, e1)  # mirror across the plane normal to e1
  if max_tilt_deg > 0:
    phi = rng.uniform(0, 2 * np.pi)
    axis = np.cos(phi) * e1 + np.sin(phi) * e2
    transform = _rotation(axis, np.deg2rad(rng.uniform(-max_tilt_deg, max_tilt_deg))) @ transform
  if rotate_about_up:
    transform = _rotation(up, rng.uniform(0, 2 * np.pi)) @ transform
  transform = rng.uniform(lo, hi) * transform

  points = xyz.astype(np.float64)
  centre = (points.min(0) + points.max(0)) / 2 if len(points) else np.zeros(3)
  out = (points - centre) @ transform.T + centre
  if jitter_sigma > 0:
    out += np.clip(rng.normal(0.0, jitter_sigma, out.shape), -jitter_clip, jitter_clip)
  return out.astype(np.float32)


# Teacher (weak) and student (strong) presets: augment_points(xyz, rng, **WEAK_POINTS).
WEAK_POINTS = types.MappingProxyType(dict(
    rotate_about_up=True, max_tilt_deg=0.0, scale_range=(0.95, 1.05), flip_prob=0.5,
    jitter_sigma=0.0, jitter_clip=0.0))
STRONG_POINTS = types.MappingProxyType(dict(
    rotate_about_up=True, max_tilt_deg=5.0, scale_range=(0.8, 1.2), flip_prob=0.5,
    jitter_sigma=0.005, jitter_clip=0.02))
