"""Two-view geometry of every view pair that shares tracks, with degeneracy detection (numpy +
OpenCV).

For a pair (i, j) the shared track observations are explained by up to two calibrated models:
  * an essential matrix (cv2.findEssentialMat, RANSAC on K-normalised coordinates, then
    cv2.recoverPose): a relative rotation and a translation direction;
  * a pure rotation x_j ~ R x_i (fitted to the unit bearing vectors by a robust Kabsch / Procrustes
    solve): what two views with an unobservable baseline obey, e.g. a camera that only turned, or
    the same image twice.
As in COLMAP's two-view geometry (Schoenberger & Frahm, "Structure-from-Motion Revisited",
CVPR 2016, sec. 4.1) a pair whose inliers the degenerate model explains almost as well as the
essential matrix (`FitSettings.max_rotation_inlier_ratio`), or whose inliers' median triangulation
angle is tiny (`FitSettings.min_pair_angle_deg`), has no usable translation direction: it is kind
"rotation" and contributes a relative rotation (the Procrustes one) but no baseline. A pair whose
median pixel displacement is below `FitSettings.duplicate_px` is kind "duplicate" (the same image
under two names, or a camera that did not move at all). Every other pair with enough inliers is
"general".

The pairs feed the view graph (`fit.viewgraph`): connected components and rotation averaging.
Pair translations are not averaged: positions come from the tracks (`fit.positions`), which do not
have the sign ambiguity of a pairwise direction.

Conventions of `jaxrecon.geometry`: OpenCV axes, pixel centres at integers; a pair's `rotation`
is cam_j_from_cam_i's rotation R_ij (x_j = R_ij x_i for a pure rotation).
"""
from __future__ import annotations

import concurrent.futures
import os
from typing import NamedTuple

import cv2
import numpy as np

from jaxrecon import ransac

KINDS = ("general", "planar", "rotation", "duplicate")


class PairGeometry(NamedTuple):
  """The verified geometry of one view pair (i < j).

  rotation: (3, 3) float64 R_ij, cam_j_from_cam_i.
  direction: (3,) float64 unit translation of cam_j_from_cam_i (camera j coordinates), NaN unless
    kind == "general".
  num_shared: tracks seen in both views; num_inliers: those the chosen model explains.
  inliers: (num_shared,) bool over the shared tracks (in `track_ids` order).
  track_ids: (num_shared,) int rows of the shared tracks.
  median_angle_deg: median triangulation angle of the essential-matrix inliers (0 for a rotation).
  median_disparity_px: median pixel displacement of the shared observations.
  rotation_ratio: inliers of the pure rotation / inliers of the essential matrix.
  kind: one of `KINDS`.
  """
  i: int
  j: int
  rotation: np.ndarray
  direction: np.ndarray
  num_shared: int
  num_inliers: int
  inliers: np.ndarray
  track_ids: np.ndarray
  median_angle_deg: float
  median_disparity_px: float
  rotation_ratio: float
  kind: str


def bearings(pixels, intrinsics):
  """(n, 2) pixels, (3, 3) K -> (n, 3) unit rays K^-1 (u, v, 1) in camera coordinates."""
  hom = np.concatenate([pixels, np.ones_like(pixels[:, :1])], 1)
  rays = np.linalg.solve(intrinsics, hom.T).T
  return rays / np.linalg.norm(rays, axis=1, keepdims=True)


def _angles(a, b):
  """Angle (radians) between rows of two (n, 3) unit-vector arrays (atan2: accurate near 0)."""
  return np.arctan2(np.linalg.norm(np.cross(a, b), axis=1), np.sum(a * b, axis=1))


def procrustes_rotation(src, dst, weights=None):
  """R (3, 3) minimising sum w |dst - R src|^2 for (n, 3) unit vectors (Kabsch, det +1)."""
  w = np.ones(len(src)) if weights is None else weights
  u, _, vt = np.linalg.svd((dst * w[:, None]).T @ src)
  return u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt


def robust_rotation(src, dst, threshold_rad, iterations=10):
  """A pure rotation dst ~ R src fitted robustly: Procrustes, then Cauchy-reweighted refits.

  Returns (R (3, 3), inliers (n,) bool with angle <= threshold_rad). Starts from a sample-free
  fit; the reweighting discards the outliers the tracks still hold (they are verified already).
  """
  rot = procrustes_rotation(src, dst)
  for _ in range(iterations):
    err = _angles(dst, src @ rot.T)
    scale = max(3.0 * threshold_rad, np.median(err))
    rot = procrustes_rotation(src, dst, 1.0 / (1.0 + (err / scale) ** 2))
  return rot, _angles(dst, src @ rot.T) <= threshold_rad


