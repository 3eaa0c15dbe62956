"""Size buckets for the fit's compiled programs, so that scenes of similar size share them.

XLA compiles one program per input shape. The LM program of `fit.bundle` takes about 0.8 s to
compile on 2 CPU cores against about 0.1 s to run on an 8-view scene, and its shapes (views,
tracks, observations, track-sharing pairs) differ in every scene: without buckets the persistent
compilation cache (`jaxrecon.cli.use_compile_cache`) serves only a repeated run of the same scene.
Padded to the next bucket, every scene whose sizes fall in the same buckets reuses the program.

Buckets grow geometrically: `steps` per doubling (4 for the per-observation arrays: at most 19 %
padding, 9 % on average; 2 for views, whose cost is the small dense solve), rounded up to a
multiple of `multiple`. Padding rows are inert by construction (see `bundle.run_stage`): weight-0
observations, points nobody observes and views without observations contribute nothing to the
cost, the normal equations or the step (`pad_problem`; the LM program's step test counts only
the unknowns a used observation constrains).
"""
from __future__ import annotations

import math

import numpy as np


def bucket(size: int, *, steps: int = 4, minimum: int = 64, multiple: int = 16) -> int:
  """The smallest bucket >= size: minimum * 2^(k / steps) rounded up to a multiple of
  `multiple` (k = 0, 1, ...); `minimum` for sizes up to it."""
  if size <= minimum:
    return minimum
  k = max(0, math.floor(steps * math.log2(size / minimum)) - 1)
  while True:
    out = multiple * math.ceil(minimum * 2.0 ** (k / steps) / multiple)
    if out >= size:
      return out
    k += 1


def view_bucket(size: int) -> int:
  """Bucket of a view count: 4, 6, 8, 12, 16, 23, 32, ... (2 steps per doubling)."""
  return bucket(size, steps=2, minimum=4, multiple=1)


def pad(x, size: int, fill) -> np.ndarray:
  """x (m, ...) padded along axis 0 to `size` rows of `fill` (broadcast to a row)."""
  x = np.asarray(x)
  if size < len(x):
    raise ValueError(f"pad: {len(x)} rows do not fit in {size}")
  rows = np.broadcast_to(np.asarray(fill, x.dtype), (size - len(x),) + x.shape[1:])
  return np.concatenate([x, rows], 0)


def pad_problem(rot, centre, points, obs):
  """A bundle-adjustment stage's host inputs (rot (v, 3, 3), centre (v, 3), points (t, 3),
  `bundle.Observations` obs) padded to their buckets, all inert: extra views (identity, centre 0)
  and points ((0, 0, 1): a unit direction, valid at infinity too) that no observation sees,
  weight-0 observations (of view 0 and track 0: any would do), and pairs of the first extra
  observation with itself (its W block is 0, so such a pair adds nothing to the reduced system;
  hence at least one extra observation)."""
  v, t, n = len(rot), len(points), len(obs.view)
  nv, nt, nn, npairs = view_bucket(v), bucket(t), bucket(n + 1), bucket(len(obs.pairs))
  obs = obs._replace(view=pad(obs.view, nn, 0), track=pad(obs.track, nn, 0),
                     bearing=pad(obs.bearing, nn, (0.0, 0.0, 1.0)), focal=pad(obs.focal, nn, 1.0),
                     weight=pad(obs.weight, nn, 0.0), pairs=pad(obs.pairs, npairs, (n, n)))
  return (pad(rot, nv, np.eye(3)), pad(centre, nv, 0.0), pad(points, nt, (0.0, 0.0, 1.0)), obs)
