"""Per-scene fit: cameras and depths of one scene, optimised directly with the library's losses.

The unknowns (v views, t tracks; see `Params`) are the poses of cameras 1..v-1 and the depth of
every observation (t, v), which is either
  * "triangulated" (default, sparse tracks alone): the z of the track DLT-triangulated from the
    current poses (variable projection: only the poses are free),
  * "free": a free log-depth per observation, or
  * "mono" (when monocular depth maps (v, h, w) are given): a per-view scale and shift of the
    map sampled at the track pixels,
tied together by `losses.registration.registration_loss_at_tracks` (any of its forms), its pair
terms weighted so that every observation counts alike (`FitSettings.track_weighting`). The
optimiser (L-BFGS by default, `_lbfgs_loop`; optax's L-BFGS or Adam as options) runs a robust
schedule: stages of decreasing `robust_scale` (a wide Cauchy kernel first, so that the initial
errors of several degrees are not treated as outliers; narrow ones last, so that the remaining
outlier tracks stop pulling), each stage one jitted `lax.while_loop` (`run_stage`) that takes the
scale as a traced value (one compilation per fit) and stops once the loss has converged.

Gauge (the losses are blind to a global similarity, 7 degrees of freedom): camera 0 keeps its
initial pose, the identity (6); the scene is rescaled inside the objective so that the geometric
mean of all observed depths stays 1 (1). So the objective is exactly invariant along the gauge directions
and none of them is a way to lower it ("l2_3d" cannot shrink the scene).

Conventions of `jaxrecon.geometry`: OpenCV axes, `cam_from_world` / `world_from_cam`, depth =
camera z, pixels with centres at integers. Everything runs in float32.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from typing import NamedTuple, Optional

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax

from jaxrecon.fit.init import INITS, initial_cameras
from jaxrecon.geometry.cameras import invert_pose, make_pose
from jaxrecon.geometry.rotations import rotation_from_9d
from jaxrecon.geometry.sampling import sample_bilinear
from jaxrecon.geometry.triangulation import triangulate_with_info
from jaxrecon.losses.registration import FORMS, registration_loss_at_tracks

_F32 = jnp.float32
OPTIMIZERS = ("lbfgs", "optax_lbfgs", "adam")


@dataclasses.dataclass(frozen=True)
class FitSettings:
  """Hyper-parameters of `fit_scene` (hashable: a static argument of the jitted step).

  form: registration form, one of `losses.registration.FORMS`.
  init: initial cameras, one of `fit.init.INITS` ("essential", "rotation_only", "identity").
  stages: the robust schedule, ((robust_scale_deg, steps), ...): the optimiser runs at most
    `steps` steps (fewer once converged, see `tolerance`) with the Cauchy kernel of that scale
    (degrees; "l2_3d" uses no kernel, only the step counts matter). The scale is a traced value:
    the stage function compiles once for the whole schedule.
  depths: without depth maps, "triangulated" (default: every observation's depth is that of
    its track DLT-triangulated from the current poses, so only the poses are unknowns) or "free"
    (a free log-depth per observation, initialised by triangulation).
  optimizer: "lbfgs" (default: `_lbfgs_loop`, one evaluation per loop iteration), "optax_lbfgs"
    (optax's L-BFGS with a zoom line search: the same accuracy, ~3x the compile time) or "adam"
    (see `make_optimizer`; it does not solve templeRing).
  lbfgs_memory: number of L-BFGS correction pairs kept.
  learning_rate: peak Adam step, cosine-decayed to 1% over all stages. The unknowns are of order
    1 by construction (unit median depth, log depths, 9D rotations), so one rate serves them all.
  robust: robust penalty kind (`losses.robust.KINDS`).
  depth_weight: weight of the depth term of the "triangulation" form.
  min_init_parallax_deg: a track's initial depths come from triangulating it with the initial
    cameras when its rays spread at least this much; other observations start at the depth of the
    pivot (the scene-centre guess) in their camera.
  seed: seed of the RANSAC in the essential-matrix initialisation.
  tolerance, patience: a stage ends early once its loss (order 1: divided by the kernel's scale
    squared) has dropped by less than `tolerance` (relative, floor 1) over the last `patience`
    steps; tolerance 0 runs every stage to its step count ("adam" always does).
  first_step: length (in the unknowns, of order 1) of the first, steepest-descent step of each
    "lbfgs" stage; the line search shortens it as needed.
  max_evals_per_step: "lbfgs" stops a stage after this many evaluations per allowed step (a
    bound on line-search work).
  track_weighting: how the pair terms of a track seen l times are weighted (`_buckets`):
    "observations" (default: pair weight 1 / (l - 1), every observation weighs alike), "pairs"
    (weight 1: long tracks dominate, l (l - 1) terms each) or "tracks" (1 / (l (l - 1))). On
    templeRing "observations" gives 0.30 deg median rotation error where "pairs" gives 0.45.
  """
  form: str = "angular"
  init: str = "essential"
  stages: tuple = ((5.0, 50), (1.0, 100), (0.5, 100), (0.25, 200))
  depths: str = "triangulated"
  optimizer: str = "lbfgs"
  learning_rate: float = 0.01
  lbfgs_memory: int = 20
  robust: str = "cauchy"
  depth_weight: float = 1.0
  min_init_parallax_deg: float = 1.0
  seed: int = 0
  tolerance: float = 1e-6
  patience: int = 10
  first_step: float = 0.1
  max_evals_per_step: int = 4
  track_weighting: str = "observations"

  def __post_init__(self):
    if self.form not in FORMS:
      raise ValueError(f"form: expected one of {FORMS}, got {self.form!r}")
    if self.init not in INITS:
      raise ValueError(f"init: expected one of {INITS}, got {self.init!r}")
    if self.depths not in ("triangulated", "free"):
      raise ValueError(f"depths: expected 'triangulated' or 'free', got {self.depths!r}")
    if self.optimizer not in OPTIMIZERS:
      raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {self.optimizer!r}")
    if not self.stages or any(s <= 0 or n < 0 for s, n in self.stages):
      raise ValueError(f"stages: expected ((scale_deg > 0, steps >= 0), ...), got {self.stages}")
    if self.track_weighting not in ("pairs", "observations", "tracks"):
      raise ValueError(f"track_weighting: expected 'pairs', 'observations' or 'tracks', got "
                       f"{self.track_weighting!r}")
    if self.tolerance < 0 or self.patience < 1:
      raise ValueError(f"tolerance, patience: expected >= 0 and >= 1, got {self.tolerance}, "
                       f"{self.patience}")

  @property
  def total_steps(self) -> int:
    return int(sum(n for _, n in self.stages))


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


def _buckets(tracks, visibility, edges=(2, 4, 8), *, track_weighting="pairs"):
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


class FitResult(NamedTuple):
  """What `fit_scene` returns (numpy arrays).

  cam_from_world: (v, 4, 4) float64 fitted extrinsics; camera 0 = identity, geometric-mean
    observed depth 1.
  init_cam_from_world: (v, 4, 4) float64 the initialisation, in the same gauge.
  track_depth: (t, v) float64 fitted depth of every observation (camera z, world units of
    `cam_from_world`), NaN where not observed.
  view_affine: (v, 2) float64 (log-scale, shift) of the monocular depth per view (mono mode;
    zeros in sparse mode). The depth map of view i in fitted units is
    s (exp(a_i0) mono_i + a_i1 median(mono_i)), s = the gauge factor folded into `track_depth`.
  history: dict of (steps + 1,) float64 arrays: loss, residual_deg (mean registration residual,
    degrees; world units for "l2_3d"), inlier_fraction, robust_scale_deg; entry k is at the
    start of step k + 1 (at that step's robust scale), the last entry after the last step. Stages
    may end before their step count (converged), so steps <= settings.total_steps.
  init_seconds, fit_seconds: wall-clock time of the initialisation and of the optimisation
    (compilation included).
  """
  cam_from_world: np.ndarray
  init_cam_from_world: np.ndarray
  track_depth: np.ndarray
  view_affine: np.ndarray
  history: dict
  init_seconds: float
  fit_seconds: float


# ------------------------------------------------------------------------------------------------
# Objective and stage loop (pure; the stage is jitted once per (settings, depth mode)).


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


def make_optimizer(settings):
  """The optax optimiser of the "adam" and "optax_lbfgs" options (see `FitSettings.optimizer`).

  "adam": Adam, cosine-decayed to 1% over all stages. "optax_lbfgs": optax's L-BFGS with a zoom
  line search, restarted at each stage.
  """
  if settings.optimizer == "adam":
    return optax.adam(optax.cosine_decay_schedule(settings.learning_rate,
                                                  max(settings.total_steps, 1), alpha=0.01))
  return optax.lbfgs(memory_size=settings.lbfgs_memory)


def _converged(losses, i, settings):
  """Whether the loss decreased by less than `settings.tolerance` (relative, floor 1) over the
  last `settings.patience` steps; `losses` (max_steps + 1,) holds the loss at the start of each
  step, i the number of steps done. A window, not one step: L-BFGS can stall for a step and then
  go on."""
  k = settings.patience
  past = losses[jnp.maximum(i - k, 0)]
  now = losses[i]
  return (i >= k) & (past - now <= settings.tolerance * jnp.maximum(jnp.abs(now), 1.0))


def _lbfgs_direction(grad, s_mem, y_mem, rho, head, count):
  """L-BFGS two-loop recursion: -H grad (n,) from the `count` newest of the (m, n) correction
  pairs s = x_k+1 - x_k, y = g_k+1 - g_k stored in a ring (the next write at `head`), rho = 1 / s.y.
  The initial inverse Hessian is the usual scalar s.y / y.y of the newest pair (1 when none)."""
  m = s_mem.shape[0]

  def newest_first(i, carry):
    q, alpha = carry
    j = (head - 1 - i) % m
    a = jnp.where(i < count, rho[j] * jnp.dot(s_mem[j], q), 0.0)
    return q - a * y_mem[j], alpha.at[j].set(a)

  q, alpha = jax.lax.fori_loop(0, m, newest_first, (grad, jnp.zeros((m,), grad.dtype)))
  last = (head - 1) % m
  gamma = jnp.where(count > 0, 1.0 / (rho[last] * jnp.maximum(jnp.dot(y_mem[last], y_mem[last]),
                                                                 1e-30)), 1.0)

  def oldest_first(i, r):
    j = (head - count + i) % m
    b = rho[j] * jnp.dot(y_mem[j], r)
    return r + jnp.where(i < count, alpha[j] - b, 0.0) * s_mem[j]

  return -jax.lax.fori_loop(0, m, oldest_first, gamma * q)


def _lbfgs_loop(params, vg, num_steps, max_steps, settings):
  """Minimises vg's function from `params` with L-BFGS and a backtracking (Armijo) line search.

  Why a quasi-Newton method: the problem is ill-conditioned. With a narrow field of view,
  turning a camera and moving it sideways change the tracks' rays almost alike, so the error along
  that valley shows in the residual only at second order (on templeRing, 2-3 degrees of rotation
  error cost hundredths of a degree of mean residual); a first-order method crawls along it.
  One function-and-gradient evaluation per loop iteration (a flat state machine: each iteration
  evaluates a trial point, then either accepts it, updating the memory and the direction, or
  halves the step), so the compiled loop holds one copy of the objective and its gradient
  (optax's zoom line search holds three, and compilation dominated a fit). Correction pairs with
  s.y <= 0 (possible without the Wolfe curvature condition) are skipped; a direction that is not
  a descent direction restarts from the scaled gradient.

  Args:
    params: the unknowns (a pytree of float32 arrays).
    vg: params -> ((loss, metrics dict), grads), e.g. jax.value_and_grad(f, has_aux=True).
    num_steps: traced int, the most steps (accepted points) to take; max_steps: its static bound.
  Returns:
    (params, history dict of (max_steps + 1,) metrics at the start of each step and at the end
    (NaN beyond), steps taken).
  """
  x0, unravel = jax.flatten_util.ravel_pytree(params)
  n, m = x0.shape[0], settings.lbfgs_memory
  dtype = x0.dtype
  keys = ("loss", "residual_deg", "inlier_fraction")

  def evaluate(x):
    (value, metrics), grads = vg(unravel(x))
    return value, {k: metrics[k] for k in keys}, jax.flatten_util.ravel_pytree(grads)[0]

  def steepest(g):
    # The unknowns are of order 1: a first step of 0.1 at most (the line search shortens it).
    return -g * jnp.minimum(1.0, settings.first_step / jnp.maximum(jnp.linalg.norm(g), 1e-30))

  value, metrics, grad = evaluate(x0)
  history = {k: jnp.full((max_steps + 1,), jnp.nan, _F32).at[0].set(metrics[k]) for k in keys}
  state = dict(x=x0, f=value, g=grad, d=steepest(grad), step=jnp.asarray(1.0, dtype),
               s_mem=jnp.zeros((m, n), dtype), y_mem=jnp.zeros((m, n), dtype),
               rho=jnp.zeros((m,), dtype), head=jnp.int32(0), count=jnp.int32(0),
               steps=jnp.int32(0), evals=jnp.int32(1), stalled=jnp.asarray(False),
               history=history)

  def body(st):
    x_try = st["x"] + st["step"] * st["d"]
    f_try, metrics, g_try = evaluate(x_try)
    slope = jnp.dot(st["g"], st["d"])
    accept = jnp.isfinite(f_try) & (f_try <= st["f"] + 1e-4 * st["step"] * slope)
    # Memory update (used only if accepted).
    s, y = x_try - st["x"], g_try - st["g"]
    sy = jnp.dot(s, y)
    keep = accept & (sy > 1e-10 * jnp.dot(y, y))
    head = st["head"]
    s_mem = jnp.where(keep, st["s_mem"].at[head].set(s), st["s_mem"])
    y_mem = jnp.where(keep, st["y_mem"].at[head].set(y), st["y_mem"])
    rho = jnp.where(keep, st["rho"].at[head].set(1.0 / jnp.where(keep, sy, 1.0)), st["rho"])
    head = jnp.where(keep, (head + 1) % m, head)
    count = jnp.where(keep, jnp.minimum(st["count"] + 1, m), st["count"])
    d = _lbfgs_direction(g_try, s_mem, y_mem, rho, head, count)
    descent = jnp.dot(d, g_try) < 0
    d = jnp.where(descent, d, steepest(g_try))
    count = jnp.where(descent, count, 0)                       # restart the memory
    steps = st["steps"] + accept.astype(jnp.int32)
    history = {k: jnp.where(accept, st["history"][k].at[steps].set(metrics[k]),
                            st["history"][k]) for k in keys}
    pick = lambda new, old: jnp.where(accept, new, old)
    return dict(x=pick(x_try, st["x"]), f=pick(f_try, st["f"]), g=pick(g_try, st["g"]),
                d=pick(d, st["d"]), step=pick(jnp.asarray(1.0, dtype), 0.5 * st["step"]),
                s_mem=s_mem, y_mem=y_mem, rho=rho, head=head,
                count=pick(count, st["count"]), steps=steps, evals=st["evals"] + 1,
                # A step shortened below 1e-6 of the direction: no decrease left to find in float32.
                stalled=~accept & (st["step"] < 1e-6), history=history)

  def cond(st):
    return ((st["steps"] < jnp.minimum(num_steps, max_steps)) & ~st["stalled"]
            & (st["evals"] < settings.max_evals_per_step * jnp.maximum(num_steps, 1))
            & jnp.isfinite(st["f"]) & ~_converged(st["history"]["loss"], st["steps"], settings))

  st = jax.lax.while_loop(cond, body, state)
  return unravel(st["x"]), st["history"], st["steps"]


# No donated buffers: the optimiser state holds references to the parameters (cheap arrays here).
@functools.partial(jax.jit, static_argnames=("settings", "depth_mode"))
def run_stage(params, opt_state, problem, robust_scale_deg, num_steps, *, settings, depth_mode):
  """One stage of the robust schedule: up to `num_steps` optimiser steps in one `lax.while_loop`.

  The robust scale (degrees) and the step count are traced float32 / int32 scalars, so a fit
  compiles this once per (settings, depth mode, problem shapes) and reuses it for every stage.
  The loop stops early when the loss has converged (`_converged`), the line search stalls, or
  the loss is no longer finite.

  Args:
    opt_state: the optax state ("adam", "optax_lbfgs"; carried across stages), None for "lbfgs".
  Returns:
    (params, opt_state, history, steps): history a dict of (max_steps + 1,) float32 arrays (loss,
    residual_deg, inlier_fraction at the start of each step, then at the end; NaN beyond), steps
    the int32 number of steps taken.
  """
  max_steps = max(max(n for _, n in settings.stages), 1)
  scale = jnp.asarray(robust_scale_deg, _F32)
  vg = jax.value_and_grad(lambda p: objective(p, problem, settings, scale, depth_mode),
                          has_aux=True)
  if settings.optimizer == "lbfgs":
    params, history, steps = _lbfgs_loop(params, vg, num_steps, max_steps, settings)
    return params, opt_state, history, steps

  fn = lambda p: objective(p, problem, settings, scale, depth_mode)[0]
  optimizer = make_optimizer(settings)
  keys = ("loss", "residual_deg", "inlier_fraction")
  history = {k: jnp.full((max_steps + 1,), jnp.nan, _F32) for k in keys}

  def body(carry):
    params, opt_state, history, i = carry
    if settings.optimizer == "adam":
      (_, metrics), grads = vg(params)
      updates, opt_state = optimizer.update(grads, opt_state, params)
    else:
      # The line search already evaluated the loss at the new params: reused from its state.
      value, grads = optax.value_and_grad_from_state(fn)(params, state=opt_state)
      metrics = objective(params, problem, settings, scale, depth_mode)[1]
      updates, opt_state = optimizer.update(grads, opt_state, params, value=value, grad=grads,
                                            value_fn=fn)
    history = {k: history[k].at[i].set(metrics[k]) for k in keys}
    return optax.apply_updates(params, updates), opt_state, history, i + 1

  def cond(carry):
    _, _, history, i = carry
    ok = (i == 0) | jnp.isfinite(history["loss"][jnp.maximum(i - 1, 0)])
    # Adam's loss is not monotone (and it is cosine-decayed over all stages): it runs them out.
    converged = ((i > 0) & _converged(history["loss"], jnp.maximum(i - 1, 0), settings)
                 & (settings.optimizer != "adam"))
    return (i < jnp.minimum(num_steps, max_steps)) & ok & ~converged

  carry = (params, opt_state, history, jnp.int32(0))
  params, opt_state, history, steps = jax.lax.while_loop(cond, body, carry)
  # The diagnostics at the end of the stage (one forward pass).
  _, final = objective(params, problem, settings, scale, depth_mode)
  history = {k: history[k].at[steps].set(final[k]) for k in keys}
  return params, opt_state, history, steps


@functools.partial(jax.jit, static_argnames=("depth_mode",))
def _unpack_jit(params, problem, depth_mode):
  return unpack(params, problem, depth_mode)


# ------------------------------------------------------------------------------------------------
# Set-up.


def _check_inputs(tracks, visibility, intrinsics, depth_maps):
  tracks = np.asarray(tracks, np.float64)
  if tracks.ndim != 3 or tracks.shape[-1] != 2:
    raise ValueError(f"tracks: expected (t, v, 2) pixels, got shape {tracks.shape}")
  t, v = tracks.shape[:2]
  if v < 2:
    raise ValueError(f"tracks: need at least 2 views, got {v}")
  if t == 0:
    raise ValueError("tracks: no tracks (t = 0)")
  visibility = np.asarray(visibility)
  if visibility.shape != (t, v):
    raise ValueError(f"visibility: expected shape {(t, v)}, got {visibility.shape}")
  visibility = (visibility > 0) & np.all(np.isfinite(tracks), -1)
  if not np.any(visibility.sum(1) >= 2):
    raise ValueError("visibility: no track is seen (with finite pixels) in two or more views")
  intrinsics = np.asarray(intrinsics, np.float64)
  if intrinsics.shape != (v, 3, 3):
    raise ValueError(f"intrinsics: expected shape {(v, 3, 3)}, got {intrinsics.shape}")
  if depth_maps is not None:
    depth_maps = np.asarray(depth_maps, np.float64)
    if depth_maps.ndim != 3 or depth_maps.shape[0] != v:
      raise ValueError(f"depth_maps: expected (v={v}, h, w), got shape {depth_maps.shape}")
  # Tracks seen once carry no constraint: zero their visibility (shapes stay fixed).
  visibility &= visibility.sum(1, keepdims=True) >= 2
  return tracks, visibility, intrinsics, depth_maps


def _initial_depths(tracks, visibility, intrinsics, cam_from_world, settings):
  """(t, v) initial observation depths, (3,) pivot, both at the scale of `cam_from_world`."""
  t, v = visibility.shape
  cam_from_world32 = jnp.asarray(cam_from_world, _F32)
  proj = jnp.asarray(intrinsics, _F32) @ cam_from_world32[:, :3, :]
  pixels = jnp.asarray(np.where(visibility[..., None], tracks, 0.0), _F32)
  points, info = triangulate_with_info(proj, jnp.swapaxes(pixels, 0, 1),
                                       jnp.asarray(visibility.T, _F32))
  points = np.asarray(points, np.float64)
  z = np.einsum("vj,tj->tv", cam_from_world[:, 2, :3], points) + cam_from_world[:, 2, 3]
  good = (np.asarray(info.num_views) >= 2) & (
      np.asarray(info.parallax) >= np.deg2rad(settings.min_init_parallax_deg))
  # Triangulating with cameras whose translations were guessed ("rotation_only", "identity")
  # gives meaningless depths: those inits start every observation at the pivot's depth.
  good &= settings.init == "essential"
  good &= np.all(np.where(visibility, z > 0, True), 1)
  if good.sum() >= 8:
    median_depth = float(np.median(z[good][visibility[good]]))
    pivot = np.median(points[good], 0)
  else:
    median_depth = 1.0
    pivot = np.linalg.inv(cam_from_world[0])[:3] @ np.array([0.0, 0.0, 1.0, 1.0])
  pivot_z = cam_from_world[:, 2, :3] @ pivot + cam_from_world[:, 2, 3]        # (v,)
  fallback = np.where(pivot_z > 0, pivot_z, median_depth)
  depth = np.where(good[:, None], z, fallback[None, :])
  # Clip wild triangulations (near-degenerate rays) to a plausible range around the median.
  depth = np.clip(depth, 0.05 * median_depth, 20.0 * median_depth)
  return np.where(visibility, depth, 1.0), pivot, median_depth


def _scatter_rows(values, rows, t):
  """(len(rows), v) values -> (t, v) with NaN in the rows not listed."""
  out = np.full((t,) + values.shape[1:], np.nan)
  out[rows] = values
  return out


def fit_scene(tracks, visibility, intrinsics, *, depth_maps: Optional[np.ndarray] = None,
              settings: FitSettings = FitSettings(), init_cam_from_world=None) -> FitResult:
  """Fits the cameras (and depths) of one scene to its tracks.

  Args:
    tracks: (t, v, 2) pixels (u, v) of each track in each view, NaN (or anything) where unseen
      (e.g. `experts.Tracks.pixels`).
    visibility: (t, v) bool, observed (e.g. `experts.Tracks.visible`); observations with
      non-finite pixels and tracks seen in fewer than 2 views are ignored.
    intrinsics: (v, 3, 3) K, pixels.
    depth_maps: optional (v, h, w) monocular depth (relative units, > 0). When given, the depth
      of an observation is an affine function (per-view log-scale and shift, the unknowns) of the
      map sampled at its pixel; otherwise each observation has its own free depth.
    settings: FitSettings.
    init_cam_from_world: optional (v, 4, 4) initial extrinsics replacing `settings.init` (they are
      re-expressed in the gauge: camera 0 = identity, unit median depth).
  Returns:
    FitResult (camera 0 = identity, observed depths of geometric mean 1; compare to ground truth after a
    similarity alignment).
  Raises:
    ValueError naming the argument for fewer than 2 views, no usable track or bad shapes;
    FloatingPointError with the step number if the loss becomes non-finite.
  """
  tracks, visibility, intrinsics, depth_maps = _check_inputs(tracks, visibility, intrinsics,
                                                             depth_maps)
  t_all, v = visibility.shape
  # Only tracks seen twice constrain anything; dropping the others (and padding rows) shrinks the
  # dense (t, v, v) pair terms of the loss.
  rows = np.nonzero(visibility.sum(1) >= 2)[0]
  tracks, visibility = tracks[rows], visibility[rows]
  t = len(rows)
  start = time.perf_counter()
  if init_cam_from_world is None:
    cam_from_world = initial_cameras(tracks, visibility, intrinsics, init=settings.init,
                                     seed=settings.seed)
  else:
    cam_from_world = np.asarray(init_cam_from_world, np.float64)
    if cam_from_world.shape != (v, 4, 4):
      raise ValueError(f"init_cam_from_world: expected shape {(v, 4, 4)}, got "
                       f"{cam_from_world.shape}")
    cam_from_world = cam_from_world @ np.linalg.inv(cam_from_world[0])      # camera 0 = I
  depth, pivot, median_depth = _initial_depths(tracks, visibility, intrinsics, cam_from_world,
                                               settings)
  # Unit median depth: every unknown is then of order 1 (one learning rate for all).
  cam_from_world = cam_from_world.copy()
  cam_from_world[:, :3, 3] /= median_depth
  depth, pivot = depth / median_depth, pivot / median_depth
  init_seconds = time.perf_counter() - start

  depth_mode = "mono" if depth_maps is not None else settings.depths
  if depth_mode == "mono":
    pix = jnp.asarray(np.where(visibility[..., None], tracks, 0.0).swapaxes(0, 1), _F32)
    sampled, inside = sample_bilinear(jnp.asarray(depth_maps, _F32)[..., None], pix)
    mono = np.asarray(sampled[..., 0], np.float64).T                        # (t, v)
    inside = np.asarray(inside).T
    visibility &= inside & np.isfinite(mono) & (mono > 0)
    visibility &= visibility.sum(1, keepdims=True) >= 2
    mono = np.where(visibility, mono, 1.0)
    mono_median = np.array([np.median(mono[visibility[:, i], i]) if visibility[:, i].any()
                            else 1.0 for i in range(v)])
  else:
    mono, mono_median = np.ones((t, v)), np.ones(v)

  world_from_cam = np.linalg.inv(cam_from_world)
  problem = Problem(
      tracks=jnp.asarray(np.where(visibility[..., None], tracks, 0.0), _F32),
      visibility=jnp.asarray(visibility, _F32), buckets=_buckets(tracks, visibility,
                                                          track_weighting=settings.track_weighting),
      intrinsics=jnp.asarray(intrinsics, _F32),
      init_world_from_cam=jnp.asarray(world_from_cam, _F32),
      pivot=jnp.asarray(pivot, _F32),
      mono=jnp.asarray(mono, _F32), mono_median=jnp.asarray(mono_median, _F32))
  rot = world_from_cam[1:, :3, :3]
  view_affine = np.zeros((v, 2))
  if depth_mode == "mono":
    # Start each view's scale at the initial depths' median ratio to the mono depth.
    ratio = [np.median(depth[visibility[:, i], i] / mono[visibility[:, i], i])
             if visibility[:, i].any() else 1.0 for i in range(v)]
    view_affine[:, 0] = np.log(np.maximum(ratio, 1e-6))
  params = Params(
      rot9=jnp.asarray(rot.reshape(-1, 9), _F32),
      pivot_in_cam=jnp.asarray(np.einsum("vji,vj->vi", rot, pivot - world_from_cam[1:, :3, 3]),
                               _F32),
      log_depth=jnp.asarray(np.log(depth), _F32),
      view_affine=jnp.asarray(view_affine, _F32))

  start = time.perf_counter()
  history = {"loss": [], "residual_deg": [], "inlier_fraction": [], "robust_scale_deg": []}
  step = 0
  opt_state = None if settings.optimizer == "lbfgs" else make_optimizer(settings).init(params)
  for scale_deg, steps in settings.stages:
    if settings.optimizer == "optax_lbfgs":
      # Restarted per stage: the kernel, so the objective, changes (stale curvature pairs).
      opt_state = make_optimizer(settings).init(params)
    params, opt_state, stage, done = run_stage(
        params, opt_state, problem, jnp.asarray(scale_deg, _F32), jnp.asarray(steps, jnp.int32),
        settings=settings, depth_mode=depth_mode)
    stage, done = jax.device_get((stage, int(done)))
    bad = np.nonzero(~np.isfinite(stage["loss"][:done + 1]))[0]
    if len(bad):
      raise FloatingPointError(f"non-finite loss at step {step + int(bad[0]) + 1}: "
                               f"{ {k: float(x[bad[0]]) for k, x in stage.items()} }")
    for key in ("loss", "residual_deg", "inlier_fraction"):
      history[key].extend(np.asarray(stage[key][:done], np.float64).tolist())
    history["robust_scale_deg"].extend([float(scale_deg)] * done)
    step += done
  # The end point (the metrics after the last step, at the last stage's scale).
  for key in ("loss", "residual_deg", "inlier_fraction"):
    history[key].append(float(stage[key][done]))
  history["robust_scale_deg"].append(float(settings.stages[-1][0]))
  depth_fit, world_from_cam_fit = jax.device_get(_unpack_jit(params, problem, depth_mode))
  if not np.all(np.isfinite(world_from_cam_fit)):
    raise FloatingPointError(f"non-finite poses after step {step}")
  fit_seconds = time.perf_counter() - start
  cam_fit = np.linalg.inv(np.asarray(world_from_cam_fit, np.float64))
  cam_fit[0] = np.eye(4)                                  # exact, not float32-rounded
  return FitResult(
      cam_from_world=cam_fit, init_cam_from_world=cam_from_world,
      track_depth=_scatter_rows(np.where(visibility, np.asarray(depth_fit, np.float64), np.nan),
                                rows, t_all),
      view_affine=np.asarray(params.view_affine, np.float64),
      history={k: np.asarray(x, np.float64) for k, x in history.items()},
      init_seconds=init_seconds, fit_seconds=fit_seconds)
