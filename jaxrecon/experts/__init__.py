"""Experts: pluggable producers of pseudo-labels (sparse tracks, monocular depth), numpy + OpenCV.

Reliev3R never sees multi-view ground truth; it learns from what zero-shot "experts" say about the
images. This package holds those producers. It sits BELOW `jaxrecon.data`: experts take arrays
(images, intrinsics, depth maps) and return arrays; they never import the data package, models or
the trainer. Everything runs on the host (no jit); every random choice is seeded.

Tracks (fixed-size, t rows, v views; pixel conventions of `jaxrecon.geometry`):
  `matcher`: SIFT + ratio test + mutual check + essential-matrix RANSAC with known K
    (`MatcherSettings`, `detect_features`, `match_pair`, `match_views`, `view_pairs`).
  `tracks`: union-find merge of pairwise matches into multi-view tracks, conflicts dropped
    (`TrackSettings`, `Tracks`, `build_tracks`, `track_images`).
  `simulated_tracker`: ground-truth projections + noise + outliers for synthetic scenes
    (`SimulatedTracker`, `SimulatedTracks`).
Monocular depth ((v, h, w), relative units):
  `file_depth`: predictions written by any external model, `<dir>/<stem>.npy|.pfm|.png`
    (`FileDepthExpert`, `DepthLabels`); `pfm`: `read_pfm`, `write_pfm`.
  `simulated_depth`: ground truth degraded like a real monocular model
    (`SimulatedDepthExpert`, `SimulatedDepth`).
"""
from jaxrecon.experts.file_depth import DepthLabels, FileDepthExpert
from jaxrecon.experts.matcher import (Features, MatcherSettings, detect_features, match_pair,
                                      match_views, view_pairs)
from jaxrecon.experts.pfm import read_pfm, write_pfm
from jaxrecon.experts.simulated_depth import SimulatedDepth, SimulatedDepthExpert
from jaxrecon.experts.simulated_tracker import SimulatedTracker, SimulatedTracks
from jaxrecon.experts.tracks import TrackSettings, Tracks, build_tracks, track_images
