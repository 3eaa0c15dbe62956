"""Reader for NeRF-synthetic scenes (`transforms_*.json`, Mildenhall et al., ECCV 2020).

Format: a JSON object with `camera_angle_x` (horizontal field of view, radians, edge to edge of the
image) and `frames`, each with `file_path` (relative to the JSON's folder, usually without the
".png" suffix) and `transform_matrix`, a 4x4 camera-to-world in OpenGL camera axes (x right, y up,
the camera looks down -z). Images are RGBA with a transparent background.

Conversions to the package's conventions (`jaxrecon.geometry`):
* Axes: OpenCV camera axes are OpenGL's with y and z negated, so
  world_from_cam_cv = world_from_cam_gl @ diag(1, -1, -1, 1); cam_from_world is its inverse.
* Focal length: fx = fy = 0.5 w / tan(camera_angle_x / 2) (square pixels), w the width in pixels.
* Principal point: Blender renders a centred pinhole, so the optical axis meets the image at its
  geometric centre. The image spans [-0.5, w - 0.5] with pixel centres at integers, whose middle is
  ((w - 1) / 2, (h - 1) / 2). (NeRF's reference code uses cx = w / 2, i.e. it shoots rays through
  pixel corners: half a pixel off; we follow the renderer, not that code.)
* Alpha: the RGBA render is composited over `background` (default white, as in NeRF's training):
  rgb = alpha * rgb + (1 - alpha) * background, in 8-bit values, rounded.
"""
from __future__ import annotations

import os
import pathlib
from typing import Sequence

import numpy as np

from jaxrecon.errors import UserError
from jaxrecon.io import files
from jaxrecon.io.poses import check_rotation, rigid_inverse
from jaxrecon.data.scene import Scene

# OpenGL -> OpenCV camera axes: negate y and z (a proper rotation, det = +1).
_GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])


def nerf_intrinsics(camera_angle_x: float, h: int, w: int) -> np.ndarray:
  """K (3, 3) float64 of a centred pinhole with horizontal field of view `camera_angle_x` (rad).

  fx = fy = 0.5 w / tan(angle / 2); (cx, cy) = ((w - 1) / 2, (h - 1) / 2), the image centre under
  the pixel-centre convention (see the module docstring).
  """
  focal = 0.5 * w / np.tan(0.5 * camera_angle_x)
  return np.array([[focal, 0.0, (w - 1) / 2], [0.0, focal, (h - 1) / 2], [0.0, 0.0, 1.0]])


def opengl_to_cam_from_world(world_from_cam_gl: np.ndarray) -> np.ndarray:
  """(..., 4, 4) OpenGL camera-to-world -> (..., 4, 4) OpenCV cam_from_world, same world frame."""
  return rigid_inverse(np.asarray(world_from_cam_gl, np.float64) @ _GL_TO_CV)


def composite(rgba: np.ndarray, background: Sequence[float]) -> np.ndarray:
  """uint8 RGBA (..., 4) over an RGB `background` (3 values in [0, 255]) -> uint8 RGB (..., 3)."""
  alpha = rgba[..., 3:].astype(np.float32) / 255.0
  rgb = rgba[..., :3].astype(np.float32)
  out = alpha * rgb + (1.0 - alpha) * np.asarray(background, np.float32)
  return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _frame_path(root: pathlib.Path, file_path: str) -> pathlib.Path:
  # The NeRF files omit the suffix ("./train/r_0"); some exporters keep it.
  path = root / file_path
  return path if path.suffix.lower() in files.IMAGE_SUFFIXES else path.with_name(path.name + ".png")


def read_nerf(path: str | os.PathLike, background: Sequence[float] = (255, 255, 255)) -> Scene:
  """Reads a NeRF `transforms_*.json` and its images as a `Scene`.

  Args:
    path: the JSON file (e.g. <scene>/transforms_train.json; a folder is refused, naming the
      transforms files in it).
    background: RGB (0..255) the transparent pixels are composited over; default white.
  Returns:
    `Scene` in file order: images (v, h, w, 3) uint8 (composited), intrinsics (v, 3, 3) pixels,
    cam_from_world (v, 4, 4) OpenCV axes in NeRF world units, names = image stems (e.g. "r_0"),
    name = "<folder>/<json stem>".
  Raises:
    FileNotFoundError naming a missing JSON or image; ValueError naming the JSON file (and the
    frame) for invalid JSON, a missing or non-positive camera_angle_x, no frames, a malformed or
    non-rigid transform_matrix, or naming an image of another size.
  """
  if pathlib.Path(path).is_dir():
    found = sorted(p.name for p in pathlib.Path(path).glob("transforms*.json"))
    raise UserError(f"{path} is a folder; read_nerf needs one transforms_*.json file in it "
                    f"(found: {', '.join(found) or 'none'})")
  path = files.require_file(path, "NeRF transforms file")
  meta = files.read_json(path, "NeRF transforms file")
  if not isinstance(meta, dict):
    raise UserError(f"{path}: expected a JSON object with camera_angle_x and frames")
  angle = meta.get("camera_angle_x")
  if not isinstance(angle, (int, float)) or not 0 < angle < np.pi:
    raise UserError(f"{path}: camera_angle_x must be a number in (0, pi) radians, got {angle!r}")
  frames = meta.get("frames")
  if not isinstance(frames, list) or not frames:
    raise UserError(f"{path}: expected a non-empty list 'frames'")
  rgbs, paths, poses = [], [], []
  for index, frame in enumerate(frames):
    where = f"{path}: frames[{index}]"
    if not isinstance(frame, dict) or "file_path" not in frame or "transform_matrix" not in frame:
      raise UserError(f"{where}: expected an object with file_path and transform_matrix")
    pose = files.as_matrix(frame["transform_matrix"], (4, 4), f"{where}.transform_matrix")
    check_rotation(pose[:3, :3], f"{where}.transform_matrix")
    image_path = _frame_path(path.parent, frame["file_path"])
    rgbs.append(composite(files.read_rgba(image_path), background))
    paths.append(image_path)
    poses.append(pose)
  images = files.stack_same_size(rgbs, paths)
  v, h, w = images.shape[:3]
  intrinsics = np.broadcast_to(nerf_intrinsics(float(angle), h, w), (v, 3, 3)).copy()
  return Scene(images=images, intrinsics=intrinsics,
               cam_from_world=opengl_to_cam_from_world(np.stack(poses)),
               names=tuple(p.stem for p in paths), name=f"{path.parent.name}/{path.stem}")
