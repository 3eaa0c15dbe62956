"""Sparse labels (points, scribbles, coarse) generated from dense label maps by seeded rules.

Rewis3d trains from weak labels; these functions make them from a dense ground truth so that the
weak-label settings are reproducible. Every function maps a dense (h, w) label map to a sparse
(h, w) uint8 map in which unlabelled pixels are `IGNORE_LABEL` (255) and every labelled pixel
carries exactly its dense label (sparse labels never contradict the dense map).

Definitions used by all rules (pixel units, pixel centres at integer coordinates):

- void: pixels equal to `IGNORE_LABEL`, or to `void_label` when one is given (e.g. 11 for CamVid);
  they are never labelled and count as "another label" for every class (what lies under void is
  unknown, so a boundary with void is treated as a class boundary).
- region: a connected component (8-connectivity, `cv2.connectedComponents`) of one class.
- clearance of a pixel of class c: Euclidean distance to the nearest pixel centre whose label is not
  c (void included), exact (`cv2.distanceTransform`, DIST_MASK_PRECISE). A pixel 4-adjacent to
  another label has clearance 1, one only diagonally adjacent sqrt(2); pixels with clearance >= 2
  have all 8 neighbours of their own class. The image border is not a boundary.

Randomness comes only from the numpy Generator passed in; classes are visited in increasing order
and regions in `cv2.connectedComponents` order, so one seed gives one map.
"""
from __future__ import annotations

from typing import Iterator, Optional, Tuple

import cv2
import numpy as np

from jaxrecon.data.scene import IGNORE_LABEL

KINDS = ("points", "scribbles", "coarse", "dense")


# --- shared helpers -----------------------------------------------------------------------------


def prepare_dense(dense: np.ndarray, void_label: Optional[int] = None) -> np.ndarray:
  """Validates a dense label map and maps `void_label` to IGNORE_LABEL.

  dense: (h, w) integer array with values in [0, 255]; IGNORE_LABEL (255) marks unlabelled pixels.
  void_label: optional class id that is also unlabelled (CamVid: 11).
  Returns a new (h, w) uint8 array.
  """
  dense = np.asarray(dense)
  if dense.ndim != 2:
    raise ValueError(f"dense: expected a (h, w) label map, got shape {dense.shape}")
  if not np.issubdtype(dense.dtype, np.integer):
    raise ValueError(f"dense: expected an integer dtype, got {dense.dtype}")
  if dense.size and (dense.min() < 0 or dense.max() > 255):
    raise ValueError(f"dense: labels must lie in [0, 255], got [{dense.min()}, {dense.max()}]")
  out = dense.astype(np.uint8)  # astype copies, so the caller's array is never modified
  if void_label is not None:
    out[out == void_label] = IGNORE_LABEL
  return out


def clearance(dense: np.ndarray, cls: int) -> np.ndarray:
  """Distance of each pixel of class `cls` to the nearest pixel of any other label (void included).

  dense: (h, w) uint8 prepared label map (see `prepare_dense`).
  Returns (h, w) float32 distances in pixels; 0 outside the class; a huge value (~1.8e19) when the
  class covers the whole image (OpenCV's "no background" value; only comparisons are made with it).
  """
  mask = (dense == cls).astype(np.uint8)
  dist = cv2.distanceTransform(mask, cv2.DIST_L2, cv2.DIST_MASK_PRECISE).astype(np.float64)
  # OpenCV's float32 distances differ in the last bit from one call to the next (measured: the
  # same map gave 6.0827622 and 6.0827627), enough to flip the rules' threshold tests and change
  # a seeded label map between runs. The exact distance is the root of an integer (a squared
  # pixel offset): snap to it, exact while OpenCV's error in d^2 stays under 0.5 (d < ~1000 px).
  finite = dist < 1e18
  dist[finite] = np.sqrt(np.rint(dist[finite] ** 2))
  return dist.astype(np.float32)


