"""View graph: connected components of the verified pairs and robust rotation averaging (numpy).

Nodes are views, edges the pairs of `fit.twoview.all_pairs` (any kind: a "rotation" or "duplicate"
pair still fixes a relative rotation). Only one component can be registered in one frame: views in
other components share no verified geometry with it, so their poses relative to it are unknown.

Rotation averaging (cam_from_world rotations R_i from relative rotations R_ij ~ R_j R_i^T):
  1. a start from the maximum spanning tree of the inlier counts (the most reliable pairs,
     chained from the tree's root), as in global SfM systems (e.g. GLOMAP, Pan et al., ECCV 2024,
     and Chatterjee & Govindu, "Robust relative rotation averaging", TPAMI 2018);
  2. iteratively reweighted least squares on the linearised chordal residuals: with
     R_i <- R_i Exp(a_i) (a_i in world coordinates) an edge asks a_j - a_i = Log(R_j^T R_ij R_i);
     each iteration solves that weighted linear system (the root fixed, the gauge) and re-weights
     each edge by a Cauchy kernel of its current residual, so that a few wrong pairs stop pulling.
Pair weights are sqrt(inliers): more inliers mean a better rotation, but no single pair (the
zero-baseline one of a duplicated image has the most) can outvote the rest.
"""
from __future__ import annotations

import numpy as np

from jaxrecon.unionfind import UnionFind


def components(num_views, pairs):
  """Connected components of the view graph: a list of sorted view lists, largest first (ties:
  more inliers inside, then the smallest view)."""
  forest = UnionFind(num_views)
  for p in pairs:
    forest.union(p.i, p.j)
  groups = {}
  for view in range(num_views):
    groups.setdefault(forest.find(view), []).append(view)
  inliers = {root: 0 for root in groups}
  for p in pairs:
    inliers[forest.find(p.i)] += p.num_inliers
  ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), -inliers[kv[0]], kv[1][0]))
  return [sorted(views) for _, views in ordered]


def spanning_tree(views, pairs):
  """The maximum spanning tree of the pairs' inlier counts over `views` (Kruskal; a forest when
  they do not connect): a list of pairs."""
  forest = UnionFind(max(views, default=-1) + 1)
  return [p for p in sorted(pairs, key=lambda p: -p.num_inliers) if forest.union(p.i, p.j)]


def side_of(view, views, pairs):
  """The set of `views` that `pairs` connect to `view` (itself included)."""
  forest = UnionFind(max(max(views, default=-1), view) + 1)
  for p in pairs:
    forest.union(p.i, p.j)
  root = forest.find(view)
  return {v for v in views if forest.find(v) == root} | {view}


def _exp(w):
  """(..., 3) rotation vectors -> (..., 3, 3) rotation matrices (Rodrigues)."""
  theta = np.linalg.norm(w, axis=-1, keepdims=True)[..., None]
  k = np.zeros(w.shape[:-1] + (3, 3))
  k[..., 0, 1], k[..., 0, 2], k[..., 1, 2] = -w[..., 2], w[..., 1], -w[..., 0]
  k = k - np.swapaxes(k, -1, -2)
  small = theta < 1e-8
  a = np.where(small, 1.0, np.sin(theta) / np.where(small, 1.0, theta))
  b = np.where(small, 0.5, (1 - np.cos(theta)) / np.where(small, 1.0, theta ** 2))
  return np.eye(3) + a * k + b * k @ k


def log_rotation(r):
  """(..., 3, 3) rotations -> (..., 3) rotation vectors (angle in radians times the unit axis)."""
  skew = 0.5 * np.stack([r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0],
                         r[..., 1, 0] - r[..., 0, 1]], -1)
  sin = np.linalg.norm(skew, axis=-1, keepdims=True)
  cos = 0.5 * (np.trace(r, axis1=-2, axis2=-1)[..., None] - 1.0)
  theta = np.arctan2(sin, cos)
  axis = skew / np.maximum(sin, 1e-300)
  near_pi = (sin < 1e-6) & (cos < 0)
  if np.any(near_pi):
    # theta ~ pi: the axis is the column of R + I with the largest norm.
    rp = r + np.eye(3)
    idx = np.argmax(np.linalg.norm(rp, axis=-2), axis=-1)
    col = np.take_along_axis(rp, idx[..., None, None].repeat(3, -2), -1)[..., 0]
    col = col / np.maximum(np.linalg.norm(col, axis=-1, keepdims=True), 1e-300)
    axis = np.where(near_pi, col, axis)
  return np.where(sin < 1e-12, skew, theta * axis)


def spanning_tree_rotations(views, pairs):
  """Rotations (dict view -> (3, 3) cam_from_world) chained along the maximum spanning tree of the
  pairs' inlier counts, the first view of `views` at the identity."""
  rot = {views[0]: np.eye(3)}
  remaining = sorted(pairs, key=lambda p: -p.num_inliers)
  while len(rot) < len(views):
    for p in remaining:
      if (p.i in rot) != (p.j in rot):
        if p.i in rot:
          rot[p.j] = p.rotation @ rot[p.i]
        else:
          rot[p.i] = p.rotation.T @ rot[p.j]
        break
    else:
      raise ValueError("spanning_tree_rotations: the pairs do not connect the views")
  return rot


def average_rotations(views, pairs, *, iterations=30, scale_deg=5.0, tolerance_deg=1e-4):
  """Robust rotation averaging over one connected component (module docstring).

  Args:
    views: the component's views (the first is held at the identity: the gauge).
    pairs: the `PairGeometry`s between them.
    iterations: at most this many IRLS iterations; scale_deg: the Cauchy kernel's scale.
    tolerance_deg: stop once no rotation moves by more than this.
  Returns:
    (rotations dict view -> (3, 3) cam_from_world, residual_deg (len(pairs),) final edge errors,
    iterations done).
  """
  rot = spanning_tree_rotations(views, pairs)
  index = {view: k for k, view in enumerate(views)}
  n = len(views)
  base = np.sqrt(np.array([p.num_inliers for p in pairs], np.float64))
  scale = np.deg2rad(scale_deg)
  done = 0
  for done in range(1, iterations + 1):
    res = np.stack([log_rotation(rot[p.j].T @ p.rotation @ rot[p.i]) for p in pairs])
    err = np.linalg.norm(res, axis=1)
    w = base / (1.0 + (err / scale) ** 2)
    a = np.zeros((3 * len(pairs), 3 * n))
    for e, p in enumerate(pairs):
      a[3 * e:3 * e + 3, 3 * index[p.j]:3 * index[p.j] + 3] = np.eye(3)
      a[3 * e:3 * e + 3, 3 * index[p.i]:3 * index[p.i] + 3] -= np.eye(3)
    sw = np.repeat(np.sqrt(w), 3)[:, None]
    step = np.linalg.lstsq(sw * a[:, 3:], sw[:, 0] * res.reshape(-1), rcond=None)[0]
    step = np.concatenate([np.zeros(3), step]).reshape(n, 3)
    for view, k in index.items():
      rot[view] = rot[view] @ _exp(step[k])
    if np.rad2deg(np.max(np.linalg.norm(step, axis=1))) < tolerance_deg:
      break
  res = np.stack([log_rotation(rot[p.j].T @ p.rotation @ rot[p.i]) for p in pairs])
  return rot, np.rad2deg(np.linalg.norm(res, axis=1)), done
