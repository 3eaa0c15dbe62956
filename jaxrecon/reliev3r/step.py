"""Train state and the module-level, jit-compiled train step, batch-sharded over a device mesh.

    graphdef, state = create_state(model, tx)
    mesh = make_mesh()
    state = replicate(state, mesh)
    state, metrics = train_step(state, shard_batch(batch, mesh), graphdef=graphdef, tx=tx,
                                config=objective_config)

The step is pure: (state, batch) -> (state, metrics). Parameters are replicated and the batch is
split along its first axis over the mesh's "data" axis; jit partitions the computation (the loss
is a global mean, so its gradient is the all-reduced gradient and every device applies the same
update). The state's buffers are donated: the old state is invalid after a step.
"""
from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxrecon.train.objective import ObjectiveConfig, objective

DATA_AXIS = "data"


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


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh over `devices` (default: all) with the batch axis "data"."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicate(tree, mesh: Mesh):
  """Places every array of `tree` on all devices of the mesh (parameters, optimiser state)."""
  return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def shard_batch(batch, mesh: Mesh):
  """Splits every array of a batch along its first axis over the mesh's "data" axis.

  With several processes, each holds the rows of its own devices (`process_batch`).
  """
  sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)


def loss_and_outputs(params, rest, graphdef, batch, config: ObjectiveConfig):
  """Objective of the model given by (graphdef, params, rest) on a batch: (loss, metrics)."""
  model = nnx.merge(graphdef, params, rest)
  outputs = model(batch["images"])
  return objective(outputs, batch, config)


@functools.partial(jax.jit, static_argnames=("graphdef", "tx", "config"), donate_argnums=(0,))
def train_step(state: TrainState, batch, *, graphdef, tx, config: ObjectiveConfig):
  """One optimiser step. Returns the new state and scalar metrics (every loss term, "loss",
  "grad_norm" and "grads_finite", which the loop checks to name a non-finite term)."""
  grad_fn = jax.value_and_grad(loss_and_outputs, has_aux=True)
  (loss, metrics), grads = grad_fn(state.params, state.rest, graphdef, batch, config)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads),
                 grads_finite=jnp.all(jnp.asarray(
                     [jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)])))
  return TrainState(state.step + 1, params, state.rest, opt_state), metrics


def check_finite(step: int, metrics) -> None:
  """Raises FloatingPointError naming the step and every non-finite term (host-side check)."""
  bad = [name for name, value in metrics.items()
         if name != "grads_finite" and not np.all(np.isfinite(np.asarray(value)))]
  if not bool(np.asarray(metrics.get("grads_finite", True))):
    bad.append("gradients")
  if bad:
    raise FloatingPointError(f"step {step}: non-finite {', '.join(bad)}")
