"""Rewis3d train state and the module-level, jit-compiled step of the two mean-teacher branches.

    graphdefs, state = create_seg_state({"2d": segformer, "3d": point_net}, {"2d": tx2, "3d": tx3})
    state = place_state(state, mesh)                     # jaxrecon.train.sharding
    state, metrics = seg_train_step(state, shard_batch(batch, mesh), graphdefs=graphdefs, txs=txs,
                                    config=cfg, mesh=mesh)

Each branch (a `Branch`: student parameters, other variables, optimiser state) has its own
optimiser; its teacher is the `ema_teacher` inside that optimiser state, so it is sharded and
checkpointed with it. The EMA baseline is a state with the "2d" branch only. With `mesh`, the
gradients and the new state (teachers included) are pinned to the layout `place_state` gives.

Losses (DESIGN.md, Rewis3d): per branch L_ST = 0.5 CE(student, sparse labels) + 0.5 w_t KL(teacher
|| student); with both branches, L_2D = L_ST_2D + lambda(step) L_C_2D and L_3D = L_ST_3D +
lambda(step) L_C_3D, where L_C_2D trains the 2D student on the 3D teacher's pseudo-labels at the
pixels that points project to (and L_C_3D the reverse), weighted by q * c. Teachers see the weak
views (image_weak, points_weak), students the strong ones. Teacher outputs are stop-gradient
constants, so the gradient of L_2D + L_3D w.r.t. the 2D student is that of L_2D alone: no gradient
crosses between branches.

Batch (b samples; see `jaxrecon.rewis3d.pipeline`): image_weak, image_strong (b, h, w, 3) uint8;
labels (b, h, w) int32 sparse (255 unlabelled); points_weak, points_strong (b, n, 3) float32;
points_rgb (b, n, 3) float32 in [0, 1]; points_label (b, n) int32; points_confidence (b, n);
points_valid (b, n) bool; points_pixel (b, n) int32 flat index into the h x w crop or -1.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxrecon.losses.segmentation import CMC_NORMALISE, cmc_loss, student_teacher_loss
from jaxrecon.optim.ema import teacher_params
from jaxrecon.train.sharding import constrain_state

CONFIDENCE = ("dual", "prediction", "reconstruction", "none")


class Branch(NamedTuple):
  """params: the student's nnx.Param state; rest: its other variables; opt_state: the optimiser
  state, holding the EMA teacher."""
  params: Any
  rest: Any
  opt_state: Any


class SegState(NamedTuple):
  """step: int32 scalar, steps done. branches: {"2d": Branch} or {"2d": Branch, "3d": Branch}."""
  step: jax.Array
  branches: dict


@dataclasses.dataclass(frozen=True)
class SegObjectiveConfig:
  """Loss settings (hashable: a static argument of the jitted step).

  tau: teacher confidence threshold of w_t (paper 0.95).
  cmc_weight: lambda_max of the cross-modal terms (paper 0.1).
  base_steps: steps of the base stage (lambda = 0: branches trained independently).
  ramp_steps: steps over which lambda then rises linearly to cmc_weight (0: at once).
  confidence: weighting of the cross-modal terms: "dual" (q * c, the paper's), "prediction" (q),
    "reconstruction" (c) or "none" (plain CE over corresponding entries).
  cmc_normalise: what the cross-modal terms are divided by (`losses.cmc_loss`'s `normalise`):
    "weights" (sum of q c: a weighted mean) or "reconstruction" (sum of c: an unsure teacher,
    low q, weakens the term, as in the paper's weighted sum).
  cmc_balance: each pseudo-class counts once in the cross-modal terms (`losses.cmc_loss`'s
    `balance_classes`), so the other branch's class prior is not handed on by its dominant class.
  """
  tau: float = 0.95
  cmc_weight: float = 0.1
  base_steps: int = 100
  ramp_steps: int = 100
  confidence: str = "dual"
  cmc_normalise: str = "weights"
  cmc_balance: bool = False

  def __post_init__(self):
    if self.confidence not in CONFIDENCE:
      raise ValueError(f"confidence: expected one of {CONFIDENCE}, got {self.confidence!r}")
    if self.cmc_normalise not in CMC_NORMALISE:
      raise ValueError(f"cmc_normalise: expected one of {CMC_NORMALISE}, got "
                       f"{self.cmc_normalise!r}")
    if not 0.0 <= self.tau <= 1.0:
      raise ValueError(f"tau: expected a value in [0, 1], got {self.tau}")
    if self.cmc_weight < 0 or self.base_steps < 0 or self.ramp_steps < 0:
      raise ValueError("cmc_weight, base_steps and ramp_steps must be >= 0, got "
                       f"{self.cmc_weight}, {self.base_steps}, {self.ramp_steps}")

  def cmc_lambda(self, step):
    """lambda at a step (0 during the base stage, then a linear ramp to cmc_weight)."""
    after = jnp.asarray(step, jnp.float32) - self.base_steps
    if self.ramp_steps == 0:
      return self.cmc_weight * (after >= 0).astype(jnp.float32)
    return self.cmc_weight * jnp.clip(after / self.ramp_steps, 0.0, 1.0)


def create_seg_state(models: Mapping[str, nnx.Module], txs: Mapping[str, optax.GradientTransformation]):
  """(graphdefs {name: GraphDef}, SegState at step 0) for student models keyed "2d" [, "3d"]."""
  if "2d" not in models or set(models) - {"2d", "3d"} or set(models) != set(txs):
    raise ValueError(f"models/txs: expected keys {{'2d'}} or {{'2d', '3d'}} in both, got "
                     f"{sorted(models)} and {sorted(txs)}")
  graphdefs, branches = {}, {}
  for name, model in models.items():
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    graphdefs[name] = graphdef
    branches[name] = Branch(params, rest, txs[name].init(params))
  return graphdefs, SegState(jnp.zeros((), jnp.int32), branches)


def _flat(x):
  """(b, h, w, ...) -> (b, h * w, ...)."""
  return x.reshape(x.shape[0], x.shape[1] * x.shape[2], *x.shape[3:])


def _gather(flat_logits, pixel):
  """(b, p, k) logits at (b, n) flat pixel indices (-1 -> pixel 0, masked by the caller)."""
  index = jnp.clip(pixel, 0, flat_logits.shape[1] - 1)
  return jnp.take_along_axis(flat_logits, index[..., None], axis=1)


# Jitted on their own so that the step traces each model once: the teacher's forward has the
# student's argument shapes and reuses its trace (jax caches a jitted function's trace per shape).
@functools.partial(jax.jit, static_argnums=0)
def _forward2d(graphdef, params, rest, images):
  return nnx.merge(graphdef, params, rest)(images)


@functools.partial(jax.jit, static_argnums=0)
def _apply3d(graphdef, params, rest, points, rgb, valid):
  return nnx.merge(graphdef, params, rest)(points, rgb, valid)


def _forward3d(graphdef, params, rest, batch, points):
  return _apply3d(graphdef, params, rest, points, batch["points_rgb"], batch["points_valid"])


def cross_modal_terms(s2, t2, s3, t3, batch, config: SegObjectiveConfig):
  """(cmc_2d, cmc_3d, cmc_2d diagnostics): each student against the other branch's teacher.

  s2, t2: (b, h * w, k) 2D student / teacher logits; s3, t3: (b, n, k) 3D ones. A point links
  to its pixel batch["points_pixel"] (-1: none) when batch["points_valid"]; config.confidence
  picks which of q (teacher prediction) and c (batch["points_confidence"]) weight the terms."""
  linked = batch["points_valid"] & (batch["points_pixel"] >= 0)
  flags = dict(use_prediction_confidence=config.confidence in ("dual", "prediction"),
               use_reconstruction_confidence=config.confidence in ("dual", "reconstruction"),
               normalise=config.cmc_normalise, balance_classes=config.cmc_balance)
  conf = batch["points_confidence"]
  cmc2, c2 = cmc_loss(_gather(s2, batch["points_pixel"]), t3, conf, linked, **flags)
  cmc3, _ = cmc_loss(s3, _gather(t2, batch["points_pixel"]), conf, linked, **flags)
  return cmc2, cmc3, c2


def seg_losses(params, state: SegState, batch, *, graphdefs, config: SegObjectiveConfig):
  """(total loss, metrics) for student params {name: nnx.State}; teachers from state."""
  branches = state.branches
  teacher = {k: teacher_params(b.opt_state) for k, b in branches.items()}
  g2 = graphdefs["2d"]
  s2 = _flat(_forward2d(g2, params["2d"], branches["2d"].rest, batch["image_strong"]))
  t2 = jax.lax.stop_gradient(
      _flat(_forward2d(g2, teacher["2d"], branches["2d"].rest, batch["image_weak"])))
  loss2, diag2 = student_teacher_loss(s2, t2, _flat(batch["labels"]), tau=config.tau)
  metrics = {"st_2d": loss2, "ce_2d": diag2["ce"], "kl_2d": diag2["kl"], "w_t_2d": diag2["w_t"]}
  total = loss2
  if "3d" in branches:
    g3, rest3 = graphdefs["3d"], branches["3d"].rest
    valid = batch["points_valid"]
    s3 = _forward3d(g3, params["3d"], rest3, batch, batch["points_strong"])
    t3 = jax.lax.stop_gradient(_forward3d(g3, teacher["3d"], rest3, batch, batch["points_weak"]))
    loss3, diag3 = student_teacher_loss(s3, t3, batch["points_label"], tau=config.tau,
                                        valid=valid)
    cmc2, cmc3, c2 = cross_modal_terms(s2, t2, s3, t3, batch, config)
    lam = config.cmc_lambda(state.step)
    total = total + loss3 + lam * (cmc2 + cmc3)
    metrics.update({"st_3d": loss3, "ce_3d": diag3["ce"], "kl_3d": diag3["kl"],
                    "w_t_3d": diag3["w_t"], "cmc_2d": cmc2, "cmc_3d": cmc3, "lambda": lam,
                    "agree_2d3d": c2["agreement"], "links": c2["num_valid"]})
  return total, metrics


@functools.partial(jax.jit, static_argnames=("graphdefs", "txs", "config", "mesh"),
                   donate_argnums=(0,))
def seg_train_step(state: SegState, batch, *, graphdefs, txs, config: SegObjectiveConfig,
                   mesh=None):
  """One step of every branch (each with its own optimiser). graphdefs and txs: tuples of
  (name, value) pairs (hashable). Returns the new state and scalar metrics, with "loss",
  "grad_norm_<branch>" and "grads_finite" for the engine's finiteness check."""
  graphdefs, txs = dict(graphdefs), dict(txs)
  params = {k: b.params for k, b in state.branches.items()}
  grad_fn = jax.value_and_grad(seg_losses, has_aux=True)
  (loss, metrics), grads = grad_fn(params, state, batch, graphdefs=graphdefs, config=config)
  if mesh is not None:  # reduce-scattered to the parameters' layout, not all-reduced
    grads = constrain_state(grads, mesh)
  branches = {}
  for name, branch in state.branches.items():
    updates, opt_state = txs[name].update(grads[name], branch.opt_state, branch.params)
    branches[name] = Branch(optax.apply_updates(branch.params, updates), branch.rest, opt_state)
    metrics[f"grad_norm_{name}"] = optax.tree.norm(grads[name])
  # From the norms, not a reduction per leaf: any NaN or inf makes a norm non-finite, and per-leaf
  # flags are hundreds of extra kernels to compile (see jaxrecon.optim.ema).
  norms = jnp.stack([metrics[f"grad_norm_{name}"] for name in branches])
  metrics.update(loss=loss, grads_finite=jnp.all(jnp.isfinite(norms)))
  new_state = SegState(state.step + 1, branches)
  if mesh is not None:
    new_state = constrain_state(new_state, mesh)
  return new_state, metrics


@functools.partial(jax.jit, static_argnames=("graphdef",))
def predict_2d(params, rest, images, *, graphdef):
  """2D logits (b, h, w, k) of a SegFormer given by (graphdef, params, rest)."""
  return _forward2d(graphdef, params, rest, images)
