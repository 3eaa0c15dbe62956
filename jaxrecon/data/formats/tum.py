"""Reader for TUM RGB-D / ICL-NUIM style pose lists with colour and depth frames.

Layout of a folder:

    pose.txt      line N (1-based, blank and '#' lines skipped): `tx ty tz qx qy qz qw`, the
                  camera-to-world pose of frame N (translation in metres, unit quaternion xyzw)
    color/N.png   8-bit colour image of frame N
    depth/N.png   optional (or depth/N.pgm); uint16, metres = value / depth_scale, 0 = no
                  measurement; depth is camera-frame z. depth_scale must be given when depth/
                  exists: 5000 for ICL-NUIM and TUM RGB-D (`DEPTH_SCALE`), 1000 for the
                  millimetres of Kinect / RealSense recordings; a default would silently
                  mis-scale one of them

Intrinsics are not in the folder: they are passed in (one K for all frames).

Negative focal lengths (ICL-NUIM: fy = -480, its renderer's y axis points up). A K with fy < 0 and
the given poses describe a camera frame whose y axis points up the image. The pixels cannot change,
so the fix is in the frames: with F = diag(1, -1, 1, 1),

    K' = K diag(1, -1, 1)  (fy' = +480, cx, cy unchanged),  cam_from_world' = F cam_from_world F.

The left F flips the camera's y axis, so that u = fx x/z + cx, v = fy' y'/z + cy gives the same
pixels with y' = -y (OpenCV: y down). Flipping y alone would leave a reflection (det R = -1), so the
right F mirrors the world's y axis too: R' = F R F is a proper rotation again and X_world' =
F X_world. Flipping z as well is NOT an option: it would negate depth and put the scene behind the
camera. Camera-frame z (the depth maps) is unchanged. The same rule is applied to fx < 0 with the x
axis. The returned world is therefore the file's world mirrored in y (for ICL-NUIM: undoing the
renderer's mirror, so the scene is right-handed with the images).
"""
from __future__ import annotations

import os

import numpy as np

from jaxrecon.errors import UserError
from jaxrecon.io import files
from jaxrecon.io.poses import rigid_inverse
from jaxrecon.data.scene import Scene

DEPTH_SCALE = 5000.0  # raw uint16 units per metre in ICL-NUIM and TUM RGB-D depth PNGs
DEPTH_SUFFIXES = (".png", ".pgm")  # 16-bit depth images: PNG, or PGM as some recorders write


