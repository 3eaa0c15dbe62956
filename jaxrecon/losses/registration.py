"""Registration losses: tie per-view depth and camera poses together through sparse tracks.

A track is one scene point observed at pixel u_i in several views i. With predicted depth maps
D_i, camera poses world_from_cam_i (centre c_i, rotation R_i) and known intrinsics K_i, each
observation back-projects to the world point X_i = c_i + D_i(u_i) R_i K_i^-1 u~_i. The forms:

  "angular"        Reliev3R's trigonometry-based form: for every ordered pair (i, j) of views that
                   see the track, the angle at c_i between the viewing ray through u_i and
                   X_j - c_i. Invariant to a global similarity; defined even when X_j is behind
                   camera i (the angle is then > 90 degrees).
  "triangulation"  DLT-triangulate the track from the predicted projection matrices (differentiable,
                   `geometry.triangulate`), reproject it into every view that sees it (pixel error
                   / focal length), plus `depth_weight` times the relative disagreement between
                   the predicted depth D_i(u_i) and the triangulated point's depth in view i.
                   Invariant to a global similarity.
  "l2_3d"          |X_i - X_j| over pairs (world units), robustified like the others: not scale
                   invariant, so on its own it could be lowered by shrinking the scene (the
                   paper's reason to reject it). Its callers normalise the scene (Reliev3R's
                   objective to unit mean depth, `fit` to unit geometric-mean depth), so there it
                   cannot shrink and its residual is a fraction of the scene depth, which for a
                   point at about the mean depth equals the angle it subtends (r ~ theta d).
  "pixel"          reproject X_j into view i: pixel error / focal length. Similarity invariant but
                   ill-posed for points near or behind camera i (the other reason).

Angular and reprojection residuals are in radians (pixel errors are divided by the focal length,
the small-angle equivalent), the "l2_3d" residual in world units, which its callers make
fractions of a unit scene depth; so every form's residual is dimensionless and of the same size
at the same relative error, and one `robust_scale` and one robust kernel serve all four (tested:
the four terms agree within a factor 3 on a shared case).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon.geometry.safe import masked_mean, safe_norm
from jaxrecon.geometry.shapes import check_shape
from jaxrecon.geometry.cameras import inverse_intrinsics, invert_pose, project, transform_points
from jaxrecon.geometry.sampling import sample_bilinear
from jaxrecon.geometry.triangulation import triangulate_with_info
from jaxrecon.losses.robust import robust_penalty

FORMS = ("angular", "triangulation", "l2_3d", "pixel")


def _angle(a, b):
  """Angle (radians) between vectors a and b (..., 3), with finite gradients at 0 and for b = 0."""
  return jnp.arctan2(safe_norm(jnp.cross(a, b)), jnp.sum(a * b, -1))


def _focal(intrinsics):
  """(..., v) mean focal length in pixels, converting pixel errors to (small) angles."""
  return 0.5 * (jnp.abs(intrinsics[..., 0, 0]) + jnp.abs(intrinsics[..., 1, 1]))


def _pair_mask(weights):
  """(..., t, v) observation weights -> (..., t, v, v) pair weights w_i w_j for i != j."""
  v = weights.shape[-1]
  off_diagonal = 1.0 - jnp.eye(v, dtype=weights.dtype)
  return weights[..., :, None] * weights[..., None, :] * off_diagonal


def registration_loss(tracks, visibility, depth, world_from_cam, intrinsics, *,
                      form: str = "angular", robust: str = "cauchy",
                      robust_scale=float(np.deg2rad(1.0)), depth_weight: float = 1.0,
                      min_parallax: float = 1e-3, min_depth: float = 1e-6):
  """Multi-view registration loss over tracks (one of `FORMS`, see the module docstring).

  Args:
    tracks: (..., t, v, 2) pixel (u, v) of each track in each view; entries with visibility 0 may
      hold anything (NaN padding included).
    visibility: (..., t, v) bool or weights in [0, 1]; 0 = not observed.
    depth: (..., v, h, w) predicted depth maps (camera z, world units, > 0), sampled bilinearly at
      the track pixels; observations outside the image are dropped.
    world_from_cam: (..., v, 4, 4) (or 3x4) predicted camera-to-world poses.
    intrinsics: (..., v, 3, 3) known intrinsics K.
    form: "angular" (paper), "triangulation", "l2_3d" or "pixel".
    robust: robust penalty kind of `losses.robust.robust_penalty` (every form).
    robust_scale: residual (radians; world units for "l2_3d", whose callers normalise the scene
      to unit depth) where the penalty turns robust; 1 degree (0.0175) by default. A
      Python number or a jnp scalar, possibly traced (one compiled loss then serves a schedule of
      scales); only a concrete value is checked (> 0).
    depth_weight: weight of the depth-registration term of "triangulation".
    min_parallax: tracks whose rays spread less (radians) are left out of "triangulation" (their
      depth is undetermined and its gradient unbounded).
    min_depth: smallest |z| used as a divisor when projecting ("pixel", "triangulation").
  Returns:
    loss: scalar mean penalty over valid pairs (or observations, for "triangulation"); 0 with
      finite gradients when nothing is valid.
    diagnostics: mean_residual (radians, or world units for "l2_3d"), inlier_fraction (residual <
      robust_scale), num_terms, and per form: behind_fraction ("pixel", "triangulation"),
      depth_term and num_tracks ("triangulation").
  """
  # Shapes of the poses, intrinsics and the form are checked by the core.
  dims = check_shape(tracks, "... t v 2", "tracks")
  check_shape(visibility, "... t v", "visibility", dims)
  check_shape(depth, "... v h w", "depth", dims)
  tracks = jnp.asarray(tracks, jnp.result_type(depth, jnp.float32))
  # Per observation (layout (..., t, v)): sampled depth; outside the image -> not observed.
  d_vt, inside_vt = sample_bilinear(jnp.asarray(depth)[..., None], jnp.swapaxes(tracks, -2, -3))
  d = jnp.swapaxes(d_vt[..., 0], -1, -2)
  vis = jnp.where(jnp.swapaxes(inside_vt, -1, -2), visibility, 0.0)
  return registration_loss_at_tracks(
      tracks, vis, d, world_from_cam, intrinsics, form=form, robust=robust,
      robust_scale=robust_scale, depth_weight=depth_weight, min_parallax=min_parallax,
      min_depth=min_depth)


def registration_loss_at_tracks(tracks, visibility, track_depth, world_from_cam, intrinsics, *,
                                form: str = "angular", robust: str = "cauchy",
                                robust_scale=float(np.deg2rad(1.0)),
                                depth_weight: float = 1.0, min_parallax: float = 1e-3,
                                min_depth: float = 1e-6):
  """`registration_loss` with the depth of every observation given instead of depth maps.

  The core of `registration_loss` (which samples its depth maps at the track pixels and calls
  this); used directly when the unknowns are per-observation depths (sparse per-scene fitting).

  Args:
    tracks: (..., t, v, 2) pixel (u, v) of each track in each view; may hold NaN where unseen.
    visibility: (..., t, v) bool or weights in [0, 1]; 0 = not observed.
    track_depth: (..., t, v) depth (camera z, world units) of each observation; observations with
      a non-finite or non-positive depth are dropped.
    world_from_cam, intrinsics and the keyword arguments: as in `registration_loss`.
  Returns:
    (loss, diagnostics) as in `registration_loss`.
  """
  if form not in FORMS:
    raise ValueError(f"form: expected one of {FORMS}, got {form!r}")
  dims = check_shape(tracks, "... t v 2", "tracks")
  check_shape(visibility, "... t v", "visibility", dims)
  check_shape(track_depth, "... t v", "track_depth", dims)
  pose_rows = "3" if np.shape(world_from_cam)[-2:] == (3, 4) else "4"
  check_shape(world_from_cam, f"... v {pose_rows} 4", "world_from_cam", dims)
  check_shape(intrinsics, "... v 3 3", "intrinsics", dims)
  dtype = jnp.result_type(track_depth, world_from_cam, jnp.float32)
  batch, t, v = dims["..."], dims["t"], dims["v"]
  bcast = lambda x, tail: jnp.broadcast_to(jnp.asarray(x, dtype), batch + tail)
  tracks, vis = bcast(tracks, (t, v, 2)), bcast(visibility, (t, v))
  d = bcast(track_depth, (t, v))
  world_from_cam = bcast(world_from_cam, (v, int(pose_rows), 4))
  intrinsics = bcast(intrinsics, (v, 3, 3))

  # Per observation (layout (..., t, v)): validity, world ray, back-projected point.
  observed = (vis > 0) & jnp.isfinite(d) & (d > 0)
  weight = jnp.where(observed, vis, 0.0)
  pixels = jnp.where(observed[..., None], tracks, 0.0)                # double-where for NaN pads
  d = jnp.where(observed, d, 1.0)
  hom = jnp.concatenate([pixels, jnp.ones_like(pixels[..., :1])], -1)
  rays_cam = jnp.einsum("...vij,...tvj->...tvi", inverse_intrinsics(intrinsics), hom)
  rot, centre = world_from_cam[..., :3, :3], world_from_cam[..., :3, 3]
  rays = jnp.einsum("...vij,...tvj->...tvi", rot, rays_cam)           # world frame, unit z in cam
  points = centre[..., None, :, :] + d[..., None] * rays              # (..., t, v, 3)

  if form == "triangulation":
    return _triangulation_form(pixels, weight, d, world_from_cam, intrinsics, robust=robust,
                               robust_scale=robust_scale, depth_weight=depth_weight,
                               min_parallax=min_parallax, min_depth=min_depth)

  pair_w = _pair_mask(weight)                                         # (..., t, i, j)
  x_j = points[..., None, :, :]                                       # (..., t, 1, j, 3)
  diag = {}
  if form == "angular":
    resid = _angle(rays[..., :, None, :], x_j - centre[..., None, :, None, :])
  elif form == "l2_3d":
    resid = safe_norm(points[..., :, None, :] - x_j)
  else:  # pixel: X_j as a one-point set, projected by camera i
    cam_from_world = invert_pose(world_from_cam)[..., None, :, None, :, :]  # (..., 1, i, 1, 4, 4)
    pix_hat, z = project(x_j[..., None, :], intrinsics[..., None, :, None, :, :], cam_from_world,
                         min_depth=min_depth)
    resid = (safe_norm(pix_hat[..., 0, :] - pixels[..., :, None, :])
             / _focal(intrinsics)[..., None, :, None])
    diag["behind_fraction"] = masked_mean((z[..., 0] <= 0).astype(dtype), pair_w)
  penalty = robust_penalty(resid, kind=robust, scale=robust_scale)
  diag.update(_summary(resid, pair_w, robust_scale))
  return masked_mean(penalty, pair_w), diag


def _summary(resid, weights, robust_scale):
  return {"mean_residual": masked_mean(resid, weights),
          "inlier_fraction": masked_mean((resid < robust_scale).astype(resid.dtype), weights),
          "num_terms": jnp.sum(weights > 0)}


def _triangulation_form(pixels, weight, d, world_from_cam, intrinsics, *, robust, robust_scale,
                        depth_weight, min_parallax, min_depth):
  """pixels (..., t, v, 2), weight and sampled depth d (..., t, v); see `registration_loss`."""
  cam_from_world = invert_pose(world_from_cam)                        # (..., v, 4, 4)
  proj = intrinsics @ cam_from_world[..., :3, :]
  x, info = triangulate_with_info(proj, jnp.swapaxes(pixels, -2, -3), jnp.swapaxes(weight, -1, -2),
                                  min_parallax=min_parallax)          # x: (..., t, 3)
  # A track counts when it is seen twice with enough parallax. The cut is not differentiated: it
  # selects data, and below it the triangulated depth and its gradient are unbounded.
  # Tracks behind a camera stay in: the depth term is what pushes them back in front.
  track_ok = jax.lax.stop_gradient((info.num_views >= 2) & (info.parallax >= min_parallax))
  track_ok = track_ok.astype(weight.dtype)
  w = weight * track_ok[..., None]                                    # (..., t, v)
  x_cam = transform_points(cam_from_world, x[..., None, :, :])        # (..., v, t, 3)
  pix_hat, z = project(x_cam, intrinsics, min_depth=min_depth)
  pix_hat, z = jnp.swapaxes(pix_hat, -2, -3), jnp.swapaxes(z, -1, -2)  # (..., t, v, 2), (..., t, v)
  resid = safe_norm(pix_hat - pixels) / _focal(intrinsics)[..., None, :]
  reproj = masked_mean(robust_penalty(resid, kind=robust, scale=robust_scale), w)
  # Symmetric relative difference in [0, 2]: scale invariant, finite for z <= 0 (behind).
  depth_resid = 2.0 * jnp.abs(d - z) / (jnp.abs(d) + jnp.abs(z) + 1e-12)
  depth_term = masked_mean(robust_penalty(depth_resid, kind=robust, scale=robust_scale), w)
  diag = _summary(resid, w, robust_scale)
  diag.update({"depth_term": depth_term,
               "behind_fraction": masked_mean((z <= 0).astype(z.dtype), w),
               "num_tracks": jnp.sum(track_ok)})
  return reproj + depth_weight * depth_term, diag
