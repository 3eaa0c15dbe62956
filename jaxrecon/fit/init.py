"""Global initialisation of a scene: pairs -> view graph -> rotations -> positions (numpy).

The steps of a global SfM system (as in GLOMAP, Pan et al., ECCV 2024; rotation averaging after
Chatterjee & Govindu, TPAMI 2018; positions from tracks after Cui et al., BMVC 2015):
  1. `fit.twoview.all_pairs`: verified two-view geometry of every view pair, degenerate pairs
     (no baseline) detected;
  2. `fit.viewgraph.components`: the largest connected component is the one registered;
  3. `fit.viewgraph.average_rotations`: robust rotation averaging over its pairs; pairs that
     disagree with the average by more than `FitSettings.max_rotation_residual_deg` leave the
     view graph (its components are recomputed) and the rest is averaged again;
  4. `fit.positions.solve_positions`: camera centres and track points from the rotations and the
     tracks, unless no pair of the component has a baseline ("rotation-only" scene: one common
     centre, points at infinity);
  5. `fit.conflicts.worst_split`: where two groups of views miss each other's points (a false
     match of repeated or symmetric structure joined them), the pairs between them are cut and
     steps 2-4 run again, until no split conflicts.
No step needs an ordering of the views: rings, sequences and unordered collections are alike.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxrecon.fit import conflicts, twoview, viewgraph
from jaxrecon.fit import positions as positions_lib


class GlobalInit(NamedTuple):
  """rotations: (v, 3, 3) cam_from_world rotations (NaN outside the registered component);
  centres: (v, 3) world centres (NaN likewise; all 0 in a rotation-only scene); points: (t, 3)
  (unit directions in a rotation-only scene; NaN where not seen twice in the component);
  pairs: the `twoview.PairGeometry` list; components: view lists, largest first;
  rotation_residual_deg: (len(component pairs),) rotation-averaging edge errors;
  rotation_only: no pair of the component has an observable baseline;
  conflicts: the `fit.conflicts.Conflict`s, groups of views split off because their points
    contradict the rest (the pairs between them are no longer in `pairs`)."""
  rotations: np.ndarray
  centres: np.ndarray
  points: np.ndarray
  pairs: list
  components: list
  rotation_residual_deg: np.ndarray
  rotation_only: bool
  conflicts: tuple = ()


def _average(v, pairs, settings):
  """Components of `pairs` and the robust rotations of the largest: (pairs left after dropping
  those its loops contradict, components, main, its pairs, rotations dict, residuals)."""
  for again in (False, True):
    comps = viewgraph.components(v, pairs)
    main = comps[0]
    inside = [p for p in pairs if p.i in main and p.j in main]
    if len(main) < 2:
      return pairs, comps, main, inside, {}, np.zeros(0)
    rot, residual, _ = viewgraph.average_rotations(main, inside,
                                                   scale_deg=settings.rotation_scale_deg)
    # A pair its loops contradict (a wrong relative rotation) is dropped from the view graph,
    # and the rest re-averaged once without it: the Cauchy weights only shrink its pull (a
    # 40-degree error still biases its neighbours by ~0.05 degrees), and a view held only by
    # such pairs is no longer connected.
    bad = {(p.i, p.j) for p, r in zip(inside, residual) if r > settings.max_rotation_residual_deg}
    if again or not bad:
      return pairs, comps, main, inside, rot, residual
    pairs = [p for p in pairs if (p.i, p.j) not in bad]


def global_init(tracks, visibility, intrinsics, settings):
  """The `GlobalInit` of a scene (tracks (t, v, 2) pixels, visibility (t, v) bool, K (v, 3, 3)).

  settings: a `FitSettings` (the two-view, view-graph and conflict fields are used).
  """
  t, v = visibility.shape
  pairs = twoview.all_pairs(
      tracks, visibility, intrinsics, threshold_px=settings.threshold_px,
      min_inliers=settings.min_pair_inliers,
      max_rotation_inlier_ratio=settings.max_rotation_inlier_ratio,
      min_pair_angle_deg=settings.min_pair_angle_deg, duplicate_px=settings.duplicate_px,
      seed=settings.seed)
  cut = []
  while True:
    rotations = np.full((v, 3, 3), np.nan)
    centres = np.full((v, 3), np.nan)
    points = np.full((t, 3), np.nan)
    pairs, comps, main, inside, rot, residual = _average(v, pairs, settings)
    if len(main) < 2:
      return GlobalInit(rotations, centres, points, pairs, comps, residual, False, tuple(cut))
    for view, r in rot.items():
      rotations[view] = r
    rays = positions_lib.world_rays(tracks, visibility, intrinsics, rotations)
    rotation_only = not any(p.kind in ("general", "planar") for p in inside)
    if rotation_only:
      centres[main] = 0.0
      vis = visibility[:, main]
      seen = vis.sum(1) >= 2
      direction = np.einsum("tv,tvi->ti", vis.astype(np.float64), rays[:, main])
      points[seen] = direction[seen] / np.linalg.norm(direction[seen], axis=1, keepdims=True)
      break
    pos = positions_lib.solve_positions(rays, visibility, main)
    centres, points = pos.centres, pos.points
    # Two groups of views whose points contradict each other are split apart, and the scene
    # solved again without the pairs between them (`fit.conflicts`); each round cuts one split.
    conflict = conflicts.worst_split(
        tracks, visibility, intrinsics, rotations, centres, points, pos.angle_deg, main, inside,
        ratio=settings.conflict_ratio, min_expected=settings.conflict_min_expected)
    if conflict is None:
      break
    cut.append(conflict)
    pairs = [p for p in pairs if not any(p is q for q in conflict.pairs)]
  return GlobalInit(rotations, centres, points, pairs, comps, residual, rotation_only,
                    tuple(cut))