def quaternion_pose(values: np.ndarray) -> np.ndarray:
  """(7,) `tx ty tz qx qy qz qw` -> (4, 4) float64 rigid transform (quaternion normalised)."""
  t, q = values[:3], values[3:7] / np.linalg.norm(values[3:7])
  x, y, z, w = q
  rot = np.array([
      [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
      [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
      [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
  pose = np.eye(4)
  pose[:3, :3], pose[:3, 3] = rot, t
  return pose


def read_pose_list(path: str | os.PathLike) -> np.ndarray:
  """Reads `tx ty tz qx qy qz qw` lines (camera-to-world) -> (n, 4, 4) float64 world_from_cam.

  Raises:
    FileNotFoundError naming a missing file; ValueError naming the file and line for a line
    without 7 fields, a non-numeric or non-finite field, or a zero quaternion.
  """
  path = files.require_file(path, "pose list")
  poses = []
  for lineno, line in enumerate(path.read_text().splitlines(), start=1):
    if not line.strip() or line.lstrip().startswith("#"):
      continue
    where = f"{path}: line {lineno}"
    fields = line.split()
    if len(fields) != 7:
      raise UserError(f"{where}: expected 7 fields (tx ty tz qx qy qz qw), got {len(fields)}")
    values = files.parse_floats(fields, where)
    if np.linalg.norm(values[3:]) < 1e-8:
      raise UserError(f"{where}: zero quaternion")
    poses.append(quaternion_pose(values))
  if not poses:
    raise UserError(f"{path}: no poses")
  return np.stack(poses)


def make_focal_positive(intrinsics: np.ndarray, cam_from_world: np.ndarray):
  """Moves negative focal lengths of K into the poses (see the module docstring).

  Args:
    intrinsics: (3, 3) K, pixels; fx or fy may be negative.
    cam_from_world: (n, 4, 4) extrinsics consistent with that K.
  Returns:
    (K' (3, 3) with fx, fy > 0, cam_from_world' (n, 4, 4)) that project every world point X to
    the same pixel as before once X is mapped to F X (F = diag(signs of fx, fy, 1, 1)).
  """
  signs = np.array([np.sign(intrinsics[0, 0]), np.sign(intrinsics[1, 1]), 1.0])
  flip = np.diag(np.append(signs, 1.0))
  # + 0.0 turns the -0.0 entries the sign product leaves into 0.0.
  return intrinsics * signs[None, :] + 0.0, flip @ cam_from_world @ flip


def _depth_path(folder, name: str):
  """depth/<name>.png or .pgm (exactly one); FileNotFoundError naming the paths tried."""
  tried = [folder / "depth" / f"{name}{suffix}" for suffix in DEPTH_SUFFIXES]
  present = [p for p in tried if p.is_file()]
  if not present:
    raise FileNotFoundError(f"depth image of frame {name} not found: tried "
                            f"{', '.join(str(p) for p in tried)}")
  if len(present) > 1:
    raise UserError(f"depth of frame {name}: both {present[0]} and {present[1]} exist; keep one")
  return present[0]


def read_tum(folder: str | os.PathLike, intrinsics, *, depth_scale: float | None = None,
             pose_file: str = "pose.txt") -> Scene:
  """Reads a TUM / ICL-NUIM style folder (see the module docstring) as a `Scene`.

  Args:
    folder: directory with `pose_file`, color/ and optionally depth/.
    intrinsics: (3, 3) K in pixels shared by all frames; a negative fx or fy is moved into the
      poses (module docstring), so the Scene has fx, fy > 0 and OpenCV axes.
    depth_scale: raw depth units per metre, required when there is a depth/ folder (5000 =
      `DEPTH_SCALE` for ICL-NUIM and TUM RGB-D, 1000 for Kinect / RealSense millimetres).
  Returns:
    `Scene` of the n frames in pose-file order: images (n, h, w, 3) uint8, intrinsics (n, 3, 3),
    cam_from_world (n, 4, 4) (world mirrored where a focal was negative), depth (n, h, w) float32
    metres or None when there is no depth/ folder, names "1".."n", name = the folder's name.
  Raises:
    FileNotFoundError naming a missing folder, pose file or frame image; ValueError naming the
    pose file and line, a K that is not 3x3 or has a zero focal length, or an image of the wrong
    kind or size.
  """
  folder = files.require_dir(folder, "TUM/ICL folder")
  k = np.asarray(intrinsics, np.float64)
  if k.shape != (3, 3) or k[0, 0] == 0 or k[1, 1] == 0 or not np.all(np.isfinite(k)):
    raise UserError(f"intrinsics for {folder}: expected a finite 3x3 K with non-zero fx, fy, "
                     f"got {k.tolist() if k.size == 9 else k.shape}")
  if depth_scale is not None and not depth_scale > 0:
    raise UserError(f"depth_scale must be positive, got {depth_scale}")
  if depth_scale is None and (folder / "depth").is_dir():
    raise UserError(f"{folder / 'depth'}: pass depth_scale, the raw depth units per metre (5000 "
                    f"for ICL-NUIM and TUM RGB-D, 1000 for Kinect / RealSense millimetres)")
  world_from_cam = read_pose_list(folder / pose_file)
  k, cam_from_world = make_focal_positive(k, rigid_inverse(world_from_cam))
  names = tuple(str(i) for i in range(1, len(world_from_cam) + 1))
  color_paths = [folder / "color" / f"{name}.png" for name in names]
  images = files.stack_same_size([files.read_rgb(p) for p in color_paths], color_paths)
  depth = None
  if (folder / "depth").is_dir():
    depth_paths = [_depth_path(folder, name) for name in names]
    raw = [files.read_single_channel(p, np.uint16, "depth image") for p in depth_paths]
    for array, path in zip(raw, depth_paths):
      if array.shape != images.shape[1:3]:
        raise UserError(f"depth image {path}: size {array.shape[::-1]} differs from the colour "
                         f"images ({images.shape[2]}, {images.shape[1]})")
    # Raw 0 stays 0 = unknown, the Scene's convention.
    depth = (np.stack(raw).astype(np.float64) / depth_scale).astype(np.float32)
  return Scene(images=images, intrinsics=np.broadcast_to(k, (len(names), 3, 3)).copy(),
               cam_from_world=cam_from_world, depth=depth, names=names, name=folder.name)
