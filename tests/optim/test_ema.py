"""Tests of jaxrecon.optim.ema: the EMA teacher against a numpy EMA of a real optimiser's path."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxrecon.optim.ema import ema_teacher, rewis3d_decay, teacher_params

pytestmark = pytest.mark.x64  # float64 numpy references at 1e-12

_A = {"w": np.array([1.0, 3.0, 0.5]), "b": np.array([[2.0, 1.0], [0.2, 4.0]])}
_C = {"w": np.array([1.0, -2.0, 0.3]), "b": np.array([[0.5, 0.0], [-1.0, 2.0]])}


def _init_params():
  return {"w": jnp.zeros(3), "b": jnp.ones((2, 2))}


def _loss(params):
  # A small anisotropic quadratic, so adam takes a non-trivial path to the minimum _C.
  return sum(0.5 * jnp.sum(_A[k] * (params[k] - _C[k]) ** 2) for k in params)


def _np_decay(decay, step):
  return decay if isinstance(decay, float) else min(1.0 - 1.0 / (step + 1.0), decay[1])


def _make_step(tx):
  @jax.jit
  def step(params, opt_state, grad_scale=1.0):
    grads = jax.tree.map(lambda g: g * grad_scale, jax.grad(_loss)(params))
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, updates
  return step


@pytest.mark.parametrize("decay", [0.9, ("rewis3d", 0.97)], ids=["float", "rewis3d"])
def test_matches_numpy_ema_over_100_adam_steps(decay):
  ema = ema_teacher(decay) if isinstance(decay, float) else ema_teacher(rewis3d_decay(decay[1]))
  tx = optax.chain(optax.adam(0.05), ema)
  params = _init_params()
  opt_state = tx.init(params)
  step = _make_step(tx)
  ref = {k: np.array(v) for k, v in params.items()}
  for i in range(100):
    params, opt_state, _ = step(params, opt_state)
    d = _np_decay(decay, i)
    ref = {k: d * ref[k] + (1.0 - d) * np.asarray(params[k]) for k in ref}
    if i in (0, 9, 99):
      for k in ref:
        np.testing.assert_allclose(teacher_params(opt_state)[k], ref[k], rtol=1e-12, atol=1e-14)
  assert opt_state[1].count == 100
  # The teacher lags the student: still different after 100 steps.
  assert not np.allclose(teacher_params(opt_state)["w"], params["w"])


def test_updates_pass_through_unchanged():
  params = _init_params()
  grads = jax.grad(_loss)(params)
  plain, with_ema = optax.adam(0.05), optax.chain(optax.adam(0.05), ema_teacher(0.9))
  u_plain, _ = plain.update(grads, plain.init(params), params)
  u_ema, _ = with_ema.update(grads, with_ema.init(params), params)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), u_plain, u_ema)


def test_teacher_starts_as_a_copy_of_params():
  params = _init_params()
  state = ema_teacher(0.9).init(params)
  assert state.count == 0
  for k in params:
    np.testing.assert_array_equal(state.teacher[k], params[k])
    # A distinct buffer, so params and optimiser state can both be donated.
    assert state.teacher[k].unsafe_buffer_pointer() != params[k].unsafe_buffer_pointer()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_step_keeps_the_teacher_then_resumes(bad):
  # Stateless sgd, so the bad step leaves no trace in the optimiser's own state.
  tx = optax.chain(optax.sgd(0.1), ema_teacher(rewis3d_decay(0.9)))
  step = _make_step(tx)
  params = _init_params()
  opt_state = tx.init(params)
  ref = {k: np.array(v) for k, v in params.items()}
  for i in range(8):
    if i in (3, 4):
      new_params, new_state, _ = step(params, opt_state, bad)
      assert not np.any(np.isfinite(new_params["w"]))
      assert new_state[1].count == opt_state[1].count + 1   # every update is counted
      jax.tree.map(np.testing.assert_array_equal, teacher_params(new_state),
                   teacher_params(opt_state))
      opt_state = new_state  # the trainer drops the NaN parameters, keeps the optimiser state
      continue
    params, opt_state, _ = step(params, opt_state)
    d = _np_decay((0, 0.9), i)  # the schedule's step counts the skipped updates too
    ref = {k: d * ref[k] + (1.0 - d) * np.asarray(params[k]) for k in ref}
  assert opt_state[1].count == 8
  for k in ref:
    np.testing.assert_allclose(teacher_params(opt_state)[k], ref[k], rtol=1e-12)


def test_only_the_nonfinite_elements_keep_their_teacher_value():
  tx = ema_teacher(0.25)
  params = {"w": jnp.array([1.0, 2.0, 3.0, 4.0]), "n": jnp.array([1, 2], jnp.int32)}
  state = tx.init(params)
  updates = {"w": jnp.array([np.nan, 1.0, np.inf, -np.inf]), "n": jnp.array([5, 5], jnp.int32)}
  _, state = jax.jit(tx.update)(updates, state, params)
  # Element 1 mixes: 0.25 * 2 + 0.75 * 3; the NaN / inf elements keep the old teacher value.
  np.testing.assert_array_equal(state.teacher["w"], [1.0, 2.75, 3.0, 4.0])
  np.testing.assert_array_equal(state.teacher["n"], [6, 7])  # integers are copied, not averaged
  assert state.count == 1


def test_params_required():
  tx = ema_teacher(0.9)
  params = _init_params()
  with pytest.raises(ValueError, match="params"):
    tx.update(params, tx.init(params))


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_bad_decay_rejected(bad):
  with pytest.raises(ValueError, match="decay"):
    ema_teacher(bad)
  with pytest.raises(ValueError, match="alpha_max"):
    rewis3d_decay(bad)


def test_rewis3d_decay_values():
  sched = rewis3d_decay(0.99)
  np.testing.assert_allclose([sched(s) for s in (0, 1, 3, 49, 99, 1000)],
                             [0.0, 0.5, 0.75, 0.98, 0.99, 0.99], rtol=1e-12)
  assert jax.jit(sched)(jnp.int32(1)) == 0.5


def test_jit_with_donated_state():
  tx = optax.chain(optax.adam(0.05), ema_teacher(0.9))
  params = _init_params()
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state):
    updates, opt_state = tx.update(jax.grad(_loss)(params), opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  step_donating = jax.jit(step, donate_argnums=(0, 1))
  p_ref, s_ref = step(params, opt_state)
  p_don, s_don = step_donating(params, opt_state)
  jax.tree.map(np.testing.assert_array_equal, teacher_params(s_don), teacher_params(s_ref))
  jax.tree.map(np.testing.assert_array_equal, p_don, p_ref)
  assert params["w"].is_deleted() and opt_state[1].teacher["w"].is_deleted()


def test_teacher_params_finds_nested_teacher():
  params = _init_params()
  ema = ema_teacher(0.5)
  txs = {
      "chain": optax.chain(optax.clip_by_global_norm(1.0), optax.adam(0.1), ema),
      "inject_inner": optax.chain(optax.adam(0.1),
                                  optax.inject_hyperparams(ema_teacher)(decay=0.5)),
      "inject_outer": optax.inject_hyperparams(
          lambda learning_rate, decay: optax.chain(optax.adam(learning_rate), ema_teacher(decay)))(
              learning_rate=0.1, decay=0.5),
      "multi_transform": optax.chain(
          optax.multi_transform({"a": optax.adam(0.1), "s": optax.sgd(0.1)},
                                {"w": "a", "b": "s"}), ema),
  }
  grads = jax.grad(_loss)(params)
  for name, tx in txs.items():
    state = tx.init(params)
    updates, state = tx.update(grads, state, params)
    expected = jax.tree.map(lambda p, u: 0.5 * p + 0.5 * (p + u), params, updates)
    got = teacher_params(state)
    for k in params:
      np.testing.assert_allclose(got[k], expected[k], rtol=1e-12, err_msg=name)


def test_teacher_params_errors():
  params = _init_params()
  with pytest.raises(ValueError, match="no EmaTeacherState"):
    teacher_params(optax.adam(0.1).init(params))
  two = optax.chain(ema_teacher(0.9), ema_teacher(0.99))
  with pytest.raises(ValueError, match="2 EmaTeacherState"):
    teacher_params(two.init(params))


def test_teacher_dtype_option_averages_bfloat16_params_in_float32():
  params = {"w": jnp.ones(4, jnp.bfloat16)}
  tx = ema_teacher(0.999, dtype=jnp.float32)
  state = tx.init(params)
  assert state.teacher["w"].dtype == jnp.float32
  updates = {"w": jnp.full(4, 1.0, jnp.bfloat16)}  # params -> 2
  _, state = tx.update(updates, state, params)
  # 0.999 * 1 + 0.001 * 2: the increment would round away in bfloat16 (spacing 2**-7 at 1).
  np.testing.assert_allclose(state.teacher["w"], 1.001, rtol=1e-6)
  plain = ema_teacher(0.999)
  _, s_bf = plain.update(updates, plain.init(params), params)
  assert s_bf.teacher["w"].dtype == jnp.bfloat16


def test_sharded_params_keep_sharding():
  mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
  sharding = NamedSharding(mesh, P("data"))
  params = {"w": jax.device_put(jnp.arange(16.0), sharding)}
  tx = optax.chain(optax.sgd(0.1), ema_teacher(0.9))
  state = jax.jit(tx.init)(params)

  @jax.jit
  def step(params, state):
    updates, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
    return optax.apply_updates(params, updates), state

  params, state = step(params, state)
  teacher = teacher_params(state)["w"]
  assert teacher.sharding.is_equivalent_to(sharding, 1)
  np.testing.assert_allclose(teacher, np.arange(16.0) - 0.1 * 0.1, rtol=1e-12)


def test_flax_nnx_optimizer():
  # nnx.Optimizer passes the parameters to tx.update, so the teacher can ride in it directly.
  model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, optax.chain(optax.adam(0.05), ema_teacher(0.8)), wrt=nnx.Param)
  x, y = jnp.ones((4, 3)), jnp.zeros((4, 2))
  loss = lambda m: jnp.mean((m(x) - y) ** 2)
  flat = lambda tree: np.concatenate([np.ravel(a) for a in jax.tree.leaves(tree)])
  ref = flat(nnx.as_pure(nnx.state(model, nnx.Param)))
  for _ in range(5):
    optimizer.update(model, nnx.grad(loss)(model))
    ref = 0.8 * ref + 0.2 * flat(nnx.as_pure(nnx.state(model, nnx.Param)))
  teacher = nnx.as_pure(teacher_params(optimizer.opt_state))
  np.testing.assert_allclose(flat(teacher), ref, rtol=1e-6)
  # The teacher state loads into a second model of the same structure.
  teacher_model = nnx.Linear(3, 2, rngs=nnx.Rngs(1))
  nnx.update(teacher_model, teacher)
  np.testing.assert_allclose(flat(nnx.as_pure(nnx.state(teacher_model, nnx.Param))), ref,
                             rtol=1e-6)