def _classes(dense: np.ndarray) -> np.ndarray:
  """Labels present in a prepared map, ascending, void excluded."""
  present = np.unique(dense)
  return present[present != IGNORE_LABEL]


def _regions(dense: np.ndarray, min_area: int
             ) -> Iterator[Tuple[int, np.ndarray, Tuple[slice, slice], np.ndarray]]:
  """Yields every region of at least `min_area` pixels, classes ascending.

  Yields (cls, region, window, clear): `window` = (row slice, column slice) of the region's
  bounding box, `region` = (bh, bw) bool mask of the region inside it, `clear` = (bh, bw) float32
  clearance of class `cls` inside it. Working in the bounding box keeps the per-region cost
  proportional to the region, not to the image (CamVid frames hold hundreds of small regions).
  """
  for cls in _classes(dense):
    cls_clear = clearance(dense, int(cls))
    mask = (dense == cls).astype(np.uint8)
    count, comp, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    for index in range(1, count):  # 0 is the background of this class mask
      x, y, bw, bh, area = stats[index]
      if area < min_area:
        continue
      window = (slice(y, y + bh), slice(x, x + bw))
      yield int(cls), comp[window] == index, window, cls_clear[window]


def _empty_like(dense: np.ndarray) -> np.ndarray:
  return np.full(dense.shape, IGNORE_LABEL, np.uint8)


# --- points -------------------------------------------------------------------------------------


def _pick(indices: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
  """Up to `count` distinct entries of the 1-D array `indices`, uniformly without replacement."""
  count = int(min(max(count, 0), indices.size))
  if count == 0:
    return indices[:0]  # no draw: the generator's state only moves when something is drawn
  return indices[rng.choice(indices.size, size=count, replace=False)]


def points(dense: np.ndarray, rng: np.random.Generator, *, per_region: int = 1, radius: int = 0,
           min_area: int = 20, margin: float = 3.0,
           void_label: Optional[int] = None) -> np.ndarray:
  """Point labels: `per_region` labelled pixels (or discs) per region.

  Rule, for each region (8-connected component of one class) of at least `min_area` pixels:
  the inner pixels are the region's pixels with clearance >= radius + margin (a disc centred there
  stays `margin` pixels off every boundary). min(per_region, area) distinct centres are drawn
  uniformly without replacement from the inner pixels, and only when these run out the rest from
  the other pixels of the region (small or thin regions still get their points). Each centre
  labels the disc of `radius` pixels around it (radius 0 = the single pixel, so a region then gets
  exactly min(per_region, area) labelled pixels), masked by the region so that no disc crosses a
  boundary.

  dense: (h, w) integer label map (IGNORE_LABEL = unlabelled). rng: numpy Generator.
  per_region: points per region (>= 1). radius: disc radius in pixels (>= 0).
  min_area: regions smaller than this (pixels) get no point. margin: preferred clearance in pixels.
  void_label: optional class id treated as unlabelled.
  Returns (h, w) uint8, IGNORE_LABEL where unlabelled.
  """
  if per_region < 1 or radius < 0:
    raise ValueError(f"points: need per_region >= 1 and radius >= 0, got {per_region}, {radius}")
  dense = prepare_dense(dense, void_label)
  out = _empty_like(dense)
  for cls, region, window, clear in _regions(dense, min_area):
    inner = region & (clear >= radius + margin)
    first = _pick(np.flatnonzero(inner), per_region, rng)
    rest = _pick(np.flatnonzero(region & ~inner), per_region - first.size, rng)
    centres = np.concatenate([first, rest])
    stamp = np.zeros(region.shape, np.uint8)
    for row, col in zip(*np.unravel_index(np.sort(centres), region.shape)):
      cv2.circle(stamp, (int(col), int(row)), int(radius), 1, thickness=-1)
    out[window][(stamp > 0) & region] = cls
  return out


# --- scribbles ----------------------------------------------------------------------------------


def _order_along_axis(pts: np.ndarray) -> np.ndarray:
  """Orders (n, 2) points by their projection on their principal axis (a stroke without zigzag)."""
  centred = pts - pts.mean(axis=0)
  if len(pts) < 2 or not centred.any():
    return pts
  _, _, vt = np.linalg.svd(centred, full_matrices=False)
  axis = vt[0]
  # The SVD's sign is arbitrary (it differed between two runs of one build on this machine), and
  # the rasterised stroke depends on its direction: fix the sign so labels are reproducible.
  axis = axis if axis[np.argmax(np.abs(axis))] > 0 else -axis
  return pts[np.argsort(centred @ axis, kind="stable")]


def _chaikin(pts: np.ndarray, iterations: int = 3) -> np.ndarray:
  """Smooths an open (n, 2) polyline by Chaikin corner cutting; keeps both end points.

  Each pass replaces every segment by its points at 1/4 and 3/4; the limit is a quadratic B-spline
  that stays inside the convex hull of the control polygon.
  """
  for _ in range(iterations):
    if len(pts) < 3:
      return pts
    a, b = pts[:-1], pts[1:]
    cut = np.stack([0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b], axis=1).reshape(-1, 2)
    pts = np.concatenate([pts[:1], cut, pts[-1:]])
  return pts


def _stroke(shape: Tuple[int, int], pts_xy: np.ndarray, thickness: int) -> np.ndarray:
  """Draws a polyline (n, 2) float (x, y) `thickness` pixels wide; returns a (bh, bw) bool mask.

  The 1-pixel centre line is dilated by a `thickness` x `thickness` elliptic kernel: OpenCV's own
  thick lines come out wider than asked (thickness 3 gives 5 pixels), this gives the width asked.
  """
  shift = 4  # sub-pixel drawing so the smoothed curve is not snapped to the pixel grid
  canvas = np.zeros(shape, np.uint8)
  pts = np.round(pts_xy * (1 << shift)).astype(np.int32)
  if len(pts) == 1:
    pts = np.concatenate([pts, pts])  # a one-point polyline draws nothing; a zero-length line a dot
  cv2.polylines(canvas, [pts], False, 1, thickness=1, lineType=cv2.LINE_8, shift=shift)
  if thickness > 1:
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (int(thickness), int(thickness)))
    canvas = cv2.dilate(canvas, kernel)
  return canvas > 0


