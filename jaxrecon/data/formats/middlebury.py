"""Reader for the Middlebury multi-view stereo calibration format (`*_par.txt`).

Format (Seitz et al., CVPR 2006): the first line holds the number of views, then one line per view

    imgname.png k11 k12 k13 k21 k22 k23 k31 k32 k33 r11 r12 r13 r21 r22 r23 r31 r32 r33 t1 t2 t3

with the projection P = K [R | t]: world -> homogeneous pixel, [R | t] = `cam_from_world`, OpenCV
camera axes, image origin top-left (the conventions of `jaxrecon.geometry`). World units are those
of the data set (metres for templeRing / dinoRing).

`read_middlebury` returns the views whose images exist as a `Scene`; `read_cameras` and
`load_views` give the calibration alone and the raw (cameras, images) pairs.
"""
from __future__ import annotations

import os
import pathlib
from typing import NamedTuple

import cv2
import numpy as np

from jaxrecon.errors import UserError
from jaxrecon.io import files
from jaxrecon.data.scene import Scene

# Name, 9 entries of K, 9 of R, 3 of t.
_FIELDS_PER_LINE = 1 + 9 + 9 + 3


class MiddleburyCameras(NamedTuple):
  """Calibrated views of one Middlebury set, in file order.

  names: tuple of v image file names (as written in the file, e.g. "templeR0013.png").
  intrinsics: (v, 3, 3) float64 K, pixels.
  cam_from_world: (v, 4, 4) float64 rigid world -> camera transforms, world units.
  """
  names: tuple[str, ...]
  intrinsics: np.ndarray
  cam_from_world: np.ndarray

  @property
  def projections(self) -> np.ndarray:
    """(v, 3, 4) float64 world -> homogeneous pixel projection matrices K [R | t]."""
    return self.intrinsics @ self.cam_from_world[:, :3, :]

  def select(self, names) -> "MiddleburyCameras":
    """The views called `names` (an iterable of file names), in that order; KeyError if absent."""
    index = {name: i for i, name in enumerate(self.names)}
    missing = [name for name in names if name not in index]
    if missing:
      raise KeyError(f"views not in the calibration: {missing}")
    rows = np.asarray([index[name] for name in names], dtype=np.int64)
    return MiddleburyCameras(tuple(names), self.intrinsics[rows], self.cam_from_world[rows])


class MiddleburyViews(NamedTuple):
  """The views of a Middlebury folder whose images exist, sorted by name.

  cameras: `MiddleburyCameras` of those v views.
  images: list of v uint8 RGB images, each (h, w, 3).
  """
  cameras: MiddleburyCameras
  images: list[np.ndarray]


def _parse_count(line: str, path: os.PathLike) -> int:
  fields = line.split()
  if len(fields) != 1:
    raise UserError(f"{path}: line 1: expected the number of views (1 field), got {len(fields)} "
                     f"fields")
  try:
    count = int(fields[0])
  except ValueError:
    raise UserError(
        f"{path}: line 1: the number of views is not an integer: {fields[0]!r}") from None
  if count < 0:
    raise UserError(f"{path}: line 1: negative number of views {count}")
  return count


def _parse_view(line: str, lineno: int, path: os.PathLike):
  """One view line -> (name, K (3, 3), cam_from_world (4, 4)); lineno is 1-based, for errors."""
  fields = line.split()
  if len(fields) != _FIELDS_PER_LINE:
    raise UserError(f"{path}: line {lineno}: expected {_FIELDS_PER_LINE} fields (name, 9 of K, "
                     f"9 of R, 3 of t), got {len(fields)}")
  values = []
  for column, text in enumerate(fields[1:], start=2):
    try:
      value = float(text)
    except ValueError:
      raise UserError(f"{path}: line {lineno}: field {column} is not a number: {text!r}") from None
    # float() accepts "nan" and "inf"; a camera with them would poison every later computation.
    if not np.isfinite(value):
      raise UserError(f"{path}: line {lineno}: field {column} is not finite: {text!r}")
    values.append(value)
  values = np.asarray(values, dtype=np.float64)
  cam_from_world = np.eye(4)
  cam_from_world[:3, :3] = values[9:18].reshape(3, 3)
  cam_from_world[:3, 3] = values[18:21]
  return fields[0], values[:9].reshape(3, 3), cam_from_world


