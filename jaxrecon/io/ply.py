"""Binary PLY point clouds (plyfile): x y z float32, red green blue uchar, confidence float32."""
from __future__ import annotations

import os
import pathlib

import numpy as np
from plyfile import PlyData, PlyElement

VERTEX_DTYPE = np.dtype([("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"),
                         ("blue", "u1"), ("confidence", "f4")])


def write_ply(path: str | os.PathLike, xyz, rgb, confidence) -> pathlib.Path:
  """Writes a binary little-endian PLY with one `vertex` element.

  Args:
    path: output file (parent folders are created).
    xyz: (n, 3) point coordinates (stored as float32; world frame, model units).
    rgb: (n, 3) uint8 colours.
    confidence: (n,) per-point confidence (stored as float32).
  Returns:
    The path.
  """
  xyz, rgb, confidence = np.asarray(xyz), np.asarray(rgb), np.asarray(confidence)
  n = xyz.shape[0]
  if xyz.shape != (n, 3) or rgb.shape != (n, 3) or confidence.shape != (n,):
    raise ValueError(f"write_ply: xyz {xyz.shape}, rgb {rgb.shape}, confidence "
                     f"{confidence.shape} must be (n, 3), (n, 3), (n,)")
  if rgb.dtype != np.uint8:
    raise ValueError(f"write_ply: rgb must be uint8, got {rgb.dtype}")
  vertex = np.empty(n, VERTEX_DTYPE)
  for i, axis in enumerate("xyz"):
    vertex[axis] = xyz[:, i]
  for i, channel in enumerate(("red", "green", "blue")):
    vertex[channel] = rgb[:, i]
  vertex["confidence"] = confidence
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  PlyData([PlyElement.describe(vertex, "vertex")], byte_order="<").write(str(path))
  return path


def read_ply(path: str | os.PathLike) -> dict:
  """A PLY written by `write_ply` -> {"xyz": (n, 3) float32, "rgb": (n, 3) uint8,
  "confidence": (n,) float32}."""
  vertex = PlyData.read(str(path))["vertex"].data
  return {"xyz": np.stack([vertex[a] for a in "xyz"], -1).astype(np.float32),
          "rgb": np.stack([vertex[c] for c in ("red", "green", "blue")], -1).astype(np.uint8),
          "confidence": np.asarray(vertex["confidence"], np.float32)}
