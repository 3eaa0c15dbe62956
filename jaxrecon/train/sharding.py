"""Placement on a 2-D ("data", "fsdp") device mesh: a train state sharded over "fsdp", the batch
split over every device.

    mesh = make_mesh(fsdp=config.mesh.fsdp)          # data = device count / fsdp
    state = place_state(state, mesh)
    state, metrics = step(state, shard_batch(batch, mesh))

fsdp = 1 is pure data parallelism (every array replicated, as `replicate` places it). With
fsdp > 1 each device holds 1 / fsdp of every large parameter, of its optimiser moments and of its
EMA teacher; jit inserts the all-gathers before use and the reduce-scatters of the gradients, so
the step computes the same numbers as data parallelism (up to the reduction order of the float32
sums). The batch's first axis is split over both mesh axes: every device gets its own rows.

The placement rule (`param_spec`) looks at an array's shape only, so it applies to a whole train
state and gives a parameter, its Adam moments and its EMA teacher the same layout (the optimiser's
elementwise update needs no communication): a floating array of at least `min_size` elements has
its largest dimension divisible by fsdp split over "fsdp" (the first such one on ties); scalars,
integer / key arrays, small arrays and arrays with no divisible dimension are replicated.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"
FSDP_AXIS = "fsdp"
BATCH_AXES = (DATA_AXIS, FSDP_AXIS)
# Below 4096 elements (16 KiB in float32: biases, norm scales) an array is replicated: its all-gather
# would cost a collective's latency to save less memory than one activation row.
MIN_SHARD_SIZE = 4096


def make_mesh(devices=None, *, fsdp: int = 1) -> Mesh:
  """A (len(devices) / fsdp, fsdp) mesh with axes ("data", "fsdp") over `devices` (default: all).

  Devices are laid out in their given order, "fsdp" fastest: with jax.devices() (ordered by
  process) an fsdp group stays within one process when fsdp divides the local device count, and
  the flattened (data, fsdp) order is the device order, so each process's batch rows are
  contiguous (what `shard_batch` needs with several processes).
  """
  devices = np.asarray(jax.devices() if devices is None else devices)
  if fsdp < 1 or devices.size % fsdp:
    raise ValueError(f"fsdp={fsdp}: must be >= 1 and divide the {devices.size} devices")
  return Mesh(devices.reshape(devices.size // fsdp, fsdp), BATCH_AXES)


def param_spec(shape, dtype, fsdp: int, min_size: int = MIN_SHARD_SIZE) -> PartitionSpec:
  """The PartitionSpec of one state array (module docstring: the rule). fsdp: size of the mesh's
  "fsdp" axis."""
  shape = tuple(shape)
  if (fsdp == 1 or not jnp.issubdtype(dtype, jnp.floating) or not shape
      or int(np.prod(shape)) < min_size):
    return PartitionSpec()
  divisible = [i for i, n in enumerate(shape) if n % fsdp == 0]
  if not divisible:
    return PartitionSpec()
  axis = max(divisible, key=lambda i: (shape[i], -i))
  return PartitionSpec(*([None] * axis), FSDP_AXIS)


def state_shardings(state, mesh: Mesh, min_size: int = MIN_SHARD_SIZE):
  """A pytree like `state` of NamedShardings by `param_spec`. `state` may hold arrays, tracers or
  jax.ShapeDtypeStruct (ahead-of-time lowering, restore targets)."""
  fsdp = mesh.shape[FSDP_AXIS]
  return jax.tree.map(
      lambda x: NamedSharding(mesh, param_spec(x.shape, x.dtype, fsdp, min_size)), state)


def place_state(state, mesh: Mesh, min_size: int = MIN_SHARD_SIZE):
  """`state` (a train state: step, params, optimiser state with any EMA teacher) on the mesh,
  sharded by `state_shardings`."""
  return jax.device_put(state, state_shardings(state, mesh, min_size))


def constrain_state(tree, mesh: Mesh, min_size: int = MIN_SHARD_SIZE):
  """Inside jit: pins `tree` (a new train state, or gradients shaped like the parameters) to the
  layout `place_state` gives, so that a step returns its state as it was placed. Without it XLA's
  sharding propagation may pick another layout for some outputs (measured: small biases it
  shards), which then cannot reuse the donated input buffers and recompiles the next step."""
  return jax.lax.with_sharding_constraint(tree, state_shardings(tree, mesh, min_size))


def replicate(tree, mesh: Mesh):
  """Places every array of `tree` on all devices of the mesh (the fsdp = 1 layout)."""
  return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """First axis split over ("data", "fsdp"), i.e. over every device of the mesh."""
  return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def shard_batch(batch, mesh: Mesh):
  """Splits every array of a batch along its first axis over all devices of the mesh (its size
  must be divisible by the device count; `config_check.check_mesh` says so up front).

  With several processes, each passes the rows of its own devices (its shard of the pipeline).
  """
  sharding = batch_sharding(mesh)
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)
