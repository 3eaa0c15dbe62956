"""Minimal PFM (Portable Float Map) reader and writer, as written by many depth networks.

Format: an ASCII header of three whitespace-separated tokens groups, "Pf" (1 channel) or "PF"
(3 channels), then "width height", then a scale whose sign gives the byte order (negative: little
endian, positive: big endian; its magnitude is unused here), each ended by a single newline; then
width * height * channels float32 values, rows stored BOTTOM to top. Arrays in and out of this
module are top-to-bottom (row 0 is the top image row), as everywhere in jaxrecon.
"""
from __future__ import annotations

import os
import pathlib

import numpy as np

from jaxrecon.errors import UserError


def write_pfm(path: str | os.PathLike, image: np.ndarray, *, little_endian: bool = True):
  """Writes an (h, w) or (h, w, 3) array (top row first) as float32 PFM."""
  image = np.asarray(image, np.float32)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  if image.ndim == 2:
    kind = b"Pf"
  elif image.ndim == 3 and image.shape[-1] == 3:
    kind = b"PF"
  else:
    raise UserError(f"PFM holds (h, w) or (h, w, 3) arrays, got shape {image.shape}")
  height, width = image.shape[:2]
  dtype = np.dtype("<f4" if little_endian else ">f4")
  header = b"%s\n%d %d\n%s\n" % (kind, width, height, b"-1.0" if little_endian else b"1.0")
  with open(path, "wb") as f:
    f.write(header)
    f.write(np.ascontiguousarray(image[::-1]).astype(dtype).tobytes())


def _header_tokens(data: bytes, count: int) -> tuple[list[bytes], int]:
  """The first `count` whitespace-separated tokens and the offset just after the newline that
  ends the last one (the data starts there)."""
  tokens, pos = [], 0
  while len(tokens) < count:
    while pos < len(data) and data[pos:pos + 1].isspace():
      pos += 1
    start = pos
    while pos < len(data) and not data[pos:pos + 1].isspace():
      pos += 1
    if start == pos:
      raise UserError("truncated header")
    tokens.append(data[start:pos])
  if data[pos:pos + 1] != b"\n" and data[pos:pos + 2] != b"\r\n":
    raise UserError("header does not end with a newline")
  return tokens, pos + (2 if data[pos:pos + 1] == b"\r" else 1)


def read_pfm(path: str | os.PathLike) -> np.ndarray:
  """Reads a PFM file as float32 (h, w) ("Pf") or (h, w, 3) ("PF"), top row first, native order.

  Raises:
    FileNotFoundError if missing; ValueError naming the file for a bad header or a data size that
    does not match the header.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"PFM file not found: {path}")
  data = path.read_bytes()
  try:
    (kind, width, height, scale), offset = _header_tokens(data, 4)
    if kind not in (b"Pf", b"PF"):
      raise UserError(f"magic is {kind[:8]!r}, expected b'Pf' or b'PF'")
    width, height, scale = int(width), int(height), float(scale)
    if width <= 0 or height <= 0 or scale == 0 or not np.isfinite(scale):
      raise UserError(f"bad size {width}x{height} or scale {scale}")
  except ValueError as error:
    raise UserError(f"corrupt PFM header in {path}: {error}") from None
  channels = 1 if kind == b"Pf" else 3
  expected = width * height * channels * 4
  if len(data) - offset != expected:
    raise UserError(f"corrupt PFM {path}: header says {width}x{height}x{channels} float32 "
                     f"({expected} bytes) but {len(data) - offset} data bytes follow")
  values = np.frombuffer(data, np.dtype("<f4" if scale < 0 else ">f4"), offset=offset)
  shape = (height, width) if channels == 1 else (height, width, 3)
  return values.reshape(shape)[::-1].astype(np.float32)
