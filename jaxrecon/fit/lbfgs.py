"""L-BFGS over the registration-loss objective (`fit.objective`): the `refine="registration"` option.

The optimiser runs a robust schedule (`FitSettings.stages`): stages of decreasing robust scale (a
wide Cauchy kernel first, so that the initial errors are not treated as outliers; narrow ones last,
so that the remaining outlier tracks stop pulling), each stage one jitted `lax.while_loop`
(`run_stage`) that takes the scale as a traced value (one compilation per fit) and stops once the
loss has converged.

Why a hand-written L-BFGS (`_lbfgs_loop`) and not optax's: measured on templeRing (session 2,
experiments/fit_templering.md) optax's L-BFGS with its zoom line search reached the same accuracy
at about three times the compile time, since its line search holds three copies of the objective
and its gradient in the compiled loop; ours evaluates once per loop iteration.
"""
from __future__ import annotations

import functools

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

from jaxrecon.fit.objective import Params, Problem, buckets, objective, unpack
from jaxrecon.geometry.sampling import sample_bilinear
from jaxrecon.geometry.triangulation import triangulate_with_info

_F32 = jnp.float32
REASONS = ("loss change below tolerance", "line search found no decrease", "evaluation limit",
           "step limit", "non-finite loss")

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
    (NaN beyond), steps taken, reason: int32 index into `REASONS`).
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
  # Why it stopped (an index into `REASONS`), checked in the order the loop's tests run.
  reason = jnp.select(
      [~jnp.isfinite(st["f"]), _converged(st["history"]["loss"], st["steps"], settings),
       st["stalled"], st["steps"] >= jnp.minimum(num_steps, max_steps)],
      [4, 0, 1, 3], default=2)
  return unravel(st["x"]), st["history"], st["steps"], reason




@functools.partial(jax.jit, static_argnames=("settings", "depth_mode"))
def run_stage(params, problem, robust_scale_deg, num_steps, *, settings, depth_mode):
  """One stage of the robust schedule: up to `num_steps` L-BFGS steps in one `lax.while_loop`.

  The robust scale (degrees) and the step count are traced float32 / int32 scalars, so a fit
  compiles this once per (settings, depth mode, problem shapes) and reuses it for every stage.
  Returns (params, history dict of (max_steps + 1,) float32 arrays (loss, residual_deg,
  inlier_fraction at the start of each step, then at the end; NaN beyond), int32 steps taken,
  int32 stop reason (`REASONS`)).
  """
  max_steps = max(max(n for _, n in settings.stages), 1)
  scale = jnp.asarray(robust_scale_deg, _F32)
  vg = jax.value_and_grad(lambda p: objective(p, problem, settings, scale, depth_mode),
                          has_aux=True)
  return _lbfgs_loop(params, vg, num_steps, max_steps, settings)


@functools.partial(jax.jit, static_argnames=("depth_mode",))
def _unpack_jit(params, problem, depth_mode):
  return unpack(params, problem, depth_mode)


def _initial_depths(tracks, visibility, intrinsics, cam_from_world):
  """(t, v) initial observation depths, (3,) pivot, median depth, at the scale of the cameras."""
  cam32 = jnp.asarray(cam_from_world, _F32)
  proj = jnp.asarray(intrinsics, _F32) @ cam32[:, :3, :]
  pixels = jnp.asarray(np.where(visibility[..., None], tracks, 0.0), _F32)
  points, info = triangulate_with_info(proj, jnp.swapaxes(pixels, 0, 1),
                                       jnp.asarray(visibility.T, _F32))
  points = np.asarray(points, np.float64)
  z = np.einsum("vj,tj->tv", cam_from_world[:, 2, :3], points) + cam_from_world[:, 2, 3]
  good = (np.asarray(info.num_views) >= 2) & (np.asarray(info.parallax) >= np.deg2rad(1.0))
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


