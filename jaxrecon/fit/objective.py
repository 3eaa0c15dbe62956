"""The registration-loss objective of per-scene fitting (the `refine="registration"` option).

The unknowns (v views, t tracks; see `Params`) are the poses of cameras 1..v-1 and the depth of
every observation (t, v), which is either
  * "triangulated" (default, sparse tracks alone): the z of the track DLT-triangulated from the
    current poses (variable projection: only the poses are free),
  * "free": a free log-depth per observation, or
  * "mono" (when monocular depth maps (v, h, w) are given): a per-view scale and shift of the
    map sampled at the track pixels,
tied together by `losses.registration.registration_loss_at_tracks` (any of its forms), its pair
terms weighted so that every observation counts alike (`FitSettings.track_weighting`). `fit.lbfgs`
minimises it.

Gauge (the losses are blind to a global similarity, 7 degrees of freedom): camera 0 keeps its
initial pose (6); the scene is rescaled inside the objective so that the geometric mean of all
observed depths stays 1 (1). So the objective is exactly invariant along the gauge directions and
none of them is a way to lower it ("l2_3d" cannot shrink the scene).

Conventions of `jaxrecon.geometry`: OpenCV axes, `cam_from_world` / `world_from_cam`, depth =
camera z, pixels with centres at integers. Everything runs in float32.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon.geometry.cameras import invert_pose, make_pose
from jaxrecon.geometry.rotations import rotation_from_9d
from jaxrecon.geometry.triangulation import triangulate_with_info
from jaxrecon.losses.registration import registration_loss_at_tracks

_F32 = jnp.float32

class Problem(NamedTuple):
  """The data of the fit (device arrays, float32; fixed for the whole run).

  tracks: (t, v, 2) pixels, 0 where unseen; visibility: (t, v) float 0/1 (seen at least twice).
  buckets: tuple of `Bucket`, the tracks packed by length (see `Bucket`).
  intrinsics: (v, 3, 3) K, pixels.
  init_world_from_cam: (v, 4, 4) the initial poses (camera 0 = identity), scaled to a unit
    median initial depth.
  pivot: (3,) world point, the scene-centre guess that camera rotations orbit (see `unpack`).
  mono: (t, v) monocular depth sampled at the track pixels (relative units; 1 where absent).
  mono_median: (v,) median of `mono` per view (1 when absent).
  """
  tracks: jax.Array
  visibility: jax.Array
  buckets: tuple
  intrinsics: jax.Array
  init_world_from_cam: jax.Array
  pivot: jax.Array
  mono: jax.Array
  mono_median: jax.Array


class Bucket(NamedTuple):
  """Tracks of at most `l` observations, packed: each track is its own batch element with its own
  l cameras, so the dense pair terms of the loss cost l^2 per track instead of v^2.

  rows: (b,) int track index into the (t, v) layout; views: (b, l) int view of each slot (0 in
  unused slots); tracks: (b, 1, l, 2) pixels; visibility: (b, 1, l) float observation weights
  (0 in unused slots; see `FitSettings.track_weighting`); pair_weight: () float, the sum of the
  pair weights w_i w_j (i != j) of the bucket, its share of the overall mean.
  """
  rows: jax.Array
  views: jax.Array
  tracks: jax.Array
  visibility: jax.Array
  pair_weight: jax.Array


def buckets(tracks, visibility, edges=(2, 4, 8), *, track_weighting="pairs"):
  """Packs (t, v, 2) tracks, (t, v) bool visibility into `Bucket`s of length <= each edge (and v).

  track_weighting: "pairs" (every pair term weighs 1, so a track seen l times weighs l (l - 1))
  or "observations" (observation weight 1 / sqrt(l - 1): a track weighs l, each observation alike).
  """
  t, v = visibility.shape
  length = visibility.sum(1)
  out, low = [], 0
  for high in sorted({e for e in edges if e < v} | {v}):
    rows = np.nonzero((length > low) & (length <= high))[0]
    low = high
    if len(rows) == 0:
      continue
    views = np.zeros((len(rows), high), np.int64)
    vis = np.zeros((len(rows), high), bool)
    for k, r in enumerate(rows):
      seen = np.nonzero(visibility[r])[0]
      views[k, :len(seen)], vis[k, :len(seen)] = seen, True
    pix = np.where(vis[..., None], tracks[rows[:, None], views], 0.0)
    weight = vis.astype(np.float64)
    if track_weighting == "observations":
      weight /= np.sqrt(np.maximum(length[rows] - 1, 1))[:, None]
    elif track_weighting == "tracks":
      weight /= np.sqrt(np.maximum(length[rows] * (length[rows] - 1), 1))[:, None]
    pair_weight = np.sum(weight.sum(1) ** 2 - (weight ** 2).sum(1))
    out.append(Bucket(rows=jnp.asarray(rows), views=jnp.asarray(views),
                      tracks=jnp.asarray(pix[:, None], _F32),
                      visibility=jnp.asarray(weight[:, None], _F32),
                      pair_weight=jnp.asarray(pair_weight, _F32)))
  return tuple(out)


class Params(NamedTuple):
  """The unknowns.

  rot9: (v - 1, 9) unconstrained 9D rotations of world_from_cam of cameras 1..v-1.
  pivot_in_cam: (v - 1, 3) the pivot in camera coordinates (world units): a camera's centre is
    pivot - R pivot_in_cam, so a rotation orbits the camera about the scene instead of turning it
    about its centre: for cameras a few units from the scene, turning about the centre and moving
    sideways shift the image almost alike, a narrow valley for first-order optimisers (measured on a
    pose-only fit, 200 Adam steps: 0.65 / 4 deg median / max rotation error with (R, c), 0.25 / 0.5
    with (R, pivot_in_cam)).
  log_depth: (t, v) log of per-observation depth (sparse mode; unused entries stay 0).
  view_affine: (v, 2) log-scale and shift (in units of the view's median mono depth) of the
    monocular depth (mono mode; unused in sparse mode).
  """
  rot9: jax.Array
  pivot_in_cam: jax.Array
  log_depth: jax.Array
  view_affine: jax.Array




def unpack(params, problem, depth_mode):
  """Per-observation depth (t, v) and world_from_cam (v, 4, 4) that `params` stand for, gauge fixed.

  Camera 0 is not a parameter (it keeps its initial pose); the scene (depths, and camera centres
  about camera 0's) is scaled so that the geometric mean of the observed depths is 1.
  """
  rot = rotation_from_9d(params.rot9)
  centre = problem.pivot - jnp.einsum("vij,vj->vi", rot, params.pivot_in_cam)
  world_from_cam = jnp.concatenate([problem.init_world_from_cam[:1], make_pose(rot, centre)], 0)
  if depth_mode == "triangulated":
    # Variable projection: the depths are a function of the poses (each track DLT-triangulated
    # from all its views, differentiable), so the optimiser sees the poses alone.
    cam_from_world = invert_pose(world_from_cam)
    proj = problem.intrinsics @ cam_from_world[:, :3, :]
    points, info = triangulate_with_info(proj, jnp.swapaxes(problem.tracks, 0, 1),
                                         problem.visibility.T,
                                         min_parallax=float(np.deg2rad(0.1)))
    ok_pts = jax.lax.stop_gradient(info.parallax >= np.deg2rad(0.1))
    points = jnp.where(ok_pts[:, None], points, 0.0)
    z = jnp.einsum("vj,tj->tv", cam_from_world[:, 2, :3], points) + cam_from_world[:, 2, 3]
    # Low-parallax tracks have an unbounded depth: held at the pivot's depth (not
    # differentiated: it only selects data). Points behind a camera keep a small positive depth
    # (a smooth floor), so the loss still sees them and pushes them back.
    ok = jax.lax.stop_gradient(info.parallax >= np.deg2rad(0.1))[:, None]
    pivot_z = jnp.einsum("vj,j->v", cam_from_world[:, 2, :3], problem.pivot) + cam_from_world[:, 2, 3]
    z = jnp.where(ok, z, jax.lax.stop_gradient(pivot_z)[None, :])
    floor = 0.01 * jnp.abs(jax.lax.stop_gradient(pivot_z))[None, :] + 1e-6
    # (+ 1e-3 floor: softplus underflows to 0 in float32 far behind, and a zero depth puts the
    # point on its camera's centre, where the angle's gradient is 0 / 0.)
    depth = floor * (jax.nn.softplus(z / floor) + 1e-3)
  elif depth_mode == "mono":
    log_scale, shift = params.view_affine[:, 0], params.view_affine[:, 1]
    depth = jnp.exp(log_scale) * problem.mono + shift * problem.mono_median
    # Smooth floor at 1% of the view's median: a negative shift must not be a way to drop
    # observations (the loss ignores depth <= 0).
    floor = 0.01 * problem.mono_median
    depth = floor * (jax.nn.softplus(depth / floor) + 1e-3)
  else:
    depth = jnp.exp(params.log_depth)
  centre = world_from_cam[1:, :3, 3]
  # Geometric mean, not median: the gauge must be smooth for L-BFGS's line search.
  vis = problem.visibility
  scale = jnp.exp(-jnp.sum(vis * jnp.log(depth)) / jnp.sum(vis))
  centre0 = problem.init_world_from_cam[0, :3, 3]
  centre = centre0 + scale * (centre - centre0)
  world_from_cam = jnp.concatenate([problem.init_world_from_cam[:1], make_pose(rot, centre)], 0)
  return scale * depth, world_from_cam


def objective(params, problem, settings, robust_scale_deg, depth_mode):
  """Registration loss of the unknowns, and scalar diagnostics (residual in degrees).

  robust_scale_deg: the Cauchy kernel's scale in degrees, a float32 scalar (traced under jit: one
  compiled objective serves every stage of the schedule).
  """
  scale_rad = jnp.deg2rad(jnp.asarray(robust_scale_deg, _F32))
  depth, world_from_cam = unpack(params, problem, depth_mode)
  # Per bucket the loss is a masked mean over its terms; the mean over all of them is the
  # term-count-weighted mean (identical to the dense (t, v, v) loss for 0/1 visibility).
  total = {"loss": 0.0, "mean_residual": 0.0, "inlier_fraction": 0.0, "num_terms": 0.0}
  for b in problem.buckets:
    loss_b, diag = registration_loss_at_tracks(
        b.tracks, b.visibility, depth[b.rows[:, None], b.views][:, None],
        world_from_cam[b.views], problem.intrinsics[b.views],
        form=settings.form, robust=settings.robust,
        robust_scale=scale_rad, depth_weight=settings.depth_weight)
    # (The bucket's pair-weight sum: its term count for 0/1 weights.)
    n = b.pair_weight
    total["loss"] += n * loss_b
    total["mean_residual"] += n * diag["mean_residual"]
    total["inlier_fraction"] += n * diag["inlier_fraction"]
    total["num_terms"] += n
  n = jnp.maximum(total["num_terms"], 1.0)
  # In units of the kernel's scale (the Cauchy penalty is ~ s^2 / 2 (r / s)^2): an objective and
  # gradient of order 1 instead of ~1e-7, which L-BFGS's first step and line search need.
  loss = total["loss"] / n / scale_rad ** 2
  residual = total["mean_residual"] / n
  diag = {"inlier_fraction": total["inlier_fraction"] / n}
  metrics = {"loss": loss,
             "residual_deg": residual if settings.form == "l2_3d" else jnp.rad2deg(residual),
             "inlier_fraction": diag["inlier_fraction"]}
  return loss, metrics

