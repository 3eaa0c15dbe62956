"""Initial cameras and per-observation depths for a per-scene fit (numpy + OpenCV, on the host).

Three initialisations of `cam_from_world` (v, 4, 4), all with camera 0 at the identity (the world
frame is camera 0's frame; the gauge of `jaxrecon.fit.fit_scene`):

  "essential"      relative poses of view pairs from essential matrices (cv2.findEssentialMat +
                   cv2.recoverPose with known K, on the shared tracks). First chained along a
                   spanning tree (`essential_init`: each view joins through the already placed
                   view it shares most tracks with; recoverPose's unit baseline is scaled by the
                   tracks the new pair shares with the points triangulated so far, median depth
                   ratio in the parent camera, unit baselines where none); then every pair with
                   enough shared tracks is averaged (`averaged_init`: chordal rotation averaging,
                   linear translation-direction averaging). On templeRing (19 views) the chain
                   alone is 2.7 degrees off (median, after sim(3)), the averaged poses 0.8.
  "rotation_only"  the rotations of "essential", translations t_i = e3 - R_i e3: every camera
                   looks at the world point (0, 0, 1), one unit in front of camera 0's centre (a
                   turntable-like guess that uses no translation estimate).
  "identity"       cam_from_world = I for every camera (all cameras coincide with camera 0).

Conventions of `jaxrecon.geometry` (OpenCV axes, pixel centres at integers, `a_from_b` poses).
"""
from __future__ import annotations

import cv2
import numpy as np

INITS = ("essential", "rotation_only", "identity")


def _normalised(pixels, intrinsics):
  """(n, 2) pixels, (3, 3) K -> (n, 2) normalised image coordinates K^-1 u~ (z = 1)."""
  hom = np.concatenate([pixels, np.ones_like(pixels[:, :1])], 1)
  return (np.linalg.solve(intrinsics, hom.T).T)[:, :2]


def relative_pose(pixels_i, pixels_j, intrinsics_i, intrinsics_j, *, threshold_px=1.0, seed=0):
  """Relative pose of two calibrated views from matched pixels (essential matrix, RANSAC).

  Args:
    pixels_i, pixels_j: (n, 2) matched pixels (u, v) in views i and j, n >= 5.
    intrinsics_i, intrinsics_j: (3, 3) K of the two views, pixels.
    threshold_px: RANSAC threshold in pixels (converted with the mean focal length).
    seed: seed of OpenCV's RNG (RANSAC sampling), for reproducibility.
  Returns:
    (cam_j_from_cam_i (4, 4) float64 with unit-norm translation, inlier mask (n,) bool), or None
    when the essential matrix cannot be estimated.
  """
  if len(pixels_i) < 5:
    return None
  # Normalised coordinates with an identity K: the two views may have different intrinsics.
  x_i = _normalised(pixels_i.astype(np.float64), intrinsics_i)
  x_j = _normalised(pixels_j.astype(np.float64), intrinsics_j)
  focal = 0.25 * (intrinsics_i[0, 0] + intrinsics_i[1, 1] + intrinsics_j[0, 0] + intrinsics_j[1, 1])
  cv2.setRNGSeed(seed)
  eye = np.eye(3)
  essential, mask = cv2.findEssentialMat(x_i, x_j, eye, method=cv2.RANSAC, prob=0.999,
                                         threshold=threshold_px / focal)
  if essential is None or essential.shape != (3, 3):
    return None
  _, rot, trans, mask = cv2.recoverPose(essential, x_i, x_j, eye, mask=mask)
  pose = np.eye(4)
  pose[:3, :3], pose[:3, 3] = rot, trans[:, 0] / max(np.linalg.norm(trans), 1e-12)
  return pose, mask[:, 0] > 0


def _triangulate_pair(cam_i_from_world, cam_j_from_world, x_i, x_j):
  """Midpoint-free linear triangulation (cv2) of normalised coordinates -> (n, 3) world points."""
  hom = cv2.triangulatePoints(cam_i_from_world[:3], cam_j_from_world[:3], x_i.T, x_j.T)
  return (hom[:3] / np.where(np.abs(hom[3:]) > 1e-12, hom[3:], 1e-12)).T