def read_cameras(path: str | os.PathLike) -> MiddleburyCameras:
  """Reads a Middlebury `*_par.txt` calibration file.

  Blank lines are ignored (line numbers in errors are those of the file).
  Returns:
    `MiddleburyCameras` with all views listed in the file, in file order.
  Raises:
    FileNotFoundError if `path` does not exist; ValueError naming the file (and the line) for an
    empty file, a bad count line, a view line without exactly 22 fields, a non-numeric or non-finite
    number, a repeated image name, or a count that differs from the number of view lines.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"Middlebury calibration file not found: {path}")
  numbered = [(i, line) for i, line in enumerate(path.read_text().splitlines(), start=1)
              if line.strip()]
  if not numbered:
    raise UserError(f"{path}: empty calibration file")
  count_lineno, count_line = numbered[0]
  if count_lineno != 1:
    raise UserError(f"{path}: line 1 is blank; expected the number of views")
  count = _parse_count(count_line, path)
  names, intrinsics, poses = [], [], []
  for lineno, line in numbered[1:]:
    name, k, pose = _parse_view(line, lineno, path)
    if name in names:
      raise UserError(f"{path}: line {lineno}: image {name!r} is listed twice")
    names.append(name)
    intrinsics.append(k)
    poses.append(pose)
  if len(names) != count:
    raise UserError(f"{path}: line 1 announces {count} views but the file lists {len(names)}")
  return MiddleburyCameras(tuple(names), np.asarray(intrinsics, dtype=np.float64).reshape(-1, 3, 3),
                           np.asarray(poses, dtype=np.float64).reshape(-1, 4, 4))


def find_calibration(folder: str | os.PathLike) -> pathlib.Path:
  """The single `*_par.txt` file in `folder`; FileNotFoundError if none, ValueError if several."""
  folder = pathlib.Path(folder)
  if not folder.is_dir():
    raise FileNotFoundError(f"Middlebury folder not found: {folder}")
  found = sorted(folder.glob("*_par.txt"))
  if not found:
    raise FileNotFoundError(f"no *_par.txt calibration file in {folder}")
  if len(found) > 1:
    raise UserError(f"several calibration files in {folder}: {[p.name for p in found]}; "
                     f"pass one explicitly")
  return found[0]


def read_image(path: str | os.PathLike) -> np.ndarray:
  """Reads an image file as uint8 RGB (h, w, 3).

  Raises:
    FileNotFoundError if it does not exist; ValueError naming the file if cv2 cannot decode it or
    it is not 8-bit.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"image not found: {path}")
  # IMREAD_COLOR: grey or alpha images come back as 3 channels too, so every view has one layout.
  bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
  if bgr is None:
    raise UserError(f"cv2 cannot read image {path}")
  if bgr.dtype != np.uint8:
    raise UserError(f"image {path}: expected 8-bit pixels, got {bgr.dtype}")
  return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def load_views(folder: str | os.PathLike, calibration: str | os.PathLike | None = None,
               ) -> MiddleburyViews:
  """Loads the calibrated views of a Middlebury folder whose image files exist.

  The calibration file lists every view of the full set, while a folder often holds only some of
  the images (templeRing here: 19 of 47), so listed views without a file are skipped.
  Args:
    folder: directory with the images.
    calibration: the `*_par.txt` file; default: the only one in `folder`.
  Returns:
    `MiddleburyViews` sorted by image name.
  Raises:
    FileNotFoundError if the folder or calibration is missing or no listed image exists; ValueError
    from `read_cameras`, or naming an image that cv2 cannot read.
  """
  folder = pathlib.Path(folder)
  calibration = find_calibration(folder) if calibration is None else pathlib.Path(calibration)
  cameras = read_cameras(calibration)
  present = sorted(name for name in cameras.names if (folder / name).is_file())
  if not present:
    raise FileNotFoundError(f"none of the {len(cameras.names)} images listed in {calibration} "
                            f"exists in {folder}")
  images = [read_image(folder / name) for name in present]
  return MiddleburyViews(cameras.select(present), images)


def read_middlebury(folder: str | os.PathLike, calibration: str | os.PathLike | None = None,
                    ) -> Scene:
  """The calibrated views of a Middlebury folder as a `Scene` (no depth, no labels).

  Args:
    folder: directory with the images (and, by default, the single `*_par.txt`).
    calibration: the `*_par.txt` file; default: the only one in `folder`.
  Returns:
    `Scene` of the v views whose image exists, sorted by file name: images (v, h, w, 3) uint8,
    intrinsics (v, 3, 3) pixels, cam_from_world (v, 4, 4) in the data set's world units, names =
    file stems (e.g. "templeR0013"), name = the folder's name.
  Raises:
    as `load_views`, and ValueError naming the first image whose size differs from the others.
  """
  folder = pathlib.Path(folder)
  views = load_views(folder, calibration)
  paths = [folder / name for name in views.cameras.names]
  images = files.stack_same_size(views.images, paths)
  return Scene(images=images, intrinsics=views.cameras.intrinsics,
               cam_from_world=views.cameras.cam_from_world,
               names=tuple(pathlib.Path(n).stem for n in views.cameras.names), name=folder.name)
