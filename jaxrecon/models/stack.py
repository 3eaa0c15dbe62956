"""Repeated layers with stacked parameters, applied by jax.lax.scan.

    layers = stacked(lambda rngs: Block(..., rngs=rngs), depth, rngs.params())
    x = scan_layers(layers, x, lambda layer, x, extra: layer(x, extra), xs=extras, remat=True)

`depth` layers of one architecture become ONE module whose parameters carry a leading (depth,)
axis; the scan traces and compiles the layer once, so a model's compile time does not grow with its
depth (SegFormer-B4's third stage has 27 blocks). Used by the Reliev3R backbone, SegFormer's stages
and the point transformer's levels.
"""
from __future__ import annotations

from typing import Callable

import jax
from flax import nnx


def stacked(make: Callable[[nnx.Rngs], nnx.Module], depth: int, key) -> nnx.Module:
  """`depth` independently initialised `make(rngs)` modules as one module whose parameters have a
  leading (depth,) axis: each is built from its own split of `key` (under jax.vmap).

  `make` must build the same architecture every time and draw only from the rngs' "params" stream.
  """
  graphdef = nnx.graphdef(nnx.eval_shape(lambda: make(nnx.Rngs(0))))
  init = lambda k: nnx.state(make(nnx.Rngs(params=k)))
  return nnx.merge(graphdef, jax.vmap(init)(jax.random.split(key, depth)))


def layer_at(layers: nnx.Module, i: int) -> nnx.Module:
  """Layer i of `stacked` layers, as a plain module (for inspection and tests)."""
  graphdef, state = nnx.split(layers)
  return nnx.merge(graphdef, jax.tree.map(lambda a: a[i], state))


def scan_layers(layers: nnx.Module, carry, apply, xs=None, *, remat: bool):
  """Applies `stacked` layers in order: carry = apply(layer_i, carry, xs_i) for i = 0..depth-1.

  Args:
    layers: from `stacked` (parameters with a leading (depth,) axis).
    carry: the running value (a pytree of arrays; its shapes and dtypes must not change).
    apply: (layer, carry, x_i) -> carry, pure (it must not mutate the layer).
    xs: None, or a pytree of arrays with a leading (depth,) axis: layer i's own inputs.
    remat: checkpoint each layer: the backward pass keeps only each layer's input carry and
      recomputes the layer's activations.
  Returns:
    The carry after the last layer.
  """
  # The layers' state goes in as a plain pytree and nothing is written back into the module
  # afterwards, unlike nnx.scan / nnx.remat: a module merged from parameters inside another
  # transformation (a mean teacher's forward inside the student's jax.grad) makes those fail with
  # "Cannot mutate Param from a different trace level". The layers must not mutate their state
  # (no batch statistics, no RNG streams), which holds for every layer in jaxrecon.models.
  graphdef, state = nnx.split(layers)

  def body(carry, inputs):
    layer_state, x_i = inputs
    return apply(nnx.merge(graphdef, layer_state), carry, x_i), None

  if remat:
    # prevent_cse=False: the scan already keeps XLA from merging the recomputation with the
    # forward pass (the reason for the default True, which would cost speed here).
    body = jax.checkpoint(body, prevent_cse=False)
  carry, _ = jax.lax.scan(body, carry, (state, xs))
  return carry