def essential_init(tracks, visibility, intrinsics, *, min_shared=15, threshold_px=1.0, seed=0):
  """Chained essential-matrix initialisation (the "essential" entry of `INITS`).

  Args:
    tracks: (t, v, 2) pixels, NaN where unseen; visibility: (t, v) bool.
    intrinsics: (v, 3, 3) K, pixels.
    min_shared: a view joins through a placed view only if they share at least this many tracks;
      a view that shares fewer with every placed view keeps its parent's pose (zero baseline).
    threshold_px: RANSAC threshold, pixels; seed: OpenCV RNG seed.
  Returns:
    cam_from_world: (v, 4, 4) float64, camera 0 = identity, the first baseline of unit length.
    parents: (v,) int, the view each view was chained from (-1 for view 0).
  """
  tracks, visibility = np.asarray(tracks, np.float64), np.asarray(visibility, bool)
  intrinsics = np.asarray(intrinsics, np.float64)
  t, v = visibility.shape
  shared = visibility.T.astype(np.int64) @ visibility.astype(np.int64)     # (v, v) co-visibility
  cam_from_world = np.tile(np.eye(4), (v, 1, 1))
  parents = -np.ones(v, np.int64)
  points = np.full((t, 3), np.nan)                                      # world points so far
  placed = [0]
  while len(placed) < v:
    # The unplaced view sharing most tracks with a placed one joins next (a maximum spanning tree
    # of the co-visibility graph, grown from view 0).
    free = np.setdiff1d(np.arange(v), placed)
    sub = shared[np.ix_(placed, free)]
    a, b = np.unravel_index(np.argmax(sub), sub.shape)
    parent, child = placed[a], int(free[b])
    parents[child] = parent
    placed.append(child)
    both = visibility[:, parent] & visibility[:, child]
    result = None
    if both.sum() >= min_shared:
      result = relative_pose(tracks[both, parent], tracks[both, child], intrinsics[parent],
                             intrinsics[child], threshold_px=threshold_px, seed=seed)
    if result is None:
      cam_from_world[child] = cam_from_world[parent]
      continue
    child_from_parent, inliers = result
    idx = np.nonzero(both)[0][inliers]
    x_p = _normalised(tracks[idx, parent], intrinsics[parent])
    x_c = _normalised(tracks[idx, child], intrinsics[child])
    # Unit-baseline points in the parent's camera frame; their depth against the depth (in the
    # parent camera) of the same tracks triangulated before fixes the baseline's length.
    local = _triangulate_pair(np.eye(4), child_from_parent, x_p, x_c)
    parent_from_world = cam_from_world[parent]
    known = points[idx]
    known_cam = known @ parent_from_world[:3, :3].T + parent_from_world[:3, 3]
    ok = np.isfinite(known_cam[:, 2]) & (known_cam[:, 2] > 0) & (local[:, 2] > 0)
    scale = float(np.median(known_cam[ok, 2] / local[ok, 2])) if ok.sum() >= 3 else 1.0
    child_from_parent = child_from_parent.copy()
    child_from_parent[:3, 3] *= scale
    cam_from_world[child] = child_from_parent @ parent_from_world
    # New world points: triangulated from the placed pair, kept where in front of both cameras.
    world = _triangulate_pair(parent_from_world, cam_from_world[child], x_p, x_c)
    z_p = world @ parent_from_world[:3, :3].T[:, 2] + parent_from_world[2, 3]
    z_c = world @ cam_from_world[child, :3, :3].T[:, 2] + cam_from_world[child, 2, 3]
    new = np.isnan(points[idx, 0]) & (z_p > 0) & (z_c > 0)
    points[idx[new]] = world[new]
  return cam_from_world, parents


def _project_so3(m):
  u, _, vt = np.linalg.svd(m)
  return u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt


def averaged_init(tracks, visibility, intrinsics, *, min_shared=30, iterations=50,
                  threshold_px=1.0, seed=0):
  """Essential matrices of all view pairs sharing >= min_shared tracks, averaged.

  Chaining the relative poses of neighbouring views accumulates their errors (for narrow fields
  of view, a pair's rotation is entangled with its translation). Here the chained poses of
  `essential_init` only start two averaging steps over every well-matched pair (i, j):
    rotations: chordal L2 rotation averaging by block coordinate descent,
      R_j <- proj_SO3(sum_i n_ij R_ij R_i), n_ij the pair's inlier count, camera 0 held;
    centres: translation directions b_ij = -R_j^T t_ij (world, unit) of c_j - c_i, solved by
      linear least squares of n_ij [b_ij]x (c_j - c_i) = 0 with c_0 = 0 and the scale fixed by
      the chained centres' projection (sum_j <c_j, c_chain_j> = sum_j |c_chain_j|^2).
  Args and returns as in `essential_init` (cam_from_world (v, 4, 4), camera 0 = identity).
  """
  chained, _ = essential_init(tracks, visibility, intrinsics, seed=seed, threshold_px=threshold_px)
  tracks, visibility = np.asarray(tracks, np.float64), np.asarray(visibility, bool)
  intrinsics = np.asarray(intrinsics, np.float64)
  v = visibility.shape[1]
  pairs = []
  for i in range(v):
    for j in range(i + 1, v):
      both = visibility[:, i] & visibility[:, j]
      if both.sum() < min_shared:
        continue
      result = relative_pose(tracks[both, i], tracks[both, j], intrinsics[i], intrinsics[j],
                             threshold_px=threshold_px, seed=seed)
      if result is not None and result[1].sum() >= min_shared:
        pairs.append((i, j, result[0], float(result[1].sum())))
  if not pairs:
    return chained, None
  rot = chained[:, :3, :3].copy()                                       # cam_from_world
  for _ in range(iterations):
    for k in range(1, v):
      acc = np.zeros((3, 3))
      for i, j, pose, n in pairs:
        if j == k:
          acc += n * pose[:3, :3] @ rot[i]
        elif i == k:
          acc += n * pose[:3, :3].T @ rot[j]
      if np.any(acc):
        rot[k] = _project_so3(acc)
  rows, rhs = [], []
  for i, j, pose, n in pairs:
    b = -rot[j].T @ pose[:3, 3]                                         # world direction c_j - c_i
    skew = np.array([[0, -b[2], b[1]], [b[2], 0, -b[0]], [-b[1], b[0], 0]])
    block = np.zeros((3, 3 * v))
    block[:, 3 * j:3 * j + 3] += skew
    block[:, 3 * i:3 * i + 3] -= skew
    rows.append(np.sqrt(n) * block)
    rhs.append(np.zeros(3))
  chain_c = -np.einsum("vji,vj->vi", chained[:, :3, :3], chained[:, :3, 3])
  weight = np.sqrt(sum(p[3] for p in pairs))
  rows.append(weight * chain_c.reshape(1, -1))
  rhs.append(weight * np.array([np.sum(chain_c ** 2)]))
  a, y = np.concatenate(rows)[:, 3:], np.concatenate(rhs)              # c_0 = 0
  centres = np.concatenate([np.zeros(3), np.linalg.lstsq(a, y, rcond=None)[0]]).reshape(v, 3)
  poses = np.tile(np.eye(4), (v, 1, 1))
  poses[:, :3, :3] = rot
  poses[:, :3, 3] = -np.einsum("vij,vj->vi", rot, centres)
  return poses, pairs


def initial_cameras(tracks, visibility, intrinsics, *, init="essential", seed=0):
  """Initial `cam_from_world` (v, 4, 4) float64 by one of `INITS` (see the module docstring).

  Camera 0 is the identity in all three. "rotation_only" and "identity" place every camera so
  that the world point (0, 0, 1) (one unit in front of camera 0) is one unit along its optical
  axis: t_i = e3 - R_i e3; with R_i = I ("identity") all cameras coincide with camera 0.
  """
  if init not in INITS:
    raise ValueError(f"init: expected one of {INITS}, got {init!r}")
  v = np.shape(visibility)[1]
  if init == "identity":
    return np.tile(np.eye(4), (v, 1, 1))
  poses, _ = averaged_init(tracks, visibility, intrinsics, seed=seed)
  if init == "rotation_only":
    poses = poses.copy()
    poses[:, :3, 3] = np.array([0.0, 0.0, 1.0]) - poses[:, :3, 2]
  return poses