def scribbles(dense: np.ndarray, rng: np.random.Generator, *, thickness: int = 3,
              min_clearance: float = 2.0, core_fraction: float = 0.5, control_points: int = 4,
              min_area: int = 20, void_label: Optional[int] = None) -> np.ndarray:
  """Scribble labels: one smooth stroke per region, never touching a class boundary.

  Rule, for each region (8-connected component of one class) of at least `min_area` pixels:
  1. allowed = region pixels with clearance >= `min_clearance` (default 2: no scribble pixel has a
     pixel of another label, void included, among its 8 neighbours). Regions whose allowed set is
     empty (too thin once eroded) get no scribble (and no point).
  2. core = allowed pixels with clearance >= `core_fraction` * (the region's largest clearance): a
     band around the medial axis, so the stroke runs through the middle of the region.
  3. `control_points` core pixels are drawn uniformly without replacement (fewer if the core is
     smaller), ordered along their principal axis and smoothed by Chaikin corner cutting.
  4. The curve is drawn `thickness` pixels wide and masked by `allowed`: wherever the curve leaves
     the region (non-convex regions) the stroke is clipped, so it can be split into pieces.

  dense: (h, w) integer label map (IGNORE_LABEL = unlabelled). rng: numpy Generator.
  thickness: stroke width in pixels (>= 1). min_clearance: pixels. core_fraction: in [0, 1].
  control_points: >= 1. min_area: pixels. void_label: optional class id treated as unlabelled.
  Returns (h, w) uint8, IGNORE_LABEL where unlabelled.
  """
  if thickness < 1 or control_points < 1 or not 0.0 <= core_fraction <= 1.0:
    raise ValueError("scribbles: need thickness >= 1, control_points >= 1, 0 <= core_fraction <= 1;"
                     f" got {thickness}, {control_points}, {core_fraction}")
  dense = prepare_dense(dense, void_label)
  out = _empty_like(dense)
  for cls, region, window, clear in _regions(dense, min_area):
    allowed = region & (clear >= min_clearance)
    if not allowed.any():
      continue
    depth = clear[region].max()
    core = allowed & (clear >= core_fraction * depth)
    rows, cols = np.nonzero(core)
    picks = np.sort(rng.choice(rows.size, size=min(control_points, rows.size), replace=False))
    pts = np.stack([cols[picks], rows[picks]], axis=1).astype(np.float64)
    curve = _chaikin(_order_along_axis(pts))
    out[window][_stroke(region.shape, curve, thickness) & allowed] = cls
  return out