def refine_registration(tracks, visibility, intrinsics, cam_from_world, settings,
                        depth_maps=None):
  """Minimises the registration objective from the initial cameras (all views registered).

  Args:
    tracks: (t, v, 2) pixels; visibility: (t, v) bool (tracks seen at least twice);
    intrinsics: (v, 3, 3); cam_from_world: (v, 4, 4) initial extrinsics, camera 0 = identity;
    settings: `FitSettings`; depth_maps: optional (v, h, w) monocular depth ("mono" mode).
  Returns:
    (cam_from_world (v, 4, 4) float64, camera 0 = identity; stages: list of stage dicts).
  Raises:
    FloatingPointError naming the step if the loss becomes non-finite.
  """
  t, v = visibility.shape
  visibility = visibility.copy()
  depth, pivot, median_depth = _initial_depths(tracks, visibility, intrinsics, cam_from_world)
  cam_from_world = cam_from_world.copy()
  cam_from_world[:, :3, 3] /= median_depth           # unknowns of order 1
  depth, pivot = depth / median_depth, pivot / median_depth
  depth_mode = "mono" if depth_maps is not None else settings.depths
  mono, mono_median = np.ones((t, v)), np.ones(v)
  if depth_mode == "mono":
    pix = jnp.asarray(np.where(visibility[..., None], tracks, 0.0).swapaxes(0, 1), _F32)
    sampled, inside = sample_bilinear(jnp.asarray(depth_maps, _F32)[..., None], pix)
    mono = np.asarray(sampled[..., 0], np.float64).T                        # (t, v)
    visibility &= np.asarray(inside).T & np.isfinite(mono) & (mono > 0)
    visibility &= visibility.sum(1, keepdims=True) >= 2
    mono = np.where(visibility, mono, 1.0)
    mono_median = np.array([np.median(mono[visibility[:, i], i]) if visibility[:, i].any()
                            else 1.0 for i in range(v)])
  world_from_cam = np.linalg.inv(cam_from_world)
  problem = Problem(
      tracks=jnp.asarray(np.where(visibility[..., None], tracks, 0.0), _F32),
      visibility=jnp.asarray(visibility, _F32),
      buckets=buckets(tracks, visibility, track_weighting=settings.track_weighting),
      intrinsics=jnp.asarray(intrinsics, _F32),
      init_world_from_cam=jnp.asarray(world_from_cam, _F32), pivot=jnp.asarray(pivot, _F32),
      mono=jnp.asarray(mono, _F32), mono_median=jnp.asarray(mono_median, _F32))
  rot = world_from_cam[1:, :3, :3]
  view_affine = np.zeros((v, 2))
  if depth_mode == "mono":
    # Each view's scale starts at the initial depths' median ratio to the mono depth.
    ratio = [np.median(depth[visibility[:, i], i] / mono[visibility[:, i], i])
             if visibility[:, i].any() else 1.0 for i in range(v)]
    view_affine[:, 0] = np.log(np.maximum(ratio, 1e-6))
  params = Params(
      rot9=jnp.asarray(rot.reshape(-1, 9), _F32),
      pivot_in_cam=jnp.asarray(np.einsum("vji,vj->vi", rot, pivot - world_from_cam[1:, :3, 3]),
                               _F32),
      log_depth=jnp.asarray(np.log(depth), _F32), view_affine=jnp.asarray(view_affine, _F32))
  stages, step = [], 0
  for scale_deg, steps in settings.stages:
    params, history, done, reason = run_stage(params, problem, jnp.asarray(scale_deg, _F32),
                                      jnp.asarray(steps, jnp.int32), settings=settings,
                                      depth_mode=depth_mode)
    history, done, reason = jax.device_get((history, int(done), int(reason)))
    loss = np.asarray(history["loss"][:done + 1], np.float64)
    bad = np.nonzero(~np.isfinite(loss))[0]
    if len(bad):
      raise FloatingPointError(f"non-finite loss at step {step + int(bad[0]) + 1}")
    step += done
    # Only the loss-change test is convergence: a line search that finds no decrease after a
    # step or two (the "triangulation" form did this) is reported as such, not as done.
    stages.append(dict(name=f"registration {settings.form} {scale_deg:g} deg",
                       iterations=done, converged=reason == 0 or steps == 0,
                       cost_start=float(loss[0]), cost_end=float(loss[-1]),
                       message=REASONS[reason]))
  _, world_from_cam_fit = jax.device_get(_unpack_jit(params, problem, depth_mode))
  if not np.all(np.isfinite(world_from_cam_fit)):
    raise FloatingPointError(f"non-finite poses after step {step}")
  cam_fit = np.linalg.inv(np.asarray(world_from_cam_fit, np.float64))
  cam_fit[0] = np.eye(4)
  return cam_fit, stages
