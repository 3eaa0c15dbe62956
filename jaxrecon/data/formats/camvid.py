"""Reader for CamVid-style segmentation sequences: images/ + labels/ with matching file names.

Labels are uint8 PNGs of class ids in SegNet's 11-class order (0 sky, 1 building, 2 pole, 3 road,
4 pavement, 5 tree, 6 sign/symbol, 7 fence, 8 car, 9 pedestrian, 10 bicyclist) with 11 = void.
Void becomes `IGNORE_LABEL` (255), the package's ignore value, so losses and metrics need no
per-data-set void id. There are no intrinsics, poses or depth.
"""
from __future__ import annotations

import os

import numpy as np

from jaxrecon.errors import UserError
from jaxrecon.io import files
from jaxrecon.data.scene import IGNORE_LABEL, Scene

CLASSES = ("sky", "building", "pole", "road", "pavement", "tree", "sign_symbol", "fence", "car",
           "pedestrian", "bicyclist")
VOID = 11  # CamVid's void id in the files


def read_camvid(folder: str | os.PathLike) -> Scene:
  """Reads images/<name>.png and labels/<name>.png of a CamVid-style folder as a `Scene`.

  Returns:
    `Scene` sorted by name: images (v, h, w, 3) uint8, labels (v, h, w) uint8 in 0..10 or 255
    (void), names = file stems, name = the folder's name; no intrinsics, poses or depth.
  Raises:
    FileNotFoundError naming a missing folder or label file; ValueError naming a label file with
    a value above 11, a label of another size than its image, or an unreadable file.
  """
  folder = files.require_dir(folder, "CamVid folder")
  paths = files.list_images(files.require_dir(folder / "images", "CamVid images folder"))
  label_dir = files.require_dir(folder / "labels", "CamVid labels folder")
  images = files.stack_same_size([files.read_rgb(p) for p in paths], paths)
  labels = []
  for path in paths:
    label_path = label_dir / f"{path.stem}.png"
    raw = files.read_single_channel(label_path, np.uint8, "label image")
    if raw.shape != images.shape[1:3]:
      raise UserError(f"label image {label_path}: size {raw.shape[::-1]} differs from its image "
                       f"{path} {images.shape[1:3][::-1]}")
    if raw.max() > VOID:
      raise UserError(f"label image {label_path}: value {int(raw.max())} is not a CamVid class "
                       f"(0..{len(CLASSES) - 1}, {VOID} = void)")
    labels.append(np.where(raw == VOID, IGNORE_LABEL, raw).astype(np.uint8))
  return Scene(images=images, labels=np.stack(labels), names=tuple(p.stem for p in paths),
               name=folder.name)