def _triangulation_angles(rot, trans, x_i, x_j):
  """Angle (radians) between the two rays of each correspondence at its triangulated point.

  rot, trans: cam_j_from_cam_i (unit translation); x_i, x_j: (n, 3) unit bearings.
  """
  proj_i = np.eye(3, 4)
  proj_j = np.concatenate([rot, trans[:, None]], 1)
  hom = cv2.triangulatePoints(proj_i, proj_j, (x_i[:, :2] / x_i[:, 2:]).T,
                              (x_j[:, :2] / x_j[:, 2:]).T)
  w = np.where(np.abs(hom[3]) > 1e-12, hom[3], 1e-12)
  points = (hom[:3] / w).T                                        # camera i coordinates
  centre_j = -rot.T @ trans
  ray_i = points
  ray_j = points - centre_j
  norm = np.linalg.norm(ray_i, axis=1) * np.linalg.norm(ray_j, axis=1)
  cos = np.sum(ray_i * ray_j, axis=1) / np.maximum(norm, 1e-300)
  return np.arccos(np.clip(cos, -1.0, 1.0))


def _sampson_inliers(rot, trans, x_i, x_j, threshold):
  """Correspondences (normalised points (n, 2)) within `threshold` (normalised units) of the
  epipolar geometry of (rot, trans), by the Sampson distance."""
  tx = np.array([[0, -trans[2], trans[1]], [trans[2], 0, -trans[0]], [-trans[1], trans[0], 0]])
  e = tx @ rot
  h_i = np.concatenate([x_i, np.ones((len(x_i), 1))], 1)
  h_j = np.concatenate([x_j, np.ones((len(x_j), 1))], 1)
  ex, etx = h_i @ e.T, h_j @ e
  num = np.sum(h_j * ex, 1) ** 2
  den = ex[:, 0] ** 2 + ex[:, 1] ** 2 + etx[:, 0] ** 2 + etx[:, 1] ** 2
  return num / np.maximum(den, 1e-300) < threshold ** 2


def _pose_from_homography(x_i, x_j, all_i, all_j, threshold):
  """(R, unit t) of cam_j_from_cam_i from a homography of normalised points, or None.

  x_i, x_j: (n, 2) the homography's inliers; all_i, all_j: (m, 2) every shared correspondence;
  threshold: inlier threshold in normalised units. Of the (up to four) decompositions, those
  that put (nearly) the most inliers in front of both cameras (COLMAP's rule; the homography is
  refitted to the inliers by least squares first). A plane seen from two views leaves two such
  decompositions, the true pose and a twin that also explains the plane; of these the one whose
  epipolar geometry explains the most of all shared correspondences is kept, so points off the
  plane decide. (Taking the first, as before, picked the twin on most forward-walking procedural
  scenes with a dominant ground plane: relative rotations 14-40 degrees off, consistent with each
  other, so rotation averaging could not reject them.)"""
  h, _ = cv2.findHomography(x_i, x_j, 0)
  if h is None:
    return None
  count, rots, trans, _ = cv2.decomposeHomographyMat(h, np.eye(3))
  candidates = []
  for rot, t in zip(rots, trans):
    t = t[:, 0]
    norm = np.linalg.norm(t)
    if norm < 1e-9:
      continue
    t = t / norm
    proj_j = np.concatenate([rot, t[:, None]], 1)
    hom = cv2.triangulatePoints(np.eye(3, 4), proj_j, x_i.T, x_j.T)
    w = np.where(np.abs(hom[3]) > 1e-12, hom[3], 1e-12)
    pts = (hom[:3] / w).T
    front = int(np.sum((pts[:, 2] > 0) & ((pts @ rot.T + t)[:, 2] > 0)))
    candidates.append((front, np.asarray(rot, np.float64), t))
  if not candidates:
    return None
  most = max(c[0] for c in candidates)
  # (0.9: a point or two near the horizon may fall behind in one twin and not the other.)
  tied = [c for c in candidates if c[0] >= 0.9 * most]
  support = [int(np.sum(_sampson_inliers(rot, t, all_i, all_j, threshold)))
             for _, rot, t in tied]
  _, rot, t = tied[int(np.argmax(support))]
  return rot, t


