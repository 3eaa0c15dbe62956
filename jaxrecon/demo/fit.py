"""The demo's unknowns, objective, jitted Adam step and evaluation (JAX, float32)."""
from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrecon.geometry.alignment import apply_similarity, umeyama, weighted_median
from jaxrecon.geometry.cameras import make_pose
from jaxrecon.geometry.rotations import rotation_angle, rotation_from_9d
from jaxrecon.losses.depth import relative_depth_loss
from jaxrecon.losses.registration import registration_loss

# Everything is float32 (also when a caller, e.g. the test suite, enables jax_enable_x64).
_F32 = jnp.float32


@dataclasses.dataclass(frozen=True)
class FitConfig:
  """Hyper-parameters of the fit (hashable: a static argument of the jitted step).

  form: registration form, one of `losses.registration.FORMS`.
  steps: number of Adam steps.
  learning_rate: peak Adam step, cosine-decayed to 1% of it over `steps`.
  alpha: weight of -log W in the relative depth loss.
  reg_weight: lambda, the weight of the registration loss (0.5 as in the paper). The Cauchy
    penalty is small in absolute terms (~1e-4 for 1 degree residuals), but with Adam only its
    balance against the depth loss on the per-pixel depths matters: the poses and the per-view
    scale and shift see the registration loss alone, whose scale Adam normalises away. Values
    from 0.5 to 30 give the same accuracy here.
  robust_scale: residual (radians) where the registration penalty turns robust (Cauchy).
  """
  form: str = "angular"
  steps: int = 300
  learning_rate: float = 0.02
  alpha: float = 1.0
  reg_weight: float = 0.5
  robust_scale: float = float(np.deg2rad(1.0))


class Params(NamedTuple):
  """The unknowns (v views, cameras 1..v-1 free; see `unpack` for how they become depth and
  poses).

  log_depth: (v, h, w) per-pixel log-depth (log world units).
  scale_shift: (v, 2) per-view log-scale and shift (the shift in units of the view's initial
    median depth) applied to exp(log_depth).
  conf_logit: (v, h, w) confidence logits, W = 2 sigmoid(logit) in (0, 2).
  rot9: (v - 1, 9) unconstrained 9D rotations (of world_from_cam).
  pivot_in_cam: (v - 1, 3) the pivot (scene centre guess) in camera coordinates (world units).
  """
  log_depth: jax.Array
  scale_shift: jax.Array
  conf_logit: jax.Array
  rot9: jax.Array
  pivot_in_cam: jax.Array


def init_params(problem):
  """Params at the initial guess: the initial depth and poses, confidence 1 everywhere."""
  v = problem.mono.shape[0]
  rot, centre = problem.init_world_from_cam[1:, :3, :3], problem.init_world_from_cam[1:, :3, 3]
  # jnp.array copies: the step donates the parameters' buffers, and the problem keeps its own.
  return Params(log_depth=jnp.array(problem.init_log_depth),
                scale_shift=jnp.zeros((v, 2), _F32),
                conf_logit=jnp.zeros_like(problem.init_log_depth),
                rot9=rot.reshape(-1, 9),
                pivot_in_cam=jnp.einsum("vji,vj->vi", rot, problem.pivot - centre))


