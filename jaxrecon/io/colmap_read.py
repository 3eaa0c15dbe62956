"""Parsers of COLMAP text models (`cameras.txt`, `images.txt`, `points3D.txt`); the writers are
`colmap_text` and `colmap_sparse`, and `jaxrecon.data.formats.read_colmap` turns a model and its
images into a `Scene`.

cameras.txt, one line per camera ('#' lines are comments):

    CAMERA_ID MODEL WIDTH HEIGHT PARAMS...
    SIMPLE_PINHOLE: f cx cy        PINHOLE: fx fy cx cy

Any other model (with distortion) is rejected: the package's cameras are pinholes.

images.txt, two lines per image: `IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME` (the world-to-camera
rotation as a scalar-first quaternion and translation, OpenCV axes), then the image's 2D points
`X Y POINT3D_ID ...` (may be empty; skipped by `read_images_txt`, read by `read_points2d_txt`).

points3D.txt (optional, `read_points3d_txt`): `POINT3D_ID X Y Z R G B ERROR TRACK[]`, TRACK[] as
(IMAGE_ID, POINT2D_IDX) pairs indexing the images' 2D points.

Pixel convention: COLMAP puts the centre of the top-left pixel at (0.5, 0.5); the package puts it
at (0, 0). So cx, cy are shifted by -0.5 on reading (focal lengths are unchanged).
"""
from __future__ import annotations

import os
import pathlib
from typing import NamedTuple

import numpy as np

from jaxrecon.errors import UserError
from jaxrecon.io import files

SUPPORTED_MODELS = {"SIMPLE_PINHOLE": 3, "PINHOLE": 4}  # model -> number of parameters


class ColmapCamera(NamedTuple):
  """One COLMAP camera: K (3, 3) float64 in the package's pixel convention; size in pixels."""
  intrinsics: np.ndarray
  width: int
  height: int


def _content_lines(path: pathlib.Path):
  """(1-based line number, text) of the lines that are not comments (blank lines kept)."""
  for lineno, line in enumerate(path.read_text().splitlines(), start=1):
    if not line.lstrip().startswith("#"):
      yield lineno, line


def read_cameras_txt(path: str | os.PathLike) -> dict[int, ColmapCamera]:
  """Parses cameras.txt -> {camera id: ColmapCamera}.

  Raises:
    FileNotFoundError naming a missing file; ValueError naming the file and line for an
    unsupported camera model (named), a wrong number of fields, a non-numeric value, a repeated
    id, or a non-positive size or focal length.
  """
  path = files.require_file(path, "COLMAP cameras file")
  cameras = {}
  for lineno, line in _content_lines(path):
    fields = line.split()
    if not fields:
      continue
    where = f"{path}: line {lineno}"
    if len(fields) < 4:
      raise UserError(f"{where}: expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS..., got "
                       f"{len(fields)} fields")
    model = fields[1]
    if model not in SUPPORTED_MODELS:
      raise UserError(f"{where}: camera model {model!r} is not supported (only "
                       f"{', '.join(SUPPORTED_MODELS)}: undistort the images first)")
    if len(fields) != 4 + SUPPORTED_MODELS[model]:
      raise UserError(f"{where}: a {model} camera has {4 + SUPPORTED_MODELS[model]} fields, got "
                       f"{len(fields)}")
    try:
      camera_id, width, height = int(fields[0]), int(fields[2]), int(fields[3])
    except ValueError:
      raise UserError(f"{where}: CAMERA_ID, WIDTH and HEIGHT must be integers") from None
    params = files.parse_floats(fields[4:], where, first_column=5)
    if model == "SIMPLE_PINHOLE":
      params = np.array([params[0], params[0], params[1], params[2]])
    fx, fy, cx, cy = params
    if width <= 0 or height <= 0 or fx <= 0 or fy <= 0:
      raise UserError(f"{where}: size and focal lengths must be positive")
    if camera_id in cameras:
      raise UserError(f"{where}: camera id {camera_id} is listed twice")
    # -0.5: COLMAP's top-left pixel centre is (0.5, 0.5), ours is (0, 0).
    k = np.array([[fx, 0.0, cx - 0.5], [0.0, fy, cy - 0.5], [0.0, 0.0, 1.0]])
    cameras[camera_id] = ColmapCamera(k, width, height)
  if not cameras:
    raise UserError(f"{path}: no cameras")
  return cameras


