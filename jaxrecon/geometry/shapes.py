"""Static shape checks with readable errors.

`check_shape(x, "... v n 2", "pixels", dims)` verifies the trailing axes of `x` against a spec of
letters (bound to sizes on first use, then enforced across all arguments that share `dims`),
integers (exact sizes) and an optional leading "..." (any leading axes; all "..." of one `dims`
must broadcast together). Runs at trace time, so it costs nothing under jit.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def _fmt(spec_tokens, dims) -> str:
  parts = []
  for tok in spec_tokens:
    if tok == "...":
      parts.append("...")
    elif tok.isdigit():
      parts.append(tok)
    else:
      parts.append(f"{tok}={dims[tok]}" if tok in dims else tok)
  return "(" + ", ".join(parts) + ")"


def check_shape(x: Any, spec: str, name: str, dims: dict | None = None) -> dict:
  """Checks `x.shape` against `spec`; returns the (updated) dict of bound sizes.

  Raises:
    ValueError naming `name`, the expected shape and the actual shape.
  """
  dims = {} if dims is None else dims
  shape = tuple(np.shape(x))
  tokens = spec.split()
  leading = bool(tokens) and tokens[0] == "..."
  body = tokens[1:] if leading else tokens
  want = _fmt(tokens, dims)
  if len(shape) < len(body) or (not leading and len(shape) != len(body)):
    raise ValueError(f"{name}: expected shape {want}, got {shape}")
  tail = shape[len(shape) - len(body):]
  for tok, size in zip(body, tail):
    if tok.isdigit():
      ok = size == int(tok)
    elif tok in dims:
      ok = size == dims[tok]
    else:
      dims[tok] = size
      ok = True
    if not ok:
      raise ValueError(f"{name}: expected shape {_fmt(tokens, dims)}, got {shape}")
  if leading:
    batch = shape[: len(shape) - len(body)]
    if "..." in dims:
      try:
        dims["..."] = tuple(np.broadcast_shapes(dims["..."], batch))
      except ValueError:
        raise ValueError(
            f"{name}: leading axes {batch} do not broadcast with {dims['...']} of the other "
            f"arguments (expected {want})") from None
    else:
      dims["..."] = batch
  return dims
