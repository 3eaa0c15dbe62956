"""EMA ("mean") teacher as an optax transformation, so the teacher lives in the optimiser state.

Chain it after the optimiser:

    tx = optax.chain(optax.adamw(1e-3), ema_teacher(rewis3d_decay(0.99)))
    opt_state = tx.init(params)
    updates, opt_state = tx.update(grads, opt_state, params)   # params are required
    params = optax.apply_updates(params, updates)
    teacher = teacher_params(opt_state)

Being part of the optimiser state, the teacher is checkpointed, sharded and donated with it, and
follows the parameters' sharding (it is built from them by elementwise ops).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Union

import jax
import jax.numpy as jnp
import optax

Decay = Union[float, jax.Array, Callable[[jax.Array], jax.Array]]


class EmaTeacherState(NamedTuple):
  """State of `ema_teacher`.

  count: int32 scalar, number of EMA steps taken (non-finite steps are not counted).
  teacher: pytree like the parameters, the EMA of the parameters after each update.
  """
  count: jax.Array
  teacher: Any


def _all_finite(tree) -> jax.Array:
  """One boolean scalar: every inexact leaf is finite. A device-side reduction, no host sync."""
  leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
  if not leaves:
    return jnp.array(True)
  return jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]).all()


def ema_teacher(decay: Decay, *, dtype=None) -> optax.GradientTransformation:
  """Keeps teacher <- d * teacher + (1 - d) * new_params in the state; passes updates through.

  new_params = optax.apply_updates(params, updates), i.e. the parameters that the step produces, so
  chain this transformation LAST (after the optimiser and any scaling). The teacher starts as a
  copy of the initial parameters.

  Non-finite steps: if any leaf of new_params is NaN or inf, the teacher is kept unchanged and
  `count` does not advance, so a decay schedule resumes where it stopped on the next finite step.
  The updates themselves are still passed through unchanged: detecting and reporting a NaN step is
  the trainer's job; this only keeps the teacher from being poisoned by it.

  Args:
    decay: d in [0, 1], a float (or array, e.g. injected by `optax.inject_hyperparams`), or a
      schedule: callable of the step count (int32 scalar, 0 at the first update) returning d.
    dtype: optional dtype of the teacher's floating leaves (e.g. jnp.float32 to average bfloat16
      parameters without the (1 - d) increments rounding away); default: the parameters' dtype.
      Non-floating leaves are copied from the new parameters, not averaged.

  Returns:
    An optax.GradientTransformation with state `EmaTeacherState`.
  """
  if not callable(decay) and isinstance(decay, (int, float)) and not 0.0 <= decay <= 1.0:
    raise ValueError(f"decay: expected a value in [0, 1] or a schedule, got {decay}")

  def _cast(x):
    x = jnp.asarray(x)
    if dtype is not None and jnp.issubdtype(x.dtype, jnp.floating):
      return x.astype(dtype)
    return x

  def init_fn(params):
    # A real copy: the teacher must not alias the parameters' buffers, or donating both would fail.
    return EmaTeacherState(count=jnp.zeros([], jnp.int32),
                           teacher=jax.tree.map(lambda p: jnp.array(_cast(p), copy=True), params))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("params: ema_teacher needs the current parameters; call "
                       "tx.update(updates, state, params) with params")
    new_params = optax.apply_updates(params, updates)
    d = decay(state.count) if callable(decay) else decay
    ok = _all_finite(new_params)

    def mix(t, p):
      if not jnp.issubdtype(t.dtype, jnp.inexact):
        return jnp.asarray(p).astype(t.dtype)
      # Mix in at least float32 so a bfloat16 teacher does not also get a rounded decay.
      ct = jnp.promote_types(t.dtype, jnp.float32)
      d_t = jnp.asarray(d, ct)
      return (d_t * t.astype(ct) + (1 - d_t) * jnp.asarray(p).astype(ct)).astype(t.dtype)

    mixed = jax.tree.map(mix, state.teacher, new_params)
    # A scalar predicate selects whole leaves, so a NaN in `mixed` never reaches the kept teacher.
    teacher = jax.tree.map(lambda m, t: jnp.where(ok, m, t), mixed, state.teacher)
    count = state.count + ok.astype(jnp.int32)
    return updates, EmaTeacherState(count=count, teacher=teacher)

  return optax.GradientTransformation(init_fn, update_fn)


def teacher_params(opt_state):
  """The teacher pytree of the one `ema_teacher` inside an optax state (chain, inject_hyperparams,
  multi_transform, masked, ... at any depth).

  Raises:
    ValueError if the state holds no `EmaTeacherState`, or more than one (then pick by hand).
  """
  found = [x for x in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, EmaTeacherState))
           if isinstance(x, EmaTeacherState)]
  if not found:
    raise ValueError("opt_state: no EmaTeacherState found; chain ema_teacher(...) into the "
                     "optimiser")
  if len(found) > 1:
    raise ValueError(f"opt_state: {len(found)} EmaTeacherState found, expected exactly one")
  return found[0].teacher


def rewis3d_decay(alpha_max: float) -> Callable[[jax.Array], jax.Array]:
  """Mean-teacher warm-up schedule: step -> min(1 - 1 / (step + 1), alpha_max).

  d = 0 at step 0 (the teacher takes the first new parameters), then the teacher averages all
  steps so far uniformly until 1 - 1 / (step + 1) reaches alpha_max (0.99 to 0.999 in Rewis3d).
  """
  if not 0.0 <= alpha_max <= 1.0:
    raise ValueError(f"alpha_max: expected a value in [0, 1], got {alpha_max}")

  def schedule(step):
    step = jnp.asarray(step, jnp.result_type(float))
    return jnp.minimum(1.0 - 1.0 / (step + 1.0), alpha_max)

  return schedule
