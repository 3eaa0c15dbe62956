"""COLMAP text models (cameras.txt, images.txt, points3D.txt) of a reconstruction.

Round trip: `jaxrecon.data.formats.colmap.read_colmap(folder, image_dir)` reads back the same
intrinsics (package convention) and cam_from_world poses (float64 printed with 17 significant
digits, so only the rotation's re-orthonormalisation and quaternion normalisation change them, at
the 1e-15 level for a proper rotation).

Conventions written:
* cameras.txt: one PINHOLE camera per image, `CAMERA_ID PINHOLE WIDTH HEIGHT fx fy cx cy`, with
  COLMAP's pixel convention: the top-left pixel centre is (0.5, 0.5) in COLMAP and (0, 0) in the
  package, so cx, cy get +0.5 here (the reader subtracts it again).
* images.txt: `IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME`, the world-to-camera rotation as a
  scalar-first unit quaternion (qw >= 0) and translation (OpenCV axes, model units), then an empty
  2D-points line.
* points3D.txt: `POINT3D_ID X Y Z R G B ERROR TRACK[]` with ERROR 0 and an empty track (the
  points are fused from depth maps, not triangulated from matches); may have no points.
"""
from __future__ import annotations

import os
import pathlib

import numpy as np

from jaxrecon.errors import UserError


def _fmt(values) -> str:
  return " ".join(format(float(x), ".17g") for x in values)


def nearest_rotation(matrix: np.ndarray) -> np.ndarray:
  """The proper rotation (det +1) closest in Frobenius norm to a (3, 3) matrix (float64, SVD)."""
  u, _, vt = np.linalg.svd(np.asarray(matrix, np.float64))
  d = np.sign(np.linalg.det(u @ vt))
  return u @ np.diag([1.0, 1.0, d]) @ vt


def rotation_to_wxyz(rotation: np.ndarray) -> np.ndarray:
  """Scalar-first unit quaternion (w, x, y, z), w >= 0, of a (3, 3) rotation (Shepperd's method).

  Inverse of `jaxrecon.data.formats.colmap._wxyz_to_matrix` (the Hamilton convention COLMAP uses).
  """
  m = nearest_rotation(rotation)
  trace = np.trace(m)
  candidates = [trace, m[0, 0], m[1, 1], m[2, 2]]
  k = int(np.argmax(candidates))
  if k == 0:
    s = 2.0 * np.sqrt(1.0 + trace)
    q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
  elif k == 1:
    s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
    q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
  elif k == 2:
    s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
    q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
  else:
    s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
    q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
  q = np.asarray(q) / np.linalg.norm(q)
  return -q if q[0] < 0 else q


def check_views(caller: str, names, intrinsics, cam_from_world):
  """(names list, K (v, 3, 3) float64, cam_from_world float64) after checking that the counts
  agree and that every name fits images.txt (non-empty, no whitespace); ValueError naming
  `caller` otherwise."""
  names = list(names)
  intrinsics = np.asarray(intrinsics, np.float64)
  cam_from_world = np.asarray(cam_from_world, np.float64)
  v = len(names)
  if intrinsics.shape != (v, 3, 3) or cam_from_world.shape[0] != v:
    raise ValueError(f"{caller}: {v} names but intrinsics {intrinsics.shape} and "
                     f"cam_from_world {cam_from_world.shape}")
  for name in names:
    if not name or any(c.isspace() for c in name):
      raise UserError(f"{caller}: image name {name!r} is empty or has whitespace, "
                       f"which images.txt cannot hold")
  return names, intrinsics, cam_from_world


def camera_line(camera_id: int, k: np.ndarray, image_size) -> str:
  """cameras.txt line of a PINHOLE camera with K (3, 3) (package convention) for (h, w) images."""
  h, w = (int(s) for s in image_size)
  # +0.5: the package's top-left pixel centre is (0, 0), COLMAP's (0.5, 0.5).
  return (f"{camera_id} PINHOLE {w} {h} "
          + _fmt([k[0, 0], k[1, 1], k[0, 2] + 0.5, k[1, 2] + 0.5]))


def image_line(image_id: int, cam_from_world: np.ndarray, name: str) -> str:
  """images.txt first line of an image (camera id = image id): quaternion, translation, name."""
  return (f"{image_id} {_fmt(rotation_to_wxyz(cam_from_world[:3, :3]))} "
          f"{_fmt(cam_from_world[:3, 3])} {image_id} {name}")


def write_colmap_text(folder: str | os.PathLike, names, intrinsics, cam_from_world, image_size, *,
                      points=None) -> pathlib.Path:
  """Writes cameras.txt, images.txt and points3D.txt into `folder` (created).

  Args:
    folder: output folder (e.g. <out>/colmap/sparse/0).
    names: v image file names relative to the image folder (e.g. "0001.png"); no whitespace.
    intrinsics: (v, 3, 3) K in the package's pixel convention for images of `image_size`.
    cam_from_world: (v, 4, 4) or (v, 3, 4) world-to-camera poses, OpenCV axes.
    image_size: (h, w) in pixels of every image.
    points: optional (xyz (n, 3), rgb (n, 3) uint8) written to points3D.txt with empty tracks.
  Returns:
    The folder.
  """
  names, intrinsics, cam_from_world = check_views("write_colmap_text", names, intrinsics,
                                                  cam_from_world)
  v = len(names)
  h, w = (int(s) for s in image_size)
  folder = pathlib.Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  cameras = ["# Camera list with one line of data per camera:",
             "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[] (PINHOLE: fx fy cx cy; top-left pixel "
             "centre at (0.5, 0.5))", f"# Number of cameras: {v}"]
  images = ["# Image list with two lines of data per image:",
            "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME  (world-to-camera, OpenCV "
            "axes)", "#   POINTS2D[] as (X, Y, POINT3D_ID)  (empty here)",
            f"# Number of images: {v}"]
  for i, (name, k, pose) in enumerate(zip(names, intrinsics, cam_from_world), start=1):
    cameras.append(camera_line(i, k, (h, w)))
    images.append(image_line(i, pose, name))
    images.append("")
  (folder / "cameras.txt").write_text("\n".join(cameras) + "\n")
  (folder / "images.txt").write_text("\n".join(images) + "\n")
  lines = ["# 3D point list with one line of data per point:",
           "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)  (fused "
           "from depth maps: no error estimate, empty tracks)"]
  if points is not None:
    xyz, rgb = np.asarray(points[0], np.float64), np.asarray(points[1], np.uint8)
    lines.append(f"# Number of points: {len(xyz)}")
    lines.extend(f"{j} {x:.9g} {y:.9g} {z:.9g} {r} {g} {b} 0"
                 for j, ((x, y, z), (r, g, b)) in enumerate(zip(xyz.tolist(), rgb.tolist()), 1))
  else:
    lines.append("# Number of points: 0")
  (folder / "points3D.txt").write_text("\n".join(lines) + "\n")
  return folder
