"""Missing correspondences: groups of views whose points contradict each other (numpy).

Rotation averaging drops a wrong relative pose that a loop of pairs contradicts, but not a false
match that no loop checks (a pair that alone joins two groups of views), nor a set of false
matches that agree with each other. On repeated or symmetric structure both happen: lego's SIFT
pair (2, 5) matches the two sides of the near-symmetric model (true relative rotation 170
degrees, 29 inliers of 32 matches, estimated as a 5-degree turn) and every view behind it was
registered mirrored, 157 degrees off, silently; with XFeat's denser matches the false pairs form
loops of their own, and all 20 views were registered, 60 degrees off (median), silently.

The evidence against such a join is what is *not* matched (Zach, Irschara & Bischof, "What can
missing correspondences tell us about 3D structure and motion?", CVPR 2008; against duplicate
structure, splitting the view graph along its spanning tree: Heinly, Dunn & Frahm, "Correcting
for duplicate scene structure in sparse 3D reconstruction", ECCV 2014). With the views placed,
take the points that one group triangulates (at least two observers there) and that fall inside
a view of the other group, seen there *alike*: from within `VIEW_ANGLE_DEG` of one of their
observers' directions and within a factor `SCALE_RATIO` of its distance (a detector finds the
same point again only at a similar viewpoint and scale). A correctly placed view finds some
fraction of such points among its own tracks, its *recall*; the scene's median recall over all
views is the yardstick (it depends on the detector and the texture, not on the placement:
templeRing 0.46 with SIFT, 0.25 with XFeat, procedural orbits 0.3-0.6, lego 0.12). Two groups
that find far fewer of each other's points than that predicts were joined by false matches.

The candidate splits are the edges of the view graph's maximum spanning tree (inlier counts):
removing one divides the views in two. Measured as found / predicted, minimum over the splits
of each scene: every fit case with ground truth 0.54-1.0 (templeRing and its variants, the
procedural orbits, SIFT and XFeat tracks), CamVid's forward-driving clips (frames 1 s apart)
0.39-0.49, the lowest correct value seen: between frames that far apart the same point is seen
at other scales (without the scale condition they fell to 0.11-0.22); lego with SIFT 0.00-0.14;
lego with XFeat 0.23-0.32; the symmetric object of tests/fit/test_conflicts.py 0 / 706. The
default `FitSettings.conflict_ratio` of 0.25 sits between; lego with XFeat is at its edge.

`worst_split` returns the split that misses the most predicted observations among those that
find fewer than `ratio` times the prediction. The caller cuts every pair between the two groups
and solves again: the smaller group is split off (reported, not registered), and splits inside
what remains are judged anew.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxrecon.fit import viewgraph

VIEW_ANGLE_DEG = 20.0    # a point counts as seen alike from two centres within this angle
SCALE_RATIO = 1.25       # ... and whose distances to it differ by less than this factor
OBSERVER_DEG = 1.0       # an observation within this angle of its point's ray is an observer
MIN_VIEW_EXPECTED = 10   # a view's recall enters the scene's median from this many points on
_CHUNK = 512             # tracks per block of the (tracks, targets, sources) angle tests


class Conflict(NamedTuple):
  """Two groups of views that miss each other's points: the `twoview.PairGeometry`s between them
  (`pairs`, all cut), the views of the smaller group (`side`), `expected` observations
  (candidate points times the scene's median recall), `found` of them, `recall` (the scene's
  median)."""
  pairs: tuple
  side: tuple
  expected: float
  found: int
  recall: float


def _image_boxes(tracks, visibility, views):
  """(v, 2, 2) per view the [min, max] pixel box of its observations: the part of the image
  where it has features (fit_scene is not told the image size)."""
  boxes = np.zeros((visibility.shape[1], 2, 2))
  for b in views:
    seen = tracks[visibility[:, b], b]
    boxes[b] = (seen.min(0), seen.max(0)) if len(seen) else ((0.0, 0.0), (-1.0, -1.0))
  return boxes


class _Scene(NamedTuple):
  directions: np.ndarray   # (t, v, 3) float32 unit world directions centre -> point (0: none)
  log_distance: np.ndarray  # (t, v) float32 log of the centre -> point distance
  inside: np.ndarray       # (t, v) bool, the point projects in front, inside the view's box
  observer: np.ndarray     # (t, v) bool
  visibility: np.ndarray   # (t, v) bool


def _scene(tracks, visibility, intrinsics, rotations, centres, points, angle_deg, views):
  t, v = visibility.shape
  ok = np.all(np.isfinite(points), 1)
  pts = np.where(ok[:, None], points, 0.0)
  directions = np.zeros((t, v, 3), np.float32)
  log_distance = np.zeros((t, v), np.float32)
  inside = np.zeros((t, v), bool)
  boxes = _image_boxes(tracks, visibility, views)
  for b in views:
    rel = pts - centres[b]
    dist = np.linalg.norm(rel, axis=1, keepdims=True)
    directions[:, b] = np.where(dist > 0, rel / np.maximum(dist, 1e-300), 0.0)
    log_distance[:, b] = np.log(np.maximum(dist[:, 0], 1e-30))
    cam = rel @ rotations[b].T
    front = ok & (cam[:, 2] > 0)
    pix = cam @ intrinsics[b].T
    pix = pix[:, :2] / np.where(front, pix[:, 2], 1.0)[:, None]
    inside[:, b] = front & np.all((pix >= boxes[b, 0]) & (pix <= boxes[b, 1]), 1)
  observer = visibility & (np.nan_to_num(angle_deg, nan=np.inf) < OBSERVER_DEG) & ok[:, None]
  return _Scene(directions, log_distance, inside, observer, visibility)


def expected_hits(scene, targets, sources):
  """(candidates, found): points with two or more observers among `sources` that fall inside a
  view of `targets`, seen alike by one of those observers; and how many of those (point, view)
  candidates the target view observes."""
  targets, sources = list(targets), list(sources)
  cos = np.float32(np.cos(np.deg2rad(VIEW_ANGLE_DEG)))
  candidates = found = 0
  for lo in range(0, scene.visibility.shape[0], _CHUNK):
    rows = slice(lo, lo + _CHUNK)
    obs = scene.observer[rows][:, sources]                                  # (c, a)
    use = obs.sum(1) >= 2
    if not use.any():
      continue
    alike = np.einsum("tbk,tak->tba", scene.directions[rows][use][:, targets],
                      scene.directions[rows][use][:, sources]) > cos        # (c, b, a)
    dist = scene.log_distance[rows][use]
    alike &= np.abs(dist[:, targets, None] - dist[:, None, sources]) < np.log(SCALE_RATIO)
    close = np.any(alike & obs[use][:, None, :], axis=2)
    cand = close & scene.inside[rows][use][:, targets]
    candidates += int(cand.sum())
    found += int((cand & scene.visibility[rows][use][:, targets]).sum())
  return candidates, found


def scene_recall(scene, views):
  """Median over `views` (those with >= MIN_VIEW_EXPECTED candidates) of each view's recall of
  the points the other views triangulate; NaN when no view has enough."""
  recalls = []
  for b in views:
    n, k = expected_hits(scene, [b], [a for a in views if a != b])
    if n >= MIN_VIEW_EXPECTED:
      recalls.append(k / n)
  return float(np.median(recalls)) if recalls else float("nan")


def worst_split(tracks, visibility, intrinsics, rotations, centres, points, angle_deg, views,
                pairs, *, ratio, min_expected):
  """The split of the view graph (`views`, `pairs`) whose two groups miss most of each other's
  points (module docstring), or None. Candidate splits: each edge of the maximum spanning tree
  of the inlier counts divides the views in two (the tree edge is a bridge of the tree).

  Args:
    tracks: (t, v, 2) pixels; visibility: (t, v) bool; intrinsics: (v, 3, 3);
    rotations: (v, 3, 3) cam_from_world; centres: (v, 3) world; points: (t, 3) world (NaN
      where not triangulated); angle_deg: (t, v) angle of each observation from its point
      (`positions.Positions.angle_deg`).
    views: the component's views; pairs: its `PairGeometry`s.
    ratio: a split conflicts when its groups find fewer than ratio * expected observations;
    min_expected: ... and at least this many are expected (less is no evidence either way).
  Returns:
    a `Conflict` whose `pairs` are every pair between the two groups (all must go to separate
    them), or None.
  """
  if ratio <= 0 or len(views) < 3:
    return None
  scene = _scene(tracks, visibility, intrinsics, rotations, centres, points, angle_deg, views)
  recall = scene_recall(scene, views)
  if not recall > 0:
    return None
  tree = viewgraph.spanning_tree(views, pairs)
  worst, worst_missing = None, 0.0
  for edge in tree:
    side = viewgraph.side_of(edge.i, views, [p for p in tree if p is not edge])
    other = [b for b in views if b not in side]
    n1, k1 = expected_hits(scene, other, side)
    n2, k2 = expected_hits(scene, side, other)
    expected, found = recall * (n1 + n2), k1 + k2
    if expected >= min_expected and found < ratio * expected and expected - found > worst_missing:
      smaller = min(sorted(side), other, key=len)
      between = tuple(p for p in pairs if (p.i in side) != (p.j in side))
      worst = Conflict(between, tuple(int(b) for b in smaller), expected, found, recall)
      worst_missing = expected - found
  return worst
