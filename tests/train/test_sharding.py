"""FSDP placement on a ("data", "fsdp") mesh of 8 CPU devices: the rule, the batch split, and both
trainers' steps computing the same losses and parameter updates as pure data parallelism, with
the state still sharded (and donated) after the steps."""
import pathlib
import sys

import jax
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from jaxrecon.models.point_transformer import PointTransformer, PointTransformerConfig
from jaxrecon.models.reliev3r import Reliev3R
from jaxrecon.models.segformer import SegFormer, SegFormerConfig
from jaxrecon.optim.ema import ema_teacher, rewis3d_decay, teacher_params
from jaxrecon.reliev3r.objective import ObjectiveConfig
from jaxrecon.reliev3r.step import create_state, train_step
from jaxrecon.rewis3d.step import SegObjectiveConfig, create_seg_state, seg_train_step
from jaxrecon.errors import UserError
from jaxrecon.train.config_check import check_loop, check_mesh, mesh_fsdp
from jaxrecon.train.engine import make_optimizer
from jaxrecon.train.sharding import (FSDP_AXIS, make_mesh, param_spec, place_state, shard_batch,
                                     state_shardings)

TESTS = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(TESTS.parent), str(TESTS), str(TESTS / "reliev3r")]
from configs import rewis3d as rewis3d_config  # noqa: E402
from configs import reliev3r as reliev3r_config  # noqa: E402
from test_reliev3r_step import MODEL as RELIEV3R_MODEL, batch, shipped_optimizer  # noqa: E402,F401

STEPS = 3
# Losses: the forward pass sees the same rows and (all-gathered, bit-identical) weights; only the
# order of the cross-device float32 sums (loss mean, gradient reduce-scatter vs all-reduce)
# differs, ~1e-7 relative per step, and after 3 updates the losses still agree to ~1e-6.
LOSS_RTOL = 1e-5
# Updates theta_3 - theta_0 per leaf, relative in norm: conftest's 1-vs-8-device tolerance (an
# entry whose gradient is near Adam's eps turns summation-order noise into up to ~lr / 4 of its
# update; whole leaves agree to ~1e-5). A wrong reduction (a gradient summed over the fsdp
# shards twice, or not at all) is off by a factor of ~2 or more.
UPDATE_RTOL = 1e-3


def test_param_spec_rule():
  f32, i32 = np.float32, np.int32
  assert param_spec((128, 32), f32, 2) == P(FSDP_AXIS)                # the largest dimension
  assert param_spec((32, 128), f32, 2) == P(None, FSDP_AXIS)
  assert param_spec((64, 64, 2), f32, 8) == P(FSDP_AXIS)              # ties: the first
  assert param_spec((100, 96), f32, 8) == P(None, FSDP_AXIS)          # the largest DIVISIBLE one
  assert param_spec((4099, 3), f32, 2) == P()                         # none divisible
  assert param_spec((32, 100), f32, 2) == P()                         # small (< 4096 elements)
  assert param_spec((32, 100), f32, 2, min_size=1) == P(None, FSDP_AXIS)
  assert param_spec((), f32, 2) == P()                                # scalars (step, counts)
  assert param_spec((128, 64), i32, 2) == P()                         # integer arrays
  assert param_spec((128, 32), f32, 1) == P()                         # fsdp 1: data parallel


def test_mesh_and_batch_split_over_every_device():
  mesh = make_mesh(fsdp=2)
  assert dict(mesh.shape) == {"data": 4, "fsdp": 2}
  assert list(mesh.devices.flat) == jax.devices()                     # fsdp fastest
  with pytest.raises(ValueError, match="fsdp=3"):
    make_mesh(fsdp=3)
  rows = np.arange(16 * 3, dtype=np.float32).reshape(16, 3)
  split = shard_batch({"x": rows}, mesh)["x"]
  shards = sorted(split.addressable_shards, key=lambda s: s.index[0].start)
  assert len(shards) == 8 and len({s.device for s in shards}) == 8
  for i, shard in enumerate(shards):                                   # 2 own rows per device
    np.testing.assert_array_equal(np.asarray(shard.data), rows[2 * i:2 * i + 2])


def _with(config, **sections):
  with config.unlocked():
    for name, values in sections.items():
      config[name].update(values)
  return config


