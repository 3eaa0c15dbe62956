"""Global positioning: camera centres and track points from known rotations (numpy, float64).

With the rotations fixed, every observation of track t in view i says that the point X_t lies on
the ray from the camera centre c_i along the world direction d_ti = R_i^T K_i^-1 u_ti (unit), in
front of the camera: X_t - c_i = s_ti d_ti with s_ti > 0. All observations together are linear in
the centres and points ("point-camera" positioning: the idea of linear global translation
estimation from feature tracks, Cui et al., BMVC 2015, and of GLOMAP's global positioning, Pan et
al., ECCV 2024). Unlike averaging pairwise translation directions, it cannot flip a camera to the
other side of its points, and a pair with an unobservable baseline (the same image twice) is
harmless: its two centres simply coincide.

The homogeneous form (perpendicular distances of the points from their rays, solved as the
smallest eigenvector) has a trivial family of answers: all centres and points together. Outliers
pull it there: on forward-moving video (a car driving ahead, most points far) it put 14 of 18
CamVid frames on one spot, and on a simulated forward sequence with 10 % outlier rays its centres
were off by 59-93 % of the path (tests/fit/test_global_init.py). So, as in the "least unsquared
deviations" location estimator (Ozyesil & Singer, CVPR 2015), every point must lie at least one
unit in front of each camera that sees it, s_ti >= 1, which excludes the collapse and sets the
scale:

    min over c, X of  sum_ti w_ti |X_t - c_i - s_ti d_ti|^2,   s_ti = max(1, d_ti . (X_t - c_i)).

Two solves, and the better one is kept:
  * homogeneous: the perpendicular distances alone, the centres the smallest eigenvector of the
    normal equations (unit norm), signed so that most points lie in front; exact on clean rays;
  * bounded (an active-set iteration): an observation with s_ti > 1 only penalises the point's
    distance from the ray, (I - d d^T)(X_t - c_i); one at the bound penalises X_t - c_i - d_ti;
    for a fixed bound set that is one linear least-squares problem; the bound set is updated
    after each solve until it and the centres stop changing (or the iteration limit: it may
    cycle between nearby bound sets, which leaves a start good enough for bundle adjustment).
Both eliminate the points (a 3x3 solve each), leaving 3v x 3v normal equations in the centres (a
Schur complement) with the first centre at 0 (gauge), and re-weight every observation by
1 / |X_t - c_i|^2 (so residuals are angles, not distances that favour far points) times a Cauchy
kernel of its angle (outliers stop pulling). Kept: the answer with more observations within
scale_deg / 2 of their rays (ties: the homogeneous one). On the simulated forward sequences of
the test, the collapsed answers explain 20-60 % of the observations to 1 degree and the bounded
ones 56-77 %; on clean rays both explain nearly all.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxrecon.fit.twoview import bearings


class Positions(NamedTuple):
  """centres: (v, 3) world camera centres (NaN for views not positioned); points: (t, 3) world
  points (NaN where fewer than two positioned views see the track); angle_deg: (t, v) angle
  between each observed ray and the direction to its point (NaN where unobserved); iterations
  of the kept solve; solver: "homogeneous" or "bounded" (module docstring)."""
  centres: np.ndarray
  points: np.ndarray
  angle_deg: np.ndarray
  iterations: int
  solver: str = "homogeneous"


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


def _schur(wa, wb):
  """Normal equations of min sum_ti |A_ti (X_t - c_i) - b_ti|^2 weighted, with the points
  eliminated: wa (t', n, 3, 3) = w A (A symmetric idempotent), wb (t', n, 3) = w b (A b = b).
  Returns (big (3n, 3n), rhs (3n,), inv (t', 3, 3), b_sum (t', 3)); then X_t = inv_t (sum_i
  wa_ti c_i + b_sum_t)."""
  n = wa.shape[1]
  inv = np.linalg.pinv(wa.sum(1), rcond=1e-9, hermitian=True)
  big = np.zeros((3 * n, 3 * n))
  diag = wa.sum(0)
  for k in range(n):
    big[3 * k:3 * k + 3, 3 * k:3 * k + 3] = diag[k]
  p = wa.transpose(0, 2, 1, 3).reshape(-1, 3, 3 * n)                   # (t', 3, 3n)
  # Sums over the tracks as one (3n, 3 t') x (3 t', 3n) BLAS product (np.einsum would loop).
  flat = p.reshape(-1, 3 * n)
  big -= flat.T @ np.matmul(inv, p).reshape(-1, 3 * n)
  b_sum = wb.sum(1)
  rhs = flat.T @ np.matmul(inv, b_sum[..., None]).reshape(-1) - wb.sum(0).reshape(-1)
  return 0.5 * (big + big.T), rhs, inv, b_sum


def _points(wa, inv, b_sum, centres):
  return np.einsum("tab,tb->ta", inv, np.einsum("tnab,nb->ta", wa, centres) + b_sum)


def _reweight(points, centres, r, vis, scale):
  """(front (t', n) distance along each ray, angle (t', n) radians, new weights)."""
  diff = points[:, None, :] - centres[None]
  front = np.sum(diff * r, -1)
  angle = np.arctan2(np.linalg.norm(np.cross(diff, r), axis=-1), front)
  dist = np.linalg.norm(diff, axis=-1)
  typical = np.median(dist[vis]) if vis.any() else 1.0
  weights = typical ** 2 / np.maximum(dist, 1e-3 * typical) ** 2 / (1.0 + (angle / scale) ** 2)
  return front, angle, np.where(vis, weights, 0.0)


def _homogeneous(r, vis, proj, scale, iterations):
  n = vis.shape[1]
  weights = vis.astype(np.float64)
  zero = np.zeros(vis.shape + (3,))
  for _ in range(iterations):
    wa = weights[..., None, None] * proj
    big, _, inv, b_sum = _schur(wa, zero)
    _, vecs = np.linalg.eigh(big[3:, 3:])
    centres = np.concatenate([np.zeros(3), vecs[:, 0]]).reshape(n, 3)
    points = _points(wa, inv, b_sum, centres)
    if np.sum(np.where(vis, np.sign(np.sum((points[:, None] - centres[None]) * r, -1)), 0)) < 0:
      centres, points = -centres, -points
    front, angle, weights = _reweight(points, centres, r, vis, scale)
  return centres, points, angle, iterations


def _bounded(r, vis, proj, scale, iterations, tolerance):
  n = vis.shape[1]
  eye = np.eye(3)
  weights = vis.astype(np.float64)
  bound = vis.copy()            # start with every point one unit in front: no trivial answer
  centres = np.zeros((n, 3))
  it = 0
  for it in range(1, iterations + 1):
    wa = weights[..., None, None] * np.where(bound[..., None, None], eye, proj)
    wb = weights[..., None] * np.where(bound[..., None], r, 0.0)
    big, rhs, inv, b_sum = _schur(wa, wb)
    new = np.zeros((n, 3))
    new[1:] = np.linalg.lstsq(big[3:, 3:], rhs[3:], rcond=None)[0].reshape(n - 1, 3)
    points = _points(wa, inv, b_sum, new)
    front, angle, weights = _reweight(points, new, r, vis, scale)
    # Kept at the bound up to rounding: releasing every observation would leave the homogeneous
    # problem, whose least-squares answer is the trivial one.
    new_bound = vis & (front < 1.0 + 1e-6)
    change = np.abs(new - centres).max() / max(np.abs(new).max(), 1e-12)
    centres = new
    if change < tolerance and np.array_equal(new_bound, bound):
      break
    bound = new_bound
  return centres, points, angle, it


def solve_positions(rays, visibility, views, *, iterations=6, bounded_iterations=200,
                    scale_deg=2.0, tolerance=1e-7):
  """Centres and points of the views `views` (one component) from their world rays.

  Args:
    rays: (t, v, 3) unit world directions (`world_rays`); visibility: (t, v) bool.
    views: the views to position (the first one's centre is the origin).
    iterations: re-weighting rounds of the homogeneous solve (>= 1); bounded_iterations:
      active-set rounds of the bounded solve at most (0: no bounded solve); scale_deg: the
      Cauchy kernel's scale on the ray angles; tolerance: the bounded solve has converged when
      its centres move by less than this (relative to the largest) and its bound set is
      unchanged.
  Returns:
    `Positions` of the better solve (module docstring): the centres of `views` (unit norm over
    all centres) and the points of the tracks seen by at least two of them.
  """
  if iterations < 1 or bounded_iterations < 0:
    raise ValueError(f"iterations must be >= 1 and bounded_iterations >= 0, got {iterations}, "
                     f"{bounded_iterations}")
  t, v = visibility.shape
  views = list(views)
  vis = visibility[:, views]
  r = rays[:, views]
  use = vis.sum(1) >= 2
  vis, r = vis[use], r[use]
  proj = np.eye(3) - r[..., :, None] * r[..., None, :]                # (t', n, 3, 3)
  scale = np.deg2rad(scale_deg)
  answers = {"homogeneous": _homogeneous(r, vis, proj, scale, iterations)}
  if len(views) > 2 and bounded_iterations > 0:
    # (Two views: the homogeneous answer is the two-view one, there is nothing to collapse.)
    answers["bounded"] = _bounded(r, vis, proj, scale, bounded_iterations, tolerance)
  explained = {k: int(np.sum(vis & (a[2] < 0.5 * scale))) for k, a in answers.items()}
  solver = max(answers, key=lambda k: (explained[k], k == "homogeneous"))
  centres, points, angle, it = answers[solver]
  norm = max(np.linalg.norm(centres), 1e-12)
  out_c = np.full((v, 3), np.nan)
  out_c[views] = centres / norm
  out_p = np.full((t, 3), np.nan)
  out_p[use] = points / norm
  full = np.full((len(points), v), np.nan)
  full[:, views] = np.where(vis, np.rad2deg(angle), np.nan)
  ang = np.full((t, v), np.nan)
  ang[use] = full
  return Positions(centres=out_c, points=out_p, angle_deg=ang, iterations=it, solver=solver)
