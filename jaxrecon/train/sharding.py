"""Data-parallel placement on a device mesh: replicated train state, batch split over "data".

    mesh = make_mesh()
    state = replicate(state, mesh)
    state, metrics = step(state, shard_batch(batch, mesh))

Parameters are replicated and the batch is split along its first axis over the mesh's "data"
axis; jit partitions the step (a loss that is a global mean has the all-reduced gradient, so
every device applies the same update). More mesh axes can come later.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh over `devices` (default: all) with the batch axis "data"."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicate(tree, mesh: Mesh):
  """Places every array of `tree` on all devices of the mesh (parameters, optimiser state)."""
  return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def shard_batch(batch, mesh: Mesh):
  """Splits every array of a batch along its first axis over the mesh's "data" axis.

  With several processes, each passes the rows of its own devices (its shard of the pipeline).
  """
  sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)