def test_mesh_config_errors_are_one_line():
  config = reliev3r_config.get_config("demo")                  # batch 4 per process, fsdp 1
  check_mesh(config, device_count=4, local_device_count=4)
  check_mesh(_with(config, mesh=dict(fsdp=2)), device_count=8, local_device_count=4)
  with pytest.raises(UserError, match=r"^config.mesh.fsdp=3 does not divide the 8 devices; "
                                      r"use one of \[1, 2, 4, 8\]"):
    check_mesh(_with(config, mesh=dict(fsdp=3)), device_count=8, local_device_count=8)
  with pytest.raises(UserError, match=r"^config.pipeline.batch_size=4 \(per process\) is not "
                                      r"divisible by the 8 devices of this process"):
    check_mesh(_with(config, mesh=dict(fsdp=1)), device_count=8, local_device_count=8)
  with pytest.raises(UserError, match=r"^config.mesh.fsdp: expected an integer >= 1, or 0 for "
                                      r"auto, got -1$"):
    check_loop(_with(rewis3d_config.get_config("demo"), mesh=dict(fsdp=-1)))
  # Auto (the paper Reliev3R config): the largest of 1, 2, 4, 8 dividing one process's devices.
  auto = _with(config, mesh=dict(fsdp=0))
  assert [mesh_fsdp(auto, n) for n in (1, 2, 4, 6, 8, 16)] == [1, 2, 4, 2, 8, 8]
  check_mesh(auto, device_count=1, local_device_count=1)


def _run(state, host_batch, fsdp, step, devices=None, after_first=None):
  """STEPS steps of `step` (a trainer's jitted step and its static keyword arguments but the
  mesh) on a mesh of `devices` (default: all 8) with this fsdp size: (losses, final state).
  Checks on the way that every step's output state has the placed layout and that the donated
  input was consumed; `after_first(state, metrics)` checks the state after step 1. The step's
  program is compiled once."""
  mesh = make_mesh(devices, fsdp=fsdp)
  state = place_state(state, mesh)
  want = state_shardings(state, mesh)
  sharded = shard_batch(host_batch, mesh)
  jitted, static = step
  compiled = jitted.lower(state, sharded, mesh=mesh, **static).compile()
  losses = []
  for _ in range(STEPS):
    before = jax.tree.leaves(state)
    state, metrics = compiled(state, sharded)
    assert all(x.is_deleted() for x in before), "the state was not donated"
    for (path, x), s in zip(jax.tree_util.tree_leaves_with_path(state), jax.tree.leaves(want)):
      assert x.sharding.is_equivalent_to(s, x.ndim), (jax.tree_util.keystr(path), x.sharding)
    losses.append(float(metrics["loss"]))
    if after_first is not None and len(losses) == 1:
      after_first(state, metrics)
  return losses, state


def _split_over_fsdp(params, fsdp):
  """How many parameter arrays are really split over "fsdp" (each device holds 1 / fsdp)."""
  count = 0
  for x in jax.tree.leaves(params):
    spec = param_spec(x.shape, x.dtype, fsdp)
    if spec != P():
      axis = list(spec).index(FSDP_AXIS)
      assert x.addressable_shards[0].data.shape[axis] == x.shape[axis] // fsdp
      count += 1
  return count


def _compare(fresh, runs, assert_same_updates):
  """Losses and parameter updates of every fsdp run against the first (fsdp = 1)."""
  (losses_dp, params_dp), *others = runs
  for losses, params in others:
    np.testing.assert_allclose(losses, losses_dp, rtol=LOSS_RTOL)
    assert_same_updates(fresh, params_dp, params, rtol=UPDATE_RTOL)


@pytest.mark.slow
def test_reliev3r_one_device_data_parallel_and_fsdp_agree(batch, assert_same_updates):
  """One device, fsdp 1 (8 x 1), 2 (4 x 2) and 8 (1 x 8): same losses and updates with the
  shipped AdamW (#11; the tiny model, batch of 8 samples and optimiser of
  tests/reliev3r/test_reliev3r_step.py). Before the 7-DOF gauge fix, the camera head's
  translation bias (a pure global translation, gradient = rounding noise) moved by +-lr with
  device-dependent signs: its update differed by 33% of lr between 1 and 8 devices."""
  model, tx = RELIEV3R_MODEL, shipped_optimizer()
  graphdef, state0 = create_state(Reliev3R(model, rngs=nnx.Rngs(0)), tx)
  fresh = jax.tree.map(np.asarray, state0.params)

  step = (train_step, dict(graphdef=graphdef, tx=tx, config=ObjectiveConfig()))

  runs = []
  for fsdp, devices in ((1, jax.devices()[:1]), (1, None), (2, None), (8, None)):
    _, state = create_state(Reliev3R(model, rngs=nnx.Rngs(0)), tx)
    losses, state = _run(state, batch, fsdp, step, devices)
    if devices is not None:   # the steps really changed the parameters
      assert max(float(np.max(np.abs(np.asarray(a) - b))) for a, b in
                 zip(jax.tree.leaves(state.params), jax.tree.leaves(fresh))) > 1e-4
    if fsdp > 1:
      assert _split_over_fsdp(state.params, fsdp) >= 5
      assert _split_over_fsdp(state.opt_state, fsdp) >= 10       # Adam's mu and nu
    runs.append((losses, state.params))
  _compare(fresh, runs, assert_same_updates)