def unpack(params, problem):
  """Depth maps, confidence maps and poses that the unknowns stand for, with the gauge fixed.

  Depth: D_v(x) = exp(s_v + log_depth_v(x)) + t_v m_v, m_v the median initial depth of view v,
  smoothly floored at 1% of m_v. The per-view scale s_v and shift t_v duplicate what the per-pixel
  map could express, on purpose: they are exactly what the relative depth loss cannot see and the
  registration has to find, and left to the per-pixel map Adam moves them one pixel at a time
  (measured while tuning this demo: 2-6 degrees median rotation error left after 300-400 steps
  without them, 0.2-0.5 with them).

  Poses: rotation R = rotation_from_9d(rot9), centre c = pivot - R pivot_in_cam. For cameras
  looking at a scene a few units away, turning a camera about its own centre and moving it
  sideways shift the image almost alike: a long narrow valley for Adam. With the pivot's camera
  coordinates held instead, a rotation orbits the camera about the scene centre, and the two
  decouple (a pose-only fit on fixed depth, 200 steps: 0.65 / 4 degrees median / max error with
  (R, c), 0.25 / 0.5 with (R, pivot_in_cam)).

  Gauge: the weak losses are blind to a global similarity (7 degrees of freedom). Camera 0 keeps
  its initial pose (it is not a parameter): 6. The whole scene (all depths, and camera centres
  about camera 0) is rescaled so that the median of all depths keeps its initial value: 1. So
  scaling the scene is not a direction the optimiser can take (the objective is exactly invariant
  to it), and the "l2_3d" form, which is not scale invariant, cannot shrink the scene.

  Returns:
    depth: (v, h, w) world units; confidence: (v, h, w) in (0, 2); world_from_cam: (v, 4, 4).
  """
  log_scale, shift = params.scale_shift[:, 0, None, None], params.scale_shift[:, 1, None, None]
  median = jnp.exp(jnp.median(problem.init_log_depth, axis=(1, 2)))[:, None, None]
  depth = jnp.exp(log_scale + params.log_depth) + shift * median
  # A smooth floor at ~1% of the median keeps the depth positive (softplus(x) = x within 5e-5 of
  # the scale for x > 10): a negative shift must not be a way to drop observations from the
  # registration loss, which ignores depth <= 0.
  floor = 0.01 * median
  depth = floor * jax.nn.softplus(depth / floor)

  rot = rotation_from_9d(params.rot9)
  centre = problem.pivot - jnp.einsum("vij,vj->vi", rot, params.pivot_in_cam)
  # Scale gauge: the whole scene (depths, and camera centres about camera 0) is scaled so that the
  # median of all depths stays at its initial value.
  scale = jnp.exp(jnp.median(problem.init_log_depth)) / jnp.median(depth)
  centre0 = problem.init_world_from_cam[0, :3, 3]
  centre = centre0 + scale * (centre - centre0)
  world_from_cam = jnp.concatenate([problem.init_world_from_cam[:1], make_pose(rot, centre)], 0)
  depth = scale * depth
  return depth, 2 * jax.nn.sigmoid(params.conf_logit), world_from_cam


def objective(params, problem, config):
  """relative_depth_loss + lambda registration_loss, and scalar diagnostics.

  Args:
    params: Params; problem: Problem; config: FitConfig.
  Returns:
    loss: scalar; metrics: dict of scalars (loss, depth_loss, reg_loss, reg_residual: mean
    registration residual in degrees, or world units for "l2_3d", reg_inliers: fraction of
    residuals below robust_scale, confidence: mean W).
  """
  depth, confidence, world_from_cam = unpack(params, problem)
  # Every pixel counts, sky included: the pseudo-label is finite there, and the confidence is
  # what may discount it.
  mask = jnp.ones_like(depth)
  depth_loss, depth_diag = relative_depth_loss(depth, problem.mono, confidence, mask,
                                               alpha=config.alpha, ambiguity=True)
  reg_loss, reg_diag = registration_loss(
      problem.tracks, problem.visibility, depth, world_from_cam, problem.intrinsics,
      form=config.form, robust_scale=config.robust_scale)
  residual = reg_diag["mean_residual"]
  metrics = {"loss": depth_loss + config.reg_weight * reg_loss, "depth_loss": depth_loss,
             "reg_loss": reg_loss,
             "reg_residual": residual if config.form == "l2_3d" else jnp.rad2deg(residual),
             "reg_inliers": reg_diag["inlier_fraction"],
             "confidence": depth_diag["mean_confidence"]}
  return metrics["loss"], metrics


def make_optimizer(config):
  """Adam, its step cosine-decayed to 1% so that the last steps refine instead of jitter."""
  return optax.adam(optax.cosine_decay_schedule(config.learning_rate, config.steps, alpha=0.01))


@functools.partial(jax.jit, static_argnames=("config",), donate_argnums=(0, 1))
def train_step(params, opt_state, problem, config):
  """One Adam step on the objective. Returns (params, opt_state, metrics)."""
  grads, metrics = jax.grad(objective, has_aux=True)(params, problem, config)
  updates, opt_state = make_optimizer(config).update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, metrics


# ------------------------------------------------------------------------------------------------
# Evaluation.


