"""File helpers of the readers, the export and the commands: every error names the file (and line)
at fault.

All images come back as numpy arrays in the package's layout: RGB uint8 (h, w, 3), labels uint8
(h, w), raw 16-bit depth uint16 (h, w).
"""
from __future__ import annotations

import json
import os
import pathlib
from typing import Sequence

import cv2
import numpy as np

from jaxrecon.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def require_file(path: str | os.PathLike, what: str) -> pathlib.Path:
  """`path` as a Path; FileNotFoundError naming it (and what it should hold) when absent."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"{what} not found: {path}")
  return path


def require_dir(path: str | os.PathLike, what: str) -> pathlib.Path:
  """`path` as a Path; FileNotFoundError naming it when it is not a directory."""
  path = pathlib.Path(path)
  if not path.is_dir():
    raise FileNotFoundError(f"{what} not found: {path}")
  return path


def _imread(path: pathlib.Path, flags: int) -> np.ndarray:
  # cv2.imread returns None (no exception) for a corrupt or unsupported file.
  array = cv2.imread(str(path), flags)
  if array is None:
    raise UserError(f"cv2 cannot read image {path}")
  return array


def read_rgb(path: str | os.PathLike) -> np.ndarray:
  """An image file as uint8 RGB (h, w, 3); grey and alpha images are converted (alpha dropped)."""
  path = require_file(path, "image")
  bgr = _imread(path, cv2.IMREAD_COLOR)
  if bgr.dtype != np.uint8:
    raise UserError(f"image {path}: expected 8-bit pixels, got {bgr.dtype}")
  return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_rgba(path: str | os.PathLike) -> np.ndarray:
  """An image file as uint8 RGBA (h, w, 4); images without alpha get alpha = 255 (opaque)."""
  path = require_file(path, "image")
  raw = _imread(path, cv2.IMREAD_UNCHANGED)
  if raw.dtype != np.uint8:
    raise UserError(f"image {path}: expected 8-bit pixels, got {raw.dtype}")
  if raw.ndim == 2:
    return cv2.cvtColor(raw, cv2.COLOR_GRAY2RGBA)
  if raw.shape[-1] == 3:
    return cv2.cvtColor(raw, cv2.COLOR_BGR2RGBA)
  return cv2.cvtColor(raw, cv2.COLOR_BGRA2RGBA)


def read_single_channel(path: str | os.PathLike, dtype, what: str) -> np.ndarray:
  """A one-channel image file (h, w) of exactly `dtype` (uint8 labels, uint16 depth)."""
  path = require_file(path, what)
  raw = _imread(path, cv2.IMREAD_UNCHANGED)
  if raw.ndim != 2:
    raise UserError(f"{what} {path}: expected one channel, got shape {raw.shape}")
  if raw.dtype != dtype:
    raise UserError(f"{what} {path}: expected {np.dtype(dtype).name} pixels, got {raw.dtype}")
  return raw


def write_png(path: pathlib.Path, array: np.ndarray) -> None:
  """Writes uint8 RGB (h, w, 3) or one-channel (h, w) uint8 / uint16 as PNG (lossless)."""
  path.parent.mkdir(parents=True, exist_ok=True)
  if array.ndim == 3:
    array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
  if not cv2.imwrite(str(path), array):
    raise OSError(f"cv2 cannot write {path}")


def list_images(folder: pathlib.Path) -> list[pathlib.Path]:
  """Image files directly in `folder`, sorted by name; FileNotFoundError when there are none."""
  found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
  if not found:
    raise FileNotFoundError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
  return found


def read_json(path: pathlib.Path, what: str):
  """Parsed JSON; ValueError naming the file and the line of a syntax error."""
  path = require_file(path, what)
  try:
    return json.loads(path.read_text())
  except json.JSONDecodeError as error:
    raise UserError(f"{path}: line {error.lineno}: invalid JSON: {error.msg}") from None


def parse_floats(fields: Sequence[str], where: str, first_column: int = 1) -> np.ndarray:
  """Text fields -> float64 array; ValueError naming `where` (file and line) and the column.

  NaN and inf are rejected: a camera with them would poison every later computation.
  """
  values = []
  for column, text in enumerate(fields, start=first_column):
    try:
      value = float(text)
    except ValueError:
      raise UserError(f"{where}: field {column} is not a number: {text!r}") from None
    if not np.isfinite(value):
      raise UserError(f"{where}: field {column} is not finite: {text!r}")
    values.append(value)
  return np.asarray(values, dtype=np.float64)


def as_matrix(value, shape: tuple[int, int], where: str) -> np.ndarray:
  """A JSON nested list -> finite float64 array of `shape`; ValueError naming `where` otherwise."""
  try:
    array = np.asarray(value, dtype=np.float64)
  except (TypeError, ValueError):
    raise UserError(f"{where}: expected a {shape[0]}x{shape[1]} matrix of numbers") from None
  if array.shape != shape:
    raise UserError(f"{where}: expected a {shape[0]}x{shape[1]} matrix, got shape {array.shape}")
  if not np.all(np.isfinite(array)):
    raise UserError(f"{where}: matrix has non-finite entries")
  return array


def stack_same_size(arrays: Sequence[np.ndarray], paths: Sequence[pathlib.Path]) -> np.ndarray:
  """Stacks per-view arrays; ValueError naming the first file whose size differs from the first."""
  for array, path in zip(arrays, paths):
    if array.shape[:2] != arrays[0].shape[:2]:
      raise UserError(f"{path}: size {array.shape[1]}x{array.shape[0]} differs from "
                       f"{paths[0]} ({arrays[0].shape[1]}x{arrays[0].shape[0]}); all views of "
                       f"a scene must have one size")
  return np.stack(arrays)