# --- coarse -------------------------------------------------------------------------------------


def coarse(dense: np.ndarray, rng: Optional[np.random.Generator] = None, *, margin: float = 10.0,
           min_area: int = 1, void_label: Optional[int] = None) -> np.ndarray:
  """Coarse labels: every region shrunk away from its boundaries.

  Rule: a pixel keeps its label iff its clearance > `margin`, i.e. every pixel within Euclidean
  distance `margin` of another label (void included) is unlabelled; along a straight boundary this
  removes a band of `margin` pixels on each side (margin 0 keeps every non-void pixel). Regions of
  fewer than `min_area` pixels (measured before shrinking) are dropped entirely. Deterministic:
  `rng` is accepted, and ignored, so that all kinds share one signature.

  dense: (h, w) integer label map (IGNORE_LABEL = unlabelled). margin: pixels (>= 0).
  min_area: pixels. void_label: optional class id treated as unlabelled.
  Returns (h, w) uint8, IGNORE_LABEL where unlabelled.
  """
  del rng  # deterministic by design
  if margin < 0:
    raise ValueError(f"coarse: margin must be >= 0, got {margin}")
  dense = prepare_dense(dense, void_label)
  out = _empty_like(dense)
  for cls, region, window, clear in _regions(dense, min_area):
    out[window][region & (clear > margin)] = cls
  return out


# --- dispatcher ---------------------------------------------------------------------------------


def make_sparse(dense: np.ndarray, kind: str, rng: Optional[np.random.Generator] = None,
                **kwargs) -> np.ndarray:
  """Sparse labels of one `kind` in KINDS = ("points", "scribbles", "coarse", "dense").

  dense: (h, w) integer label map (IGNORE_LABEL = unlabelled). rng: numpy Generator (required
  for "points" and "scribbles"). kwargs: the keyword options of the chosen function (all accept
  `void_label`); "dense" accepts only `void_label` and returns the prepared dense map.
  Returns (h, w) uint8, IGNORE_LABEL where unlabelled.
  """
  if kind == "dense":
    return prepare_dense(dense, **kwargs)
  if kind == "coarse":
    return coarse(dense, rng, **kwargs)
  if kind in ("points", "scribbles"):
    if rng is None:
      raise ValueError(f"make_sparse: kind {kind!r} needs a numpy Generator as rng")
    return (points if kind == "points" else scribbles)(dense, rng, **kwargs)
  raise ValueError(f"make_sparse: unknown kind {kind!r}; expected one of {KINDS}")


def labelled_fraction(sparse: np.ndarray) -> float:
  """Fraction in [0, 1] of pixels of a (h, w) sparse map that carry a label (not IGNORE_LABEL)."""
  sparse = np.asarray(sparse)
  return float(np.mean(sparse != IGNORE_LABEL)) if sparse.size else 0.0
