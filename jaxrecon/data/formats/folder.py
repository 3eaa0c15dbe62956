"""The package's own generic scene folder: reader and writer (lossless round trip of a `Scene`).

Layout (names are image file stems; views are sorted by name):

    images/<name>.png          required; any 8-bit format cv2 reads (.png .jpg .jpeg .bmp .tif)
    intrinsics.json            optional, either a 3x3 nested list (one K for every view) or an
                               object {"<name>": 3x3 list} with one K per view
    intrinsics.txt             optional alternative to the JSON (not both), either 3 lines of 3
                               numbers (one K for every view) or one line per view
                               `<name> k11 k12 k13 k21 k22 k23 k31 k32 k33`; '#' lines are comments
    poses.json                 optional, {"<name>": 4x4 list}: cam_from_world (world -> camera) per
                               view, OpenCV axes
    depth/<name>.npy           optional, float32 (h, w) camera z in world units, 0 = unknown
    labels/<name>.png          optional, uint8 (h, w) class per pixel, 255 = ignore

K is in pixels with the package's convention (top-left pixel centre at (0, 0)). An optional file
or folder, when present, must cover every view.
"""
from __future__ import annotations

import json
import os
import pathlib

import numpy as np

from jaxrecon.errors import UserError
from jaxrecon.io import files
from jaxrecon.io.poses import check_rotation
from jaxrecon.data.scene import Scene


def _per_view_matrices(value, names, shape, path: pathlib.Path) -> np.ndarray:
  """JSON value -> (v, *shape): one shared matrix (a nested list) or {name: matrix}."""
  if isinstance(value, list):
    matrix = files.as_matrix(value, shape, str(path))
    return np.broadcast_to(matrix, (len(names),) + shape).copy()
  if not isinstance(value, dict):
    raise UserError(f"{path}: expected a {shape[0]}x{shape[1]} list or an object keyed by "
                     f"image name")
  missing = [name for name in names if name not in value]
  if missing:
    raise UserError(f"{path}: no entry for images {missing}")
  return np.stack([files.as_matrix(value[name], shape, f"{path}: entry {name!r}")
                   for name in names])


def _read_intrinsics_txt(path: pathlib.Path, names) -> np.ndarray:
  rows = [(lineno, line.split()) for lineno, line in
          enumerate(path.read_text().splitlines(), start=1)
          if line.strip() and not line.lstrip().startswith("#")]
  if not rows:
    raise UserError(f"{path}: empty intrinsics file")
  # The first line decides the form (3 numbers: one shared K); a later line that breaks it is
  # the one named, not the first.
  if len(rows[0][1]) == 3:
    for lineno, fields in rows:
      if len(fields) != 3:
        raise UserError(f"{path}: line {lineno}: a shared K has 3 lines of 3 numbers, got "
                        f"{len(fields)} fields")
    if len(rows) != 3:
      raise UserError(f"{path}: a shared K has 3 lines of 3 numbers, got {len(rows)} lines")
    k = np.stack([files.parse_floats(fields, f"{path}: line {lineno}") for lineno, fields in rows])
    return np.broadcast_to(k, (len(names), 3, 3)).copy()
  per_view = {}
  for lineno, fields in rows:
    where = f"{path}: line {lineno}"
    if len(fields) != 10:
      raise UserError(f"{where}: expected `name k11 ... k33` (10 fields), got {len(fields)}")
    if fields[0] in per_view:
      raise UserError(f"{where}: image {fields[0]!r} is listed twice")
    per_view[fields[0]] = files.parse_floats(fields[1:], where, first_column=2).reshape(3, 3)
  missing = [name for name in names if name not in per_view]
  if missing:
    raise UserError(f"{path}: no line for images {missing}")
  return np.stack([per_view[name] for name in names])


def read_intrinsics_file(path: pathlib.Path, names) -> np.ndarray:
  """K (v, 3, 3) float64 for the images `names` from an intrinsics file of this format: JSON (one
  3x3 list for all, or {name: 3x3}) when the suffix is .json, else text (3 lines of 3 numbers, or
  `name k11 ... k33` per line). ValueError naming the file when malformed."""
  path = pathlib.Path(path)
  if path.suffix.lower() == ".json":
    k = _per_view_matrices(files.read_json(path, "intrinsics"), list(names), (3, 3), path)
  else:
    k = _read_intrinsics_txt(path, list(names))
  if not (np.all(k[:, 0, 0] > 0) and np.all(k[:, 1, 1] > 0)
          and np.all(k[:, 2] == [0.0, 0.0, 1.0]) and np.all(k[:, 1, 0] == 0)):
    raise UserError(f"{path}: K must be upper triangular with fx, fy > 0 and last row 0 0 1")
  return k


def _read_intrinsics(folder: pathlib.Path, names):
  json_path, txt_path = folder / "intrinsics.json", folder / "intrinsics.txt"
  if json_path.is_file() and txt_path.is_file():
    raise UserError(f"{folder}: both intrinsics.json and intrinsics.txt exist; keep one")
  for path in (json_path, txt_path):
    if path.is_file():
      return read_intrinsics_file(path, names)
  return None