def wxyz_to_matrix(q: np.ndarray) -> np.ndarray:
  """(3, 3) rotation of a scalar-first quaternion (w, x, y, z) (normalised first)."""
  w, x, y, z = q / np.linalg.norm(q)
  return np.array([
      [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
      [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
      [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def read_images_txt(path: str | os.PathLike) -> list[tuple[str, int, np.ndarray]]:
  """Parses images.txt -> [(image name, camera id, cam_from_world (4, 4))] in file order.

  The first line of each pair is parsed; the second (2D points) is skipped unread.
  Raises:
    FileNotFoundError naming a missing file; ValueError naming the file and line for a wrong
    number of fields, a non-numeric value, a zero quaternion or a repeated image name.
  """
  path = files.require_file(path, "COLMAP images file")
  lines = list(_content_lines(path))
  # Leading and trailing blank lines are not a pair; an image whose points line is blank is.
  while lines and not lines[-1][1].strip():
    lines.pop()
  while lines and not lines[0][1].strip():
    lines.pop(0)
  result, seen = [], set()
  for lineno, line in lines[::2]:
    where = f"{path}: line {lineno}"
    fields = line.split()
    if len(fields) != 10:
      raise UserError(f"{where}: expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME (10 "
                       f"fields), got {len(fields)}")
    values = files.parse_floats(fields[1:8], where, first_column=2)
    try:
      camera_id = int(fields[8])
    except ValueError:
      raise UserError(f"{where}: CAMERA_ID is not an integer: {fields[8]!r}") from None
    if np.linalg.norm(values[:4]) < 1e-8:
      raise UserError(f"{where}: zero quaternion")
    if fields[9] in seen:
      raise UserError(f"{where}: image {fields[9]!r} is listed twice")
    seen.add(fields[9])
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = wxyz_to_matrix(values[:4]), values[4:]
    result.append((fields[9], camera_id, pose))
  if not result:
    raise UserError(f"{path}: no images")
  return result


class ColmapPoints2D(NamedTuple):
  """The POINTS2D line of one image: xy (n, 2) float64 in the package's pixel convention (COLMAP's
  minus 0.5), point3d_ids (n,) int64 (-1: the keypoint is in no 3D point)."""
  image_id: int
  xy: np.ndarray
  point3d_ids: np.ndarray


class ColmapPoint3D(NamedTuple):
  """One points3D.txt row: xyz (3,) float64, rgb (3,) uint8, error (px), track (m, 2) int64 of
  (IMAGE_ID, POINT2D_IDX)."""
  xyz: np.ndarray
  rgb: np.ndarray
  error: float
  track: np.ndarray


def read_points2d_txt(path: str | os.PathLike) -> dict[str, ColmapPoints2D]:
  """images.txt -> {image name: ColmapPoints2D} (the 2D points `read_images_txt` skips).

  Raises:
    as `read_images_txt`; ValueError naming the file and line for a POINTS2D line whose field
    count is not a multiple of 3, a non-numeric coordinate or a non-integer POINT3D_ID.
  """
  path = files.require_file(path, "COLMAP images file")
  read_images_txt(path)          # the header lines' checks
  lines = list(_content_lines(path))
  while lines and not lines[-1][1].strip():
    lines.pop()
  while lines and not lines[0][1].strip():
    lines.pop(0)
  lines.append((lines[-1][0] + 1, ""))   # the last image's points line may be missing
  result = {}
  for (_, header), (lineno, points) in zip(lines[::2], lines[1::2]):
    fields, where = points.split(), f"{path}: line {lineno}"
    if len(fields) % 3:
      raise UserError(f"{where}: POINTS2D[] are (X, Y, POINT3D_ID) triples, got {len(fields)} "
                       f"fields")
    triples = np.asarray(fields, dtype=object).reshape(-1, 3)
    xy = files.parse_floats(triples[:, :2].ravel().tolist(), where).reshape(-1, 2)
    try:
      ids = np.asarray([int(x) for x in triples[:, 2]], np.int64)
    except ValueError:
      raise UserError(f"{where}: a POINT3D_ID is not an integer") from None
    head = header.split()
    # -0.5: COLMAP's top-left pixel centre is (0.5, 0.5), ours is (0, 0).
    result[head[9]] = ColmapPoints2D(int(head[0]), xy - 0.5, ids)
  return result


def read_points3d_txt(path: str | os.PathLike) -> dict[int, ColmapPoint3D]:
  """points3D.txt -> {POINT3D_ID: ColmapPoint3D}; may be empty.

  Raises:
    FileNotFoundError naming a missing file; ValueError naming the file and line for fewer than 8
    fields, an odd track, a non-numeric value or a repeated id.
  """
  path = files.require_file(path, "COLMAP points3D file")
  result = {}
  for lineno, line in _content_lines(path):
    fields, where = line.split(), f"{path}: line {lineno}"
    if not fields:
      continue
    if len(fields) < 8 or (len(fields) - 8) % 2:
      raise UserError(f"{where}: expected POINT3D_ID X Y Z R G B ERROR then (IMAGE_ID, "
                       f"POINT2D_IDX) pairs, got {len(fields)} fields")
    try:
      point_id, rgb = int(fields[0]), np.asarray([int(x) for x in fields[4:7]], np.uint8)
      track = np.asarray([int(x) for x in fields[8:]], np.int64).reshape(-1, 2)
    except ValueError:
      raise UserError(f"{where}: POINT3D_ID, R G B and the track must be integers") from None
    if point_id in result:
      raise UserError(f"{where}: point id {point_id} is listed twice")
    values = files.parse_floats(fields[1:4] + fields[7:8], where, first_column=2)
    result[point_id] = ColmapPoint3D(values[:3], rgb, float(values[3]), track)
  return result
