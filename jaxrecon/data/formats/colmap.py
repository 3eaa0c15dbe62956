"""A COLMAP text model (cameras.txt + images.txt) and its images as a `Scene`.

The text files are parsed by `jaxrecon.io.colmap_read` (formats and pixel convention there: cx, cy
are shifted by -0.5 on reading, COLMAP's top-left pixel centre being (0.5, 0.5)).
"""
from __future__ import annotations

import os
import pathlib

import numpy as np

from jaxrecon.errors import UserError
from jaxrecon.data.scene import Scene
from jaxrecon.io import files
from jaxrecon.io.colmap_read import read_cameras_txt, read_images_txt


def read_colmap(model_dir: str | os.PathLike, image_dir: str | os.PathLike) -> Scene:
  """Reads a COLMAP text model and its images as a `Scene`.

  Args:
    model_dir: folder with cameras.txt and images.txt (e.g. sparse/0).
    image_dir: folder the image NAMEs are relative to.
  Returns:
    `Scene` sorted by image name: images (v, h, w, 3) uint8, intrinsics (v, 3, 3) in the package's
    pixel convention, cam_from_world (v, 4, 4) in the model's units, names = image names without
    suffix, name = the image folder's parent's name.
  Raises:
    as the parsers above; ValueError naming images.txt and line for an unknown camera id, naming
    an image whose size differs from its camera's; FileNotFoundError naming a missing image.
  """
  model_dir = files.require_dir(model_dir, "COLMAP model folder")
  image_dir = files.require_dir(image_dir, "image folder")
  cameras = read_cameras_txt(model_dir / "cameras.txt")
  entries = sorted(read_images_txt(model_dir / "images.txt"), key=lambda entry: entry[0])
  images, intrinsics, poses, paths = [], [], [], []
  for name, camera_id, pose in entries:
    if camera_id not in cameras:
      raise UserError(f"{model_dir / 'images.txt'}: image {name!r} uses camera {camera_id}, "
                       f"which {model_dir / 'cameras.txt'} does not define")
    camera = cameras[camera_id]
    path = image_dir / name
    image = files.read_rgb(path)
    if image.shape[:2] != (camera.height, camera.width):
      raise UserError(f"image {path}: size {image.shape[1]}x{image.shape[0]} differs from its "
                       f"camera {camera_id} ({camera.width}x{camera.height})")
    images.append(image)
    intrinsics.append(camera.intrinsics)
    poses.append(pose)
    paths.append(path)
  return Scene(images=files.stack_same_size(images, paths), intrinsics=np.stack(intrinsics),
               cam_from_world=np.stack(poses),
               names=tuple(str(pathlib.PurePath(n).with_suffix("")) for n, _, _ in entries),
               name=image_dir.resolve().parent.name)
