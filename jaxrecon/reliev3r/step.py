"""Reliev3R train state and the module-level, jit-compiled train step.

    graphdef, state = create_state(model, tx)
    state = place_state(state, mesh)                     # jaxrecon.train.sharding
    state, metrics = train_step(state, shard_batch(batch, mesh), graphdef=graphdef, tx=tx,
                                config=objective_config, mesh=mesh)

The step is pure: (state, batch) -> (state, metrics). The state's buffers are donated: the old
state is invalid after a step. With `mesh`, the gradients and the new state are pinned to the
layout `place_state` gives (fsdp-sharded parameters stay sharded, donation reuses the buffers);
without it, XLA picks the output layout. Batch layout: `jaxrecon.reliev3r.pipeline`.
"""
from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxrecon.reliev3r.objective import ObjectiveConfig, objective
from jaxrecon.train.sharding import constrain_state


class TrainState(NamedTuple):
  """step: int32 scalar, updates applied so far. params: nnx.State of the model's nnx.Param.
  rest: the model's other variables (empty for Reliev3R). opt_state: the optimiser's state."""
  step: jax.Array
  params: Any
  rest: Any
  opt_state: Any


def create_state(model: nnx.Module, tx: optax.GradientTransformation):
  """(graphdef, TrainState at step 0) of a freshly built model."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  return graphdef, TrainState(jnp.zeros((), jnp.int32), params, rest, tx.init(params))


def loss_and_metrics(params, rest, graphdef, batch, config: ObjectiveConfig):
  """Objective of the model given by (graphdef, params, rest) on a batch: (loss, metrics)."""
  model = nnx.merge(graphdef, params, rest)
  outputs = model(batch["images"])
  return objective(outputs, batch, config)


@functools.partial(jax.jit, static_argnames=("graphdef", "tx", "config", "mesh"),
                   donate_argnums=(0,))
def train_step(state: TrainState, batch, *, graphdef, tx, config: ObjectiveConfig, mesh=None):
  """One optimiser step. Returns the new state and scalar metrics (every loss term, "loss",
  "grad_norm" and "grads_finite", which the engine checks to name a non-finite term)."""
  grad_fn = jax.value_and_grad(loss_and_metrics, has_aux=True)
  (loss, metrics), grads = grad_fn(state.params, state.rest, graphdef, batch, config)
  if mesh is not None:  # reduce-scattered to the parameters' layout, not all-reduced
    grads = constrain_state(grads, mesh)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  grad_norm = optax.tree.norm(grads)
  # From the norm, not a reduction per leaf: any NaN or inf makes it non-finite, and per-leaf
  # flags are hundreds of extra kernels to compile (see jaxrecon.optim.ema).
  metrics = dict(metrics, loss=loss, grad_norm=grad_norm, grads_finite=jnp.isfinite(grad_norm))
  new_state = TrainState(state.step + 1, params, state.rest, opt_state)
  if mesh is not None:
    new_state = constrain_state(new_state, mesh)
  return new_state, metrics
