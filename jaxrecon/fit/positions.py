"""Global positioning: camera centres and track points from known rotations (numpy, float64).

With the rotations fixed, every observation of track t in view i says that the point X_t lies on
the ray from the camera centre c_i along the world direction d_ti = R_i^T K_i^-1 u_ti (unit):
(I - d d^T)(X_t - c_i) = 0. All observations together are one homogeneous linear system in the
centres and points ("point-camera" positioning: the idea of linear global translation estimation
from feature tracks, Cui et al., BMVC 2015, and of GLOMAP's global positioning, Pan et al., ECCV
2024). Unlike averaging pairwise translation directions, it cannot flip a camera to the other side
of its points: each centre is pinned where the rays to several points meet, which has one
solution, not two. A pair with an unobservable baseline (the same image twice) is harmless too:
its two centres simply coincide.

Solve: the points are eliminated (each X_t is the least-squares meeting point of its rays, a 3x3
solve), leaving a 3v x 3v matrix M in the centres (a Schur complement); the centres are its
smallest eigenvector with the first centre at 0 (gauge: translation) and unit norm (scale), signed
so that most points lie in front of their cameras. Residuals are distances in world units, which
favour far points; iterations re-weight each observation by 1 / |X_t - c_i|^2 (an angular error)
times a Cauchy kernel of its angle, so outlier observations stop pulling.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxrecon.fit.twoview import bearings


class Positions(NamedTuple):
  """centres: (v, 3) world camera centres (NaN for views not positioned); points: (t, 3) world
  points (NaN where fewer than two positioned views see the track); angle_deg: (t, v) angle
  between each observed ray and the direction to its point (NaN where unobserved); iterations."""
  centres: np.ndarray
  points: np.ndarray
  angle_deg: np.ndarray
  iterations: int


def world_rays(tracks, visibility, intrinsics, rotations):
  """(t, v, 3) unit world directions of the observed rays (0 where unobserved).

  rotations: (v, 3, 3) cam_from_world rotations (NaN rows for views without one).
  """
  t, v = visibility.shape
  out = np.zeros((t, v, 3))
  for i in range(v):
    rows = np.nonzero(visibility[:, i])[0]
    if len(rows) and np.all(np.isfinite(rotations[i])):
      out[rows, i] = bearings(tracks[rows, i], intrinsics[i]) @ rotations[i]
  return out


def meet_rays(rays, weights, centres):
  """Least-squares meeting points of weighted rays: (t, v, 3) unit world rays, (t, v) weights,
  (v, 3) centres -> (t, 3) points (pseudo-inverse where the rays are parallel; NaN where a track
  has fewer than two weighted rays)."""
  proj = np.eye(3) - rays[..., :, None] * rays[..., None, :]          # (t, v, 3, 3)
  wp = weights[..., None, None] * proj
  inv = np.linalg.pinv(wp.sum(1), rcond=1e-9, hermitian=True)
  rhs = np.einsum("tvab,vb->ta", wp, np.nan_to_num(centres))
  points = np.einsum("tab,tb->ta", inv, rhs)
  return np.where(((weights > 0).sum(1) >= 2)[:, None], points, np.nan)


def solve_positions(rays, visibility, views, *, iterations=6, scale_deg=2.0):
  """Centres and points of the views `views` (one component) from their world rays.

  Args:
    rays: (t, v, 3) unit world directions (`world_rays`); visibility: (t, v) bool.
    views: the views to position (the first one's centre is the origin).
    iterations: re-weighting rounds; scale_deg: the Cauchy kernel's scale on the ray angles.
  Returns:
    `Positions` with the centres of `views` (unit norm over all centres) and the points of the
    tracks seen by at least two of them.
  """
  t, v = visibility.shape
  views = list(views)
  vis = visibility[:, views]
  r = rays[:, views]
  use = vis.sum(1) >= 2
  vis, r = vis[use], r[use]
  n = len(views)
  weights = vis.astype(np.float64)
  centres = np.zeros((n, 3))
  scale = np.deg2rad(scale_deg)
  it = 0
  for it in range(1, iterations + 1):
    # Schur complement of the points: M = D - P^T blockdiag(N_t^-1) P with P's blocks w Q_ti.
    proj = np.eye(3) - r[..., :, None] * r[..., None, :]
    wp = weights[..., None, None] * proj                              # (t', n, 3, 3)
    normal = wp.sum(1)
    inv = np.linalg.pinv(normal, rcond=1e-9, hermitian=True)
    diag = wp.sum(0)                                                  # (n, 3, 3)
    big = np.zeros((3 * n, 3 * n))
    for k in range(n):
      big[3 * k:3 * k + 3, 3 * k:3 * k + 3] = diag[k]
    p = wp.transpose(0, 2, 1, 3).reshape(-1, 3, 3 * n)                 # (t', 3, 3n)
    big -= np.einsum("tab,tbc->ac", p.transpose(0, 2, 1), np.einsum("tab,tbc->tac", inv, p))
    reduced = 0.5 * (big[3:, 3:] + big[3:, 3:].T)
    _, vecs = np.linalg.eigh(reduced)
    centres = np.concatenate([np.zeros(3), vecs[:, 0]]).reshape(n, 3)
    points = np.einsum("tab,tb->ta", inv, np.einsum("tvab,vb->ta", wp, centres))
    diff = points[:, None, :] - centres[None]
    front = np.sum(diff * r, -1)
    if np.sum(np.where(vis, np.sign(front), 0.0)) < 0:
      centres, points, diff, front = -centres, -points, -diff, -front
    dist = np.linalg.norm(diff, axis=-1)
    angle = np.arctan2(np.linalg.norm(np.cross(diff, r), axis=-1), front)
    typical = np.median(dist[vis]) if vis.any() else 1.0
    weights = vis / np.maximum(dist, 1e-3 * typical) ** 2 * typical ** 2
    weights = weights / (1.0 + (angle / scale) ** 2)
    weights = np.where(vis, weights, 0.0)
  out_c = np.full((v, 3), np.nan)
  out_c[views] = centres
  out_p = np.full((t, 3), np.nan)
  out_p[use] = points
  ang = np.full((t, v), np.nan)
  full = np.full((len(points), v), np.nan)
  full[:, views] = np.where(vis, np.rad2deg(angle), np.nan)
  ang[use] = full
  return Positions(centres=out_c, points=out_p, angle_deg=ang, iterations=it)
