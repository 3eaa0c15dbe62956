"""`Scene`: the value every reader returns and every expert, pipeline and trainer consumes.

Conventions are the package's (see `jaxrecon.geometry`): OpenCV camera axes, pixel centres at
integer coordinates, `cam_from_world` 4x4 extrinsics, depth = camera-frame z in world units.
Arrays are numpy (host data); v views of one common size h x w.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np

IGNORE_LABEL = 255  # semantic label of unlabelled / void pixels


@dataclasses.dataclass(frozen=True)
class Scene:
  """v views of one static scene.

  images: (v, h, w, 3) uint8 RGB.
  intrinsics: optional (v, 3, 3) float64 K in pixels (None when unknown, e.g. CamVid).
  cam_from_world: optional (v, 4, 4) float64 extrinsics (world -> camera).
  depth: optional (v, h, w) float32 camera z in world units; 0 where unknown (sky, holes).
  labels: optional (v, h, w) uint8 semantic class per pixel, IGNORE_LABEL where unlabelled.
  names: v strings, one per view (file stems for real data).
  name: the scene's name.
  """
  images: np.ndarray
  intrinsics: Optional[np.ndarray] = None
  cam_from_world: Optional[np.ndarray] = None
  depth: Optional[np.ndarray] = None
  labels: Optional[np.ndarray] = None
  names: Sequence[str] = ()
  name: str = "scene"

  def __post_init__(self):
    images = np.asarray(self.images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
      raise ValueError(f"images: expected uint8 (v, h, w, 3), got {images.dtype} {images.shape}")
    v, h, w = images.shape[:3]
    expect = {"intrinsics": ((v, 3, 3), None), "cam_from_world": ((v, 4, 4), None),
              "depth": ((v, h, w), None), "labels": ((v, h, w), np.uint8)}
    for field, (shape, dtype) in expect.items():
      value = getattr(self, field)
      if value is None:
        continue
      value = np.asarray(value)
      if value.shape != shape:
        raise ValueError(f"{field}: expected shape {shape}, got {value.shape}")
      if dtype is not None and value.dtype != dtype:
        raise ValueError(f"{field}: expected dtype {np.dtype(dtype).name}, got {value.dtype}")
    names = tuple(self.names) if len(self.names) else tuple(f"{i:05d}" for i in range(v))
    if len(names) != v:
      raise ValueError(f"names: expected {v} names, got {len(names)}")
    object.__setattr__(self, "names", names)

  @property
  def num_views(self) -> int:
    return int(np.shape(self.images)[0])

  @property
  def image_size(self) -> tuple[int, int]:
    """(h, w) in pixels."""
    return tuple(np.shape(self.images)[1:3])

  def select(self, indices) -> "Scene":
    """The scene restricted to the views `indices` (any integer index array), in that order."""
    idx = np.asarray(indices)
    take = lambda x: None if x is None else np.asarray(x)[idx]
    return dataclasses.replace(
        self, images=np.asarray(self.images)[idx], intrinsics=take(self.intrinsics),
        cam_from_world=take(self.cam_from_world), depth=take(self.depth),
        labels=take(self.labels), names=tuple(np.asarray(self.names)[idx].tolist()))