def evaluate(depth, world_from_cam, truth):
  """Errors of depth maps and poses, up to what weak supervision cannot know.

  Args:
    depth: (v, h, w) predicted depth; world_from_cam: (v, 4, 4) predicted poses.
    truth: GroundTruth.
  Returns:
    dict of scalars:
      rot_median_deg, rot_max_deg: relative rotation error over all camera pairs (degrees), the
        angle between predicted and true R_i^T R_j (no alignment needed);
      centre_rel: mean camera-centre error after the least-squares similarity (Umeyama) onto the
        true centres, divided by the scene size (mean camera distance to the scene centre);
      depth_rel: mean |d - d*| / d* over non-sky pixels, after scaling each predicted map by its
        median ratio to the truth.
  """
  v = depth.shape[0]
  rot, rot_true = world_from_cam[:, :3, :3], truth.world_from_cam[:, :3, :3]
  rel = jnp.swapaxes(rot, -1, -2)[:, None] @ rot[None]                # (v, v, 3, 3) R_i^T R_j
  rel_true = jnp.swapaxes(rot_true, -1, -2)[:, None] @ rot_true[None]
  err = jnp.rad2deg(rotation_angle(rel, rel_true))
  pair = jnp.triu(jnp.ones((v, v), bool), 1)
  pair_weight = pair.astype(_F32).reshape(-1)
  rot_median = weighted_median(err.reshape(-1), pair_weight)
  rot_max = jnp.max(jnp.where(pair, err, 0.0))

  centres, centres_true = world_from_cam[:, :3, 3], truth.world_from_cam[:, :3, 3]
  scale, r, t = umeyama(centres, centres_true)
  aligned = apply_similarity(scale, r, t, centres)
  centre_rel = jnp.mean(jnp.linalg.norm(aligned - centres_true, axis=-1)) / truth.scene_size

  valid = truth.valid.reshape(v, -1)
  pred, true = depth.reshape(v, -1), truth.depth.reshape(v, -1)
  ratio = weighted_median(jnp.where(valid, true / pred, 0.0), valid)[:, None]
  abs_rel = jnp.abs(ratio * pred - true) / jnp.where(valid, true, 1.0)
  depth_rel = jnp.sum(jnp.where(valid, abs_rel, 0.0)) / jnp.maximum(jnp.sum(valid), 1)
  return {"rot_median_deg": rot_median, "rot_max_deg": rot_max, "centre_rel": centre_rel,
          "depth_rel": depth_rel}


@jax.jit
def evaluate_params(params, problem, truth):
  """`evaluate` of the depth and poses that `params` stand for (see `unpack`)."""
  depth, _, world_from_cam = unpack(params, problem)
  return evaluate(depth, world_from_cam, truth)


# ------------------------------------------------------------------------------------------------
# The fit and the command line.


def to_floats(tree):
  """dict of scalar arrays -> dict of Python floats (fetched from the device)."""
  return {k: float(v) for k, v in jax.device_get(tree).items()}


def fit(problem, truth, config, *, log_every=50, log=print):
  """Runs the optimisation from the initial guess.

  Args:
    problem: Problem; truth: GroundTruth (only for the progress lines, never for the fit).
    config: FitConfig.
    log_every: print a progress line every this many steps (0: never); log: print function.
  Returns:
    (Params, last metrics dict of floats).
  Raises:
    FloatingPointError with the step number if the loss becomes non-finite.
  """
  params = init_params(problem)
  opt_state = make_optimizer(config).init(params)
  metrics = {}
  for step in range(1, config.steps + 1):
    params, opt_state, metrics = train_step(params, opt_state, problem, config)
    if not np.isfinite(float(metrics["loss"])):
      raise FloatingPointError(f"non-finite loss at step {step}: {to_floats(metrics)}")
    if log_every and (step % log_every == 0 or step == config.steps):
      m = to_floats(metrics)
      rot = float(evaluate_params(params, problem, truth)["rot_median_deg"])
      # "l2_3d" residuals are distances (world units), the others angles.
      residual = (f"{m['reg_residual']:.3f}" if config.form == "l2_3d" else
                  f"{m['reg_residual']:.2f} deg, {m['reg_inliers']:.0%} inliers")
      log(f"step {step:4d}  loss {m['loss']:+.4f}  depth {m['depth_loss']:+.4f}  "
          f"reg {m['reg_loss']:.3e}  mean residual {residual}  rotation error {rot:.3f} deg")
  return params, to_floats(metrics)
