"""Monocular depth pseudo-labels read from files that any external model wrote.

Naming scheme: the prediction for image `<anything>/<stem>.<ext>` lives at `<directory>/<stem>.npy`,
`<directory>/<stem>.pfm` or `<directory>/<stem>.png` (exactly one of them; several is an error
because it is ambiguous which one is current). Formats:

* `.npy`: float array (h, w) (a singleton channel (1, h, w) or (h, w, 1) is squeezed). Non-finite
  values are invalid.
* `.pfm`: single-channel ("Pf") float32 PFM, either byte order, rows bottom-to-top as the format
  says (see `jaxrecon.experts.pfm`).
* `.png`: single-channel 16-bit PNG; value = integer * `png_scale`; integer 0 is invalid
  (e.g. png_scale = 1 / 1000 for millimetres, 1 / 5000 for TUM/ICL depth).

`disparity=False`: values are depth (camera z, in whatever units the model uses; monocular models
are only right up to an unknown scale and usually a shift); values <= 0 are invalid.
`disparity=True`: values are (affine-invariant) disparity, e.g. MiDaS / Depth Anything output; the
expert returns 1 / disparity, a *relative* depth-like map (an unknown scale and, because the
disparity's shift does not survive the inversion as a shift, only monotone in true depth),
invalid where disparity <= 0 or non-finite.

Invalid pixels come back with value 0 and `valid` False; consumers (the relative depth loss) mask
them out.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import NamedTuple, Sequence

import cv2
import numpy as np

from jaxrecon.io.pfm import read_pfm

EXTENSIONS = (".npy", ".pfm", ".png")


class DepthLabels(NamedTuple):
  """Monocular depth pseudo-labels of v views.

  depth: (v, h, w) float32, positive where valid, 0 elsewhere (relative units).
  valid: (v, h, w) bool.
  """
  depth: np.ndarray
  valid: np.ndarray


@dataclasses.dataclass(frozen=True)
class FileDepthExpert:
  """Reads per-image depth / disparity predictions from `directory` (naming scheme above).

  directory: folder holding `<stem>.npy|.pfm|.png`.
  disparity: the files hold disparity; return 1 / disparity (relative depth).
  png_scale: value of one integer step of a 16-bit PNG.
  """
  directory: str | os.PathLike
  disparity: bool = False
  png_scale: float = 1.0 / 1000.0

  def __post_init__(self):
    if not self.png_scale > 0:
      raise ValueError(f"png_scale must be positive, got {self.png_scale}")

  def path_for(self, image_name: str | os.PathLike) -> pathlib.Path:
    """The prediction file for an image (name or path; only its stem is used).

    Raises:
      FileNotFoundError naming the candidates if none exists; ValueError if several exist.
    """
    stem = pathlib.Path(image_name).stem
    candidates = [pathlib.Path(self.directory) / (stem + ext) for ext in EXTENSIONS]
    present = [p for p in candidates if p.is_file()]
    if not present:
      raise FileNotFoundError(f"no depth prediction for image {str(image_name)!r}: none of "
                              f"{[str(p) for p in candidates]} exists")
    if len(present) > 1:
      raise ValueError(f"ambiguous depth prediction for image {str(image_name)!r}: "
                       f"{[str(p) for p in present]} all exist; keep one")
    return present[0]

  def read_raw(self, path: str | os.PathLike) -> np.ndarray:
    """(h, w) float64 raw values of one file (depth or disparity as stored; PNG already scaled;
    NaN where the file marks the pixel invalid). ValueError naming the file if unreadable."""
    path = pathlib.Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
      try:
        values = np.load(path, allow_pickle=False)
      except (ValueError, OSError, EOFError) as error:
        raise ValueError(f"corrupt .npy depth file {path}: {error}") from None
      real = np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)
      if not real:
        raise ValueError(f"depth file {path}: expected a real array, got dtype {values.dtype}")
      values = values.astype(np.float64)
    elif suffix == ".pfm":
      values = read_pfm(path).astype(np.float64)
      if values.ndim != 2:
        raise ValueError(f"depth file {path}: expected a single-channel 'Pf' PFM, got 3 channels")
    elif suffix == ".png":
      raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
      if raw is None:
        raise ValueError(f"corrupt or unreadable PNG depth file {path}")
      if raw.dtype != np.uint16 or raw.ndim != 2:
        raise ValueError(f"depth file {path}: expected a single-channel 16-bit PNG, got "
                         f"{raw.dtype} with shape {raw.shape}")
      values = raw.astype(np.float64) * self.png_scale
      values[raw == 0] = np.nan
    else:
      raise ValueError(f"depth file {path}: unknown extension {suffix!r}, expected {EXTENSIONS}")
    # Models often save a singleton channel axis, in front or behind.
    if values.ndim == 3 and values.shape[0] == 1:
      values = values[0]
    elif values.ndim == 3 and values.shape[-1] == 1:
      values = values[..., 0]
    if values.ndim != 2:
      raise ValueError(f"depth file {path}: expected an (h, w) map, got shape {values.shape}")
    return values

  def read(self, image_name: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Depth-like map of one image: ((h, w) float32 depth, 0 where invalid; (h, w) bool valid)."""
    raw = self.read_raw(self.path_for(image_name))
    valid = np.isfinite(raw) & (raw > 0)
    safe = np.where(valid, raw, 1.0)
    depth = np.where(valid, 1.0 / safe if self.disparity else safe, 0.0)
    return depth.astype(np.float32), valid

  def __call__(self, image_names: Sequence[str | os.PathLike]) -> DepthLabels:
    """Pseudo-labels of v images (all maps must have the same size).

    Returns:
      `DepthLabels` with (v, h, w) arrays in the order of `image_names`.
    Raises:
      FileNotFoundError / ValueError naming the missing, ambiguous or corrupt file, or the file
      whose size differs from the first one.
    """
    depths, valids = [], []
    for name in image_names:
      depth, valid = self.read(name)
      if depths and depth.shape != depths[0].shape:
        raise ValueError(f"depth file {self.path_for(name)} is {depth.shape}, but "
                         f"{self.path_for(image_names[0])} is {depths[0].shape}")
      depths.append(depth)
      valids.append(valid)
    if not depths:
      raise ValueError("no image names given")
    return DepthLabels(np.stack(depths), np.stack(valids))
