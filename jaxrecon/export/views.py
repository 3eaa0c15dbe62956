"""Inputs and per-view outputs of a reconstruction: images, intrinsics, maps, poses.json."""
from __future__ import annotations

import json
import os
import pathlib
import shutil
from typing import Optional, Sequence

import cv2
import matplotlib
import numpy as np

from jaxrecon.data.formats import folder as folder_format
from jaxrecon.errors import UserError
from jaxrecon.io import files

INTRINSICS_NAMES = ("intrinsics.json", "intrinsics.txt")


def read_images(image_dir: str | os.PathLike) -> tuple[list[pathlib.Path], np.ndarray]:
  """All images directly in `image_dir`, sorted by file name.

  Returns:
    (paths, images (v, h, w, 3) uint8 RGB).
  Raises:
    FileNotFoundError naming a missing folder or one without images; ValueError naming an
    unreadable image file, two files with one stem, or the first image whose size differs.
  """
  paths = files.list_images(files.require_dir(image_dir, "images folder"))
  stems = [p.stem for p in paths]
  if len(set(stems)) != len(stems):
    raise UserError(f"{image_dir}: two images share a name up to the suffix")
  return paths, files.stack_same_size([files.read_rgb(p) for p in paths], paths)


def find_intrinsics(image_dir: pathlib.Path, explicit: Optional[str] = None) -> pathlib.Path:
  """The intrinsics file: `explicit` if given, else intrinsics.json / .txt in the images folder,
  else in its parent. FileNotFoundError (listing where it looked) when there is none."""
  if explicit:
    return files.require_file(explicit, "intrinsics file")
  looked = []
  for folder in (image_dir, image_dir.parent):
    found = [folder / n for n in INTRINSICS_NAMES if (folder / n).is_file()]
    if len(found) > 1:
      raise UserError(f"{folder}: both intrinsics.json and intrinsics.txt exist; keep one")
    if found:
      return found[0]
    looked += [str(folder / n) for n in INTRINSICS_NAMES]
  raise FileNotFoundError("no intrinsics: pass --intrinsics=FILE or put intrinsics.json / "
                          "intrinsics.txt next to the images (looked for " + ", ".join(looked)
                          + ")")


def read_intrinsics(path: str | os.PathLike, names: Sequence[str]) -> np.ndarray:
  """K (v, 3, 3) float64 per image from a file in the generic folder format's intrinsics layout
  (`jaxrecon.data.formats.folder`): JSON (one 3x3 list or {stem: 3x3}) when the suffix is .json,
  else text (3 lines of 3 numbers, or `stem k11 ... k33` per line). Pixels in the package's
  convention (top-left pixel centre at (0, 0)). ValueError naming the file when malformed."""
  return folder_format.read_intrinsics_file(files.require_file(path, "intrinsics file"), names)


def resize_maps(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """(v, h, w) float maps -> (v, *size) float32, bilinear about pixel centres (cv2's rule
  u' = (u + 0.5) s - 0.5 matches the package's pixel convention)."""
  h, w = size
  return np.stack([cv2.resize(np.asarray(m, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
                   for m in maps])


def colorize(values: np.ndarray, *, cmap: str = "turbo", percentiles=(2.0, 98.0)) -> np.ndarray:
  """(h, w) float map -> (h, w, 3) uint8 RGB, the colour map spanning the map's own percentiles
  (non-finite values black)."""
  values = np.asarray(values, np.float64)
  finite = np.isfinite(values)
  if not finite.any():
    return np.zeros(values.shape + (3,), np.uint8)
  lo, hi = np.percentile(values[finite], percentiles)
  scaled = np.clip((values - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
  rgb = matplotlib.colormaps[cmap](np.where(finite, scaled, 0.0))[..., :3]
  return np.where(finite[..., None], np.round(rgb * 255), 0).astype(np.uint8)


# Everything `python -m jaxrecon.reconstruct` writes into --out, over both methods (the staged
# outputs of `io.staging.StagedOutput`: earlier ones of these names are replaced at the end).
OUTPUTS = ("depth", "confidence", "poses.json", "points.ply", "dense.ply", "colmap", "report.json",
           "report.md")


def write_maps(folder: pathlib.Path, names: Sequence[str], maps: np.ndarray, cmap: str) -> None:
  """Per-view maps (v, h, w) as `<folder>/<name>.npy` (float32) and a colour `<name>.png`."""
  folder.mkdir(parents=True, exist_ok=True)
  for name, values in zip(names, maps):
    np.save(folder / f"{name}.npy", np.asarray(values, np.float32))
    files.write_png(folder / f"{name}.png", colorize(values, cmap=cmap))


def colmap_names(file_names: Sequence[str]) -> list[str]:
  """COLMAP-safe image file names: whitespace (which images.txt cannot hold) becomes "_".
  UserError naming both files when two names become one. Checked before any work."""
  safe = ["_".join(name.split()) if name.strip() else name for name in file_names]
  seen = {}
  for name, new in zip(file_names, safe):
    if new in seen:
      raise UserError(f"images {seen[new]!r} and {name!r} both become {new!r} in the COLMAP "
                      f"model (whitespace -> '_'); rename one")
    seen[new] = name
  return safe


def write_colmap_images(folder: pathlib.Path, paths: Sequence[pathlib.Path],
                        names: Sequence[str]) -> None:
  """Copies the input images into `folder` under their COLMAP-safe `names`, and records the
  renamed ones in `folder`/../renamed.json ({COLMAP name: original file name})."""
  folder.mkdir(parents=True, exist_ok=True)
  for path, name in zip(paths, names):
    shutil.copy2(path, folder / name)
  renamed = {name: path.name for path, name in zip(paths, names) if name != path.name}
  if renamed:
    (folder.parent / "renamed.json").write_text(json.dumps(renamed, indent=1))