@pytest.mark.slow
def test_rewis3d_one_device_data_parallel_and_fsdp_agree(assert_same_updates):
  """Both branches with the shipped optimisers (clip + AdamW, the demo config's settings without
  warm-up) and EMA teachers (#11): one device, pure data parallelism over 8 (8 x 1, the Rewis3d
  configs' layout) and fsdp 4 (2 x 4, both mesh axes in use) give the same losses and parameter
  updates. The one-device run also checks the step itself after step 1 (students move, teachers
  take the first update whole). The fully sharded 1 x 8 case is covered by the Reliev3R test, the rule being
  model-independent (each 8-device compile of this step costs ~1 min on 2 cores)."""
  k, b, h, w, n = 4, 8, 32, 32, 128
  rng = np.random.default_rng(0)
  weak = rng.normal(size=(b, n, 3)).astype(np.float32)
  seg_batch = {
      "image_weak": rng.integers(0, 255, (b, h, w, 3), dtype=np.uint8),
      "image_strong": rng.integers(0, 255, (b, h, w, 3), dtype=np.uint8),
      "labels": np.where(rng.uniform(size=(b, h, w)) < 0.9, 255,
                         rng.integers(0, k, (b, h, w))).astype(np.int32),
      "points_weak": weak, "points_strong": weak * 1.05,
      "points_rgb": rng.uniform(size=(b, n, 3)).astype(np.float32),
      "points_label": np.where(rng.uniform(size=(b, n)) < 0.8, 255,
                               rng.integers(0, k, (b, n))).astype(np.int32),
      "points_confidence": rng.uniform(0.1, 2.0, (b, n)).astype(np.float32),
      "points_valid": rng.uniform(size=(b, n)) < 0.9,
      "points_pixel": np.where(rng.uniform(size=(b, n)) < 0.5, rng.integers(0, h * w, (b, n)),
                               -1).astype(np.int32)}
  demo = rewis3d_config.get_config("demo")
  txs = {m: optax.chain(make_optimizer(dict(demo[f"optim{m}"].to_dict(), warmup_steps=0), 10),
                        ema_teacher(rewis3d_decay(0.99))) for m in ("2d", "3d")}

  def models():
    rngs = nnx.Rngs(0)
    return {"2d": SegFormer(SegFormerConfig.tiny(k), rngs=rngs),
            "3d": PointTransformer(PointTransformerConfig.tiny(
                k, enc_dims=(8, 16), enc_depths=(1, 1), enc_heads=(1, 2), dec_dims=(8,),
                dec_depths=(1,), dec_heads=(1,), cpe_window=1, grid_size=0.2), rngs=rngs)}

  graphdefs, state0 = create_seg_state(models(), txs)
  fresh = jax.tree.map(np.asarray, {m: br.params for m, br in state0.branches.items()})
  config = SegObjectiveConfig(base_steps=0, ramp_steps=1)   # the cross-modal terms on from step 1

  step = (seg_train_step, dict(graphdefs=tuple(graphdefs.items()), txs=tuple(txs.items()),
                               config=config))

  def first_step(state, metrics):
    """One device, after step 1: both students moved, and each EMA teacher took its student's
    new parameters (rewis3d_decay gives d = 0 at the first update)."""
    assert int(state.step) == 1 and bool(metrics["grads_finite"])
    for name, branch in state.branches.items():
      assert max(float(np.max(np.abs(np.asarray(a) - b))) for a, b in
                 zip(jax.tree.leaves(branch.params), jax.tree.leaves(fresh[name]))) > 0
      for t, p in zip(jax.tree.leaves(teacher_params(branch.opt_state)),
                      jax.tree.leaves(branch.params)):
        np.testing.assert_allclose(t, p, rtol=1e-6, atol=1e-7)

  runs = []
  for fsdp, devices in ((1, jax.devices()[:1]), (1, None), (4, None)):
    _, state = create_seg_state(models(), txs)
    losses, state = _run(state, seg_batch, fsdp, step, devices,
                         after_first=first_step if fsdp == 1 and devices is not None
                         and len(devices) == 1 else None)
    params = {m: br.params for m, br in state.branches.items()}
    if fsdp > 1:
      assert _split_over_fsdp(params["2d"], fsdp) >= 5
      assert _split_over_fsdp(state.branches["2d"].opt_state, fsdp) >= 15  # mu, nu, teacher
    runs.append((losses, params))
  _compare(fresh, runs, assert_same_updates)
