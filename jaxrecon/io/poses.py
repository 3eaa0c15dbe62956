"""Camera poses on the host: rigid inverses and rotation checks for the readers, and the
poses.json the commands write (float64 numpy; the package's conventions, see `jaxrecon.geometry`).
"""
from __future__ import annotations

import json
import os
import pathlib
from typing import Optional

import numpy as np

from jaxrecon.errors import UserError


def rigid_inverse(pose: np.ndarray) -> np.ndarray:
  """Inverse of (..., 4, 4) rigid transforms in float64 numpy (readers stay on the host)."""
  rot = pose[..., :3, :3]
  rot_t = np.swapaxes(rot, -1, -2)
  out = np.zeros(pose.shape[:-2] + (4, 4))
  out[..., :3, :3] = rot_t
  out[..., :3, 3] = -np.einsum("...ij,...j->...i", rot_t, pose[..., :3, 3])
  out[..., 3, 3] = 1.0
  return out


def check_rotation(rot: np.ndarray, where: str, atol: float = 1e-4) -> None:
  """ValueError naming `where` unless `rot` (3, 3) is a proper rotation (to `atol`)."""
  if not (np.allclose(rot @ rot.T, np.eye(3), atol=atol)
          and abs(np.linalg.det(rot) - 1.0) < atol):
    raise UserError(f"{where}: rotation part is not a proper rotation (R R^T != I or det != 1)")


def write_poses_json(path: str | os.PathLike, names, files, intrinsics, world_from_cam,
                     image_size, *, extra: Optional[dict] = None, registered=None,
                     units: Optional[str] = None) -> pathlib.Path:
  """poses.json: per image cam_from_world, world_from_cam (4x4) and K (3x3), conventions named.

  Args:
    names: v image stems (the keys); files: v image file names.
    intrinsics: (v, 3, 3) K for images of `image_size` (h, w), package pixel convention.
    world_from_cam: (v, 4, 4) camera-to-world poses (OpenCV axes); cam_from_world is its rigid
      inverse (float64).
    extra: more top-level entries (e.g. provenance).
    registered: optional (v,) bool; when given every image gets "registered", and an unregistered
      image has null cam_from_world / world_from_cam (its entry in `world_from_cam` is ignored).
    units: optional replacement of the conventions' "units" text (default: the network's gauge).
  """
  world_from_cam = np.asarray(world_from_cam, np.float64)
  if registered is not None:
    registered = np.asarray(registered, bool)
    world_from_cam = np.where(registered[:, None, None], world_from_cam, np.eye(4))
  cam_from_world = rigid_inverse(world_from_cam)
  h, w = (int(s) for s in image_size)
  table = {
      "conventions": {
          "axes": "OpenCV camera axes: x right, y down, z forward",
          "cam_from_world": "4x4 world-to-camera (extrinsics): X_cam = cam_from_world @ X_world",
          "world_from_cam": "4x4 camera-to-world: X_world = world_from_cam @ X_cam; last column "
                            "= camera centre",
          "intrinsics": "3x3 K in pixels of the original image (width x height), centre of the "
                        "top-left pixel at (0, 0) (COLMAP's cx, cy are these + 0.5)",
          "units": units or "model units: the world frame and global scale are the network's "
                            "gauge",
      },
      "width": w, "height": h, **(extra or {}),
      "images": {name: {"file": file, "cam_from_world": c.tolist(), "world_from_cam": p.tolist(),
                        "intrinsics": np.asarray(k, np.float64).tolist()}
                 for name, file, c, p, k in zip(names, files, cam_from_world, world_from_cam,
                                                intrinsics)},
  }
  if registered is not None:
    table["conventions"]["registered"] = ("false: the view could not be placed; its poses are "
                                          "null")
    for name, ok in zip(names, registered):
      entry = table["images"][name]
      entry["registered"] = bool(ok)
      if not ok:
        entry["cam_from_world"] = entry["world_from_cam"] = None
  path = pathlib.Path(path)
  path.write_text(json.dumps(table, indent=1))
  return path