def _read_poses(path: pathlib.Path, names):
  if not path.is_file():
    return None
  value = files.read_json(path, "poses")
  if not isinstance(value, dict):
    raise UserError(f"{path}: expected an object {{image name: 4x4 cam_from_world}}")
  poses = _per_view_matrices(value, names, (4, 4), path)
  for name, pose in zip(names, poses):
    check_rotation(pose[:3, :3], f"{path}: entry {name!r}")
    if not np.allclose(pose[3], [0, 0, 0, 1]):
      raise UserError(f"{path}: entry {name!r}: last row must be 0 0 0 1")
  return poses


def _read_depth(folder: pathlib.Path, names, size):
  if not folder.is_dir():
    return None
  maps = []
  for name in names:
    path = files.require_file(folder / f"{name}.npy", "depth map")
    try:
      depth = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
      raise UserError(f"depth map {path}: not a valid .npy file ({error})") from None
    if depth.shape != size or depth.dtype.kind != "f":
      raise UserError(f"depth map {path}: expected float (h, w) = {size}, got {depth.dtype} "
                       f"{depth.shape}")
    if not np.all(np.isfinite(depth)) or np.any(depth < 0):
      raise UserError(f"depth map {path}: values must be finite and >= 0 (0 = unknown)")
    maps.append(depth.astype(np.float32))
  return np.stack(maps)


def _read_labels(folder: pathlib.Path, names, size):
  if not folder.is_dir():
    return None
  maps = []
  for name in names:
    labels = files.read_single_channel(folder / f"{name}.png", np.uint8, "label image")
    if labels.shape != size:
      raise UserError(f"label image {folder / name}.png: size {labels.shape} differs from the "
                       f"image's {size}")
    maps.append(labels)
  return np.stack(maps)


def read_folder(folder: str | os.PathLike) -> Scene:
  """Reads a generic scene folder (layout in the module docstring) as a `Scene`.

  Returns:
    `Scene` sorted by image name with whichever of intrinsics (v, 3, 3), cam_from_world
    (v, 4, 4), depth (v, h, w) float32 and labels (v, h, w) uint8 are present; name = the
    folder's name.
  Raises:
    FileNotFoundError naming a missing folder, images/ or per-view file; ValueError naming the
    file (and line) of any malformed content or mismatched size.
  """
  folder = files.require_dir(folder, "scene folder")
  paths = files.list_images(files.require_dir(folder / "images", "images folder"))
  names = [p.stem for p in paths]
  if len(set(names)) != len(names):
    raise UserError(f"{folder / 'images'}: two images share a name up to the suffix")
  images = files.stack_same_size([files.read_rgb(p) for p in paths], paths)
  size = images.shape[1:3]
  return Scene(images=images, intrinsics=_read_intrinsics(folder, names),
               cam_from_world=_read_poses(folder / "poses.json", names),
               depth=_read_depth(folder / "depth", names, size),
               labels=_read_labels(folder / "labels", names, size),
               names=tuple(names), name=folder.name)


def write_folder(scene: Scene, folder: str | os.PathLike) -> pathlib.Path:
  """Writes `scene` in the generic folder layout; `read_folder` gives it back exactly.

  Images and labels are PNG (lossless), depth .npy float32, K per view in intrinsics.json and
  poses in poses.json (JSON floats keep float64 exactly). `scene.name` is not stored: the
  folder's name is the scene's name on reading.
  Returns:
    The folder.
  Raises:
    FileExistsError if `folder` exists and is not empty (nothing is overwritten); ValueError for
    a view name that is not a plain file name (the reader lists images/ only, not below it).
  """
  folder = pathlib.Path(folder)
  for name in scene.names:
    if not name or name != pathlib.PurePath(name).name or name.startswith(".") or "\\" in name:
      raise UserError(f"view name {name!r} is not a plain file name; rename the views first")
  if folder.exists() and any(folder.iterdir()):
    raise FileExistsError(f"scene folder exists and is not empty: {folder}")
  names = list(scene.names)
  for i, name in enumerate(names):
    files.write_png(folder / "images" / f"{name}.png", np.asarray(scene.images[i]))
    if scene.labels is not None:
      files.write_png(folder / "labels" / f"{name}.png", np.asarray(scene.labels[i]))
    if scene.depth is not None:
      (folder / "depth").mkdir(exist_ok=True)
      np.save(folder / "depth" / f"{name}.npy", np.asarray(scene.depth[i], np.float32))
  for field, file_name in (("intrinsics", "intrinsics.json"), ("cam_from_world", "poses.json")):
    value = getattr(scene, field)
    if value is not None:
      table = {name: np.asarray(value[i], np.float64).tolist() for i, name in enumerate(names)}
      (folder / file_name).write_text(json.dumps(table, indent=1))
  return folder