def pair_geometry(i, j, tracks, visibility, intrinsics, *, threshold_px=1.0, min_inliers=15,
                  max_rotation_inlier_ratio=0.8, min_pair_angle_deg=1.0, duplicate_px=0.5,
                  seed=0):
  """The `PairGeometry` of views i < j, or None when they share too few inliers.

  Args:
    tracks: (t, v, 2) pixels; visibility: (t, v) bool; intrinsics: (v, 3, 3) K, pixels.
    threshold_px: inlier threshold (pixels, converted to radians with the pair's mean focal).
    min_inliers: fewer shared tracks, or fewer inliers of the chosen model, -> None.
    max_rotation_inlier_ratio, min_pair_angle_deg, duplicate_px: the degeneracy tests (module
      docstring).
    seed: OpenCV RNG seed of the RANSAC (reproducible results).
  """
  ids = np.nonzero(visibility[:, i] & visibility[:, j])[0]
  if len(ids) < max(min_inliers, 5):
    return None
  k_i, k_j = intrinsics[i], intrinsics[j]
  focal = 0.25 * (k_i[0, 0] + k_i[1, 1] + k_j[0, 0] + k_j[1, 1])
  thr = threshold_px / focal
  b_i, b_j = bearings(tracks[ids, i], k_i), bearings(tracks[ids, j], k_j)
  disparity = float(np.median(np.linalg.norm(tracks[ids, i] - tracks[ids, j], axis=1)))
  rot_r, in_r = robust_rotation(b_i, b_j, thr)

  x_i, x_j = b_i[:, :2] / b_i[:, 2:], b_j[:, :2] / b_j[:, 2:]
  cv2.setRNGSeed(int(seed))
  try:
    essential, mask = cv2.findEssentialMat(x_i, x_j, np.eye(3), method=cv2.RANSAC, prob=0.999,
                                           threshold=thr)
  except cv2.error:   # no baseline at all (the five-point solver fails): a rotation pair
    essential = None
  in_e = np.zeros(len(ids), bool)
  rot_e = trans_e = None
  if essential is not None and essential.shape == (3, 3):
    _, rot_e, trans_e, pose_mask = cv2.recoverPose(essential, x_i, x_j, np.eye(3), mask=mask)
    trans_e = trans_e[:, 0] / max(np.linalg.norm(trans_e), 1e-12)
    in_e = pose_mask[:, 0] > 0
  # A plane (a wall, the ground) fools the essential matrix (its inliers fit several poses):
  # where a homography explains the pair about as well, the pose comes from its decomposition.
  # Only a homography holding more than max_rotation_inlier_ratio of the essential matrix's
  # inliers changes anything below (the planar test; the rotation ratio then uses in_e), so
  # RANSAC stops once such a model cannot have been missed, after at most 500 iterations, which
  # find one holding half of the points with probability 1 - 1e-3 (OpenCV's default of 2000 made
  # this the slowest step of a fit; the bound takes templeRing's all_pairs from 0.71 to 0.41 s
  # with the same pair geometry).
  h_iterations = ransac.iterations(max_rotation_inlier_ratio * in_e.sum() / len(ids), 4, 0.999,
                                   cap=500)
  _, h_mask = cv2.findHomography(x_i, x_j, cv2.RANSAC, thr, maxIters=h_iterations,
                                 confidence=0.999)
  in_h = np.zeros(len(ids), bool) if h_mask is None else h_mask[:, 0] > 0
  ratio = float(in_r.sum() / max(in_e.sum(), in_h.sum(), 1))
  planar = in_h.sum() > max_rotation_inlier_ratio * in_e.sum() and in_h.sum() >= min_inliers
  if planar:
    pose = _pose_from_homography(x_i[in_h], x_j[in_h], x_i, x_j, thr)
    if pose is not None:
      rot_e, trans_e = pose
      in_e = in_h
  angle = 0.0
  if in_e.sum() >= min_inliers:
    angle = float(np.rad2deg(np.median(_triangulation_angles(rot_e, trans_e, b_i[in_e],
                                                              b_j[in_e]))))
  # No baseline: a pure rotation explains (nearly) every inlier of the better of the two general
  # models, or the inliers meet at (almost) no angle. (Compared with the homography too, not the
  # essential matrix alone: on a plane the essential matrix keeps few inliers, and a rotation
  # can then look as good as it.)
  if disparity < duplicate_px:
    kind = "duplicate"
  elif (in_e.sum() < min_inliers or ratio > max_rotation_inlier_ratio
        or angle < min_pair_angle_deg):
    kind = "rotation"
  else:
    kind = "planar" if planar else "general"
  if kind in ("general", "planar"):
    rotation, direction, inliers = rot_e, trans_e, in_e
  else:
    rotation, direction, inliers = rot_r, np.full(3, np.nan), in_r
  if inliers.sum() < min_inliers:
    return None
  return PairGeometry(i=int(i), j=int(j), rotation=np.asarray(rotation, np.float64),
                      direction=np.asarray(direction, np.float64), num_shared=len(ids),
                      num_inliers=int(inliers.sum()), inliers=inliers, track_ids=ids,
                      median_angle_deg=angle, median_disparity_px=disparity,
                      rotation_ratio=ratio, kind=kind)


def all_pairs(tracks, visibility, intrinsics, **kwargs):
  """`PairGeometry` of every pair i < j that shares at least `min_inliers` inliers (a list)."""
  v = visibility.shape[1]
  shared = visibility.T.astype(np.int64) @ visibility.astype(np.int64)
  min_inliers = kwargs.get("min_inliers", 15)
  candidates = [(i, j) for i in range(v) for j in range(i + 1, v) if shared[i, j] >= min_inliers]
  # Pairs are independent, OpenCV releases the GIL and every pair seeds its own RANSAC: threads
  # use every core and give the same result in the same (i, j) order.
  with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
    pairs = pool.map(lambda ij: pair_geometry(*ij, tracks, visibility, intrinsics, **kwargs),
                     candidates)
    return [pair for pair in pairs if pair is not None]
