"""Recomputation (rematerialisation) of one NNX sub-module in the backward pass.

    y = remat_call(lambda block, x: block(x), block, x)   # == block(x); keeps only x for backward

The module is split into its graph and state and the pure function of the state runs under
jax.checkpoint. Unlike `nnx.remat`, nothing is written back into the module afterwards, which
matters when the module was merged from parameters inside another transformation (the mean
teacher's forward inside the student's `jax.grad`): there `nnx.remat` fails with "Cannot mutate
Param from a different trace level". Only for modules whose call does not mutate their state
(no batch statistics, no RNG streams), which holds for every block in jaxrecon.models.
"""
from __future__ import annotations

import jax
from flax import nnx


def remat_call(fn, module: nnx.Module, *args):
  """fn(module, *args), recomputed in the backward pass instead of storing its intermediates.
  args: arrays (or pytrees of arrays); close over static values in `fn`."""
  graphdef, state = nnx.split(module)

  def pure(state, *args):
    return fn(nnx.merge(graphdef, state), *args)

  return jax.checkpoint(pure)(state, *args)
