"""The training engine on a toy task: evaluation cadence, the final evaluation, metrics.jsonl,
checkpoints, resume of a finished run, the finiteness check (the methods' task tests run it on
Reliev3R and Rewis3d end to end)."""
import json
import struct
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxrecon.data.batching import batched_dataset
from jaxrecon.train import engine
from jaxrecon.errors import UserError
from jaxrecon.train.checkpoint import Checkpointer


class ToyState(NamedTuple):
  step: jax.Array
  w: jax.Array


@jax.jit
def _toy_step(state, batch):
  # w moves towards the batch mean; "loss" is the squared distance before the move.
  loss = jnp.mean((batch["x"] - state.w) ** 2)
  w = state.w + 0.5 * (jnp.mean(batch["x"]) - state.w)
  return ToyState(state.step + 1, w), {"loss": loss, "grads_finite": jnp.isfinite(loss)}


def _sample(element, rng):
  return {"x": np.float32(element + rng.normal())}


class ToyTask:
  label = "toy "

  def __init__(self, values=range(32)):
    self.values = [float(v) for v in values]
    self.evaluated, self.finished = [], []

  def init_state(self):
    return ToyState(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32))

  def dataset(self):
    return batched_dataset(self.values, _sample, seed=0, shuffle=True, batch_size=8,
                           worker_count=0)

  def step(self, state, batch, mesh):
    return _toy_step(state, batch)

  def describe(self):
    return f"{len(self.values)} values"

  def evaluate(self, state):
    self.evaluated.append(int(state.step))
    return {"w": float(state.w)}, f"w {float(state.w):.3f}"

  def finish(self, state, *, ran_last_step, metrics_log):
    self.finished.append((int(state.step), ran_last_step))
    metrics_log.write(int(state.step), {"final_w": float(state.w)}, prefix="eval/")
    return float(state.w)


def _config(steps=6, **extra):
  return ml_collections.ConfigDict({**dict(steps=steps, log_every=2, eval_every=2,
                                           checkpoint_every=3, keep_checkpoints=5, init_from=""),
                                    **extra})


def test_cadence_final_evaluation_checkpoints_and_finished_run(tmp_path, capsys):
  task = ToyTask()
  final = engine.run(task, _config(), tmp_path)
  assert task.evaluated == [2, 4]                  # the last step's evaluation is `finish`'s
  assert task.finished == [(6, True)]
  lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [(r["step"], sorted(r)) for r in lines] == [
      (2, ["grads_finite", "loss", "step"]), (2, ["eval/w", "step"]),
      (4, ["grads_finite", "loss", "step"]), (4, ["eval/w", "step"]),
      (6, ["grads_finite", "loss", "step"]), (6, ["eval/final_w", "step"])]
  assert lines[-1]["eval/final_w"] == pytest.approx(final)
  assert Checkpointer(tmp_path / "checkpoints").all_steps() == [3, 6]
  out = capsys.readouterr().out
  assert "toy run " in out and "fresh, step 0 of 6, 32 values" in out
  assert "toy eval      2  w " in out and "toy step      6" in out

  # A finished run restores its last step, trains nothing and still reports.
  again = ToyTask()
  assert engine.run(again, _config(), tmp_path) == pytest.approx(final)
  assert again.evaluated == [] and again.finished == [(6, False)]


def test_resume_continues_with_the_same_batches(tmp_path):
  straight = engine.run(ToyTask(), _config(steps=6), tmp_path / "a")
  engine.run(ToyTask(), _config(steps=3), tmp_path / "b")     # stops at its checkpoint of step 3
  resumed = engine.run(ToyTask(), _config(steps=6), tmp_path / "b")
  assert resumed == straight


def test_a_non_finite_step_raises_with_its_number(tmp_path):
  task = ToyTask(values=[np.inf] * 16)
  with pytest.raises(FloatingPointError, match="step 1: non-finite loss"):
    engine.run(task, _config(), tmp_path)


def test_non_finite_values_name_step_and_term():
  engine.check_finite(3, {"depth": np.float32(1.0), "grads_finite": np.bool_(True)})
  with pytest.raises(FloatingPointError, match=r"step 7: non-finite registration"):
    engine.check_finite(7, {"depth": np.float32(1.0), "registration": np.float32(np.nan),
                            "grads_finite": np.bool_(True)})
  with pytest.raises(FloatingPointError, match="step 2: non-finite gradients"):
    engine.check_finite(2, {"depth": np.float32(1.0), "grads_finite": np.bool_(False)})


# --- #10: records after restore, checkpoint before evaluation, stray files, TensorBoard ----------


class FailingEvalTask(ToyTask):
  def evaluate(self, state):
    raise RuntimeError(f"evaluation failed at step {int(state.step)}")


def test_the_checkpoint_of_a_step_is_saved_before_its_evaluation(tmp_path):
  # An evaluation that crashes (e.g. on records without ground truth) must not cost the step:
  # the rerun resumes after it instead of crashing at the same step again.
  with pytest.raises(RuntimeError, match="step 2"):
    engine.run(FailingEvalTask(), _config(checkpoint_every=2), tmp_path)
  assert Checkpointer(tmp_path / "checkpoints").all_steps() == [2]


def test_records_are_written_only_once_the_state_is_restored(tmp_path):
  record = tmp_path / "config.json"
  engine.run(ToyTask(), _config(), tmp_path, records={record: '{"a": 1}'})
  assert record.read_text() == '{"a": 1}'

  class OtherShapes(ToyTask):
    def init_state(self):
      return ToyState(jnp.zeros((), jnp.int32), jnp.zeros((3,), jnp.float32))

  with pytest.raises(UserError, match="does not fit the model"):
    engine.run(OtherShapes(), _config(), tmp_path, records={record: '{"a": 2}'})
  assert record.read_text() == '{"a": 1}'


def test_open_workdir_refuses_another_config_and_keeps_config_json(tmp_path):
  config = _config(model=dict(width=8))
  engine.open_workdir(config, tmp_path)           # nothing there yet: fine
  engine.run(ToyTask(), config, tmp_path,
             records={tmp_path / "config.json": config.to_json_best_effort(sort_keys=True)})
  before = (tmp_path / "config.json").read_text()
  with pytest.raises(UserError, match=r"was trained with model.width=8 \(requested 16\)"):
    engine.open_workdir(_config(model=dict(width=16)), tmp_path)
  engine.open_workdir(_config(steps=9, model=dict(width=8)), tmp_path)  # safe on resume
  assert (tmp_path / "config.json").read_text() == before


def test_stray_temporary_files_are_removed_on_the_next_run(tmp_path, capsys):
  (tmp_path / "cache").mkdir()
  stray = [tmp_path / ".config.json.tmp", tmp_path / ".metrics.jsonl.tmp",
           tmp_path / "cache" / ".scene.ab12.npz.tmp"]
  for path in stray:
    path.write_text("half")
  (tmp_path / "notes.tmp.txt").write_text("mine")
  engine.open_workdir(_config(), tmp_path)
  assert not any(p.exists() for p in stray) and (tmp_path / "notes.tmp.txt").exists()
  assert "removed 3 temporary file(s)" in capsys.readouterr().out


def test_tensorboard_events_beside_metrics_and_compile_is_announced(tmp_path, capsys):
  pytest.importorskip("tensorboardX")
  engine.run(ToyTask(), _config(), tmp_path)
  events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
  assert len(events) == 1 and events[0].stat().st_size > 0
  from tensorboardX.proto import event_pb2 as proto  # noqa: PLC0415 (ships its protos)
  data, tags, offset = events[0].read_bytes(), set(), 0
  while offset < len(data):    # TFRecord framing: length, crc, payload, crc
    (length,) = struct.unpack("<Q", data[offset:offset + 8])
    event = proto.Event.FromString(data[offset + 12:offset + 12 + length])
    tags.update(v.tag for v in event.summary.value)
    offset += 16 + length
  assert {"loss", "eval/w", "eval/final_w"} <= tags
  out = capsys.readouterr().out
  assert "compiling the train step" in out and "compiled and ran step 1 in" in out


# --- #15: no host round trip per step, late but complete finiteness checks, recompilations -------


class ReadProbe:
  """A metric leaf that records when the engine reads it to the host (jax.device_get converts a
  leaf through its __array__): (the step it belongs to, steps dispatched at the time of reading)."""

  def __init__(self, step, dispatched, reads):
    self.step, self.dispatched, self.reads = step, dispatched, reads

  def __array__(self, dtype=None, copy=None):
    self.reads.append((self.step, len(self.dispatched)))
    return np.asarray(1.0, dtype=dtype)


class ProbedTask(ToyTask):
  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self.dispatched, self.reads = [], []

  def step(self, state, batch, mesh):
    state, metrics = _toy_step(state, batch)
    self.dispatched.append(int(state.step))
    return state, dict(metrics, probe=ReadProbe(len(self.dispatched), self.dispatched, self.reads))


def test_metrics_are_read_every_log_every_steps_not_every_step(tmp_path):
  task = ProbedTask()
  engine.run(task, _config(steps=8, log_every=4, eval_every=0, checkpoint_every=8), tmp_path)
  # Read after the first step (its compile time is reported), then every 4 steps; every step's
  # metrics are read (and checked) exactly once, in one transfer per sync point.
  assert task.reads == [(1, 1), (2, 4), (3, 4), (4, 4), (5, 8), (6, 8), (7, 8), (8, 8)]


def test_a_non_finite_step_is_found_late_but_never_checkpointed(tmp_path):
  # Step 3 is the first non-finite one; the host reads metrics at steps 1 and 4 (log_every) and
  # before the checkpoint of step 2, so the error names step 3 (not 4) and only step 2 is saved.
  values = [1.0] * 16 + [np.inf] * 8    # unshuffled: batches 1-2 finite, batch 3 infinite
  task = ToyTask(values=values)
  task.dataset = lambda: batched_dataset(task.values, _sample, seed=0, shuffle=False,
                                         batch_size=8, worker_count=0)
  with pytest.raises(FloatingPointError, match="step 3: non-finite loss"):
    engine.run(task, _config(steps=6, log_every=4, eval_every=0, checkpoint_every=2), tmp_path)
  assert Checkpointer(tmp_path / "checkpoints").all_steps() == [2]


class ReshapingTask(ToyTask):
  """From step 4 on, feeds the step a batch of another shape (its jit compiles again)."""

  def step(self, state, batch, mesh):
    if int(state.step) >= 3:
      batch = {"x": jnp.stack([batch["x"], batch["x"]])}
    return _toy_step(state, batch)


def test_a_step_that_compiles_again_is_reported_with_its_number(tmp_path, capsys):
  engine.run(ToyTask(), _config(), tmp_path / "steady")
  assert "compiled again after the first step: nothing" in capsys.readouterr().out
  engine.run(ReshapingTask(), _config(), tmp_path / "reshaping")
  out = capsys.readouterr().out
  assert "warning: the train step compiled again at step 4" in out
  assert "compiled again after the first step: train step at step 4" in out


def test_compile_counter_counts_programs_loaded_from_the_persistent_cache(tmp_path):
  """A step whose in-memory jit cache missed counts once, whether XLA compiled it or the
  persistent cache (JAX_COMPILATION_CACHE_DIR) supplied it: a cache hit still means the step was
  traced and lowered again, and a run without the cache would have compiled."""
  from jax.experimental.compilation_cache import compilation_cache
  from jaxrecon.train.compiles import CompileCounter
  hits = []

  def on_hit(event, **kwargs):
    if event == "/jax/compilation_cache/cache_hits":
      hits.append(event)

  def f(x):
    return jnp.sin(x) * 3.0 + 0.25

  x = jnp.arange(7.0, dtype=jnp.float32)
  old = (jax.config.jax_compilation_cache_dir,
         jax.config.jax_persistent_cache_min_compile_time_secs)
  jax.config.update("jax_compilation_cache_dir", str(tmp_path / "cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  compilation_cache.reset_cache()
  jax.monitoring.register_event_listener(on_hit)
  try:
    counts = []
    for _ in range(2):
      jax.clear_caches()          # the in-memory caches only; the second call reads the disk
      with CompileCounter() as counter:
        jax.block_until_ready(jax.jit(f)(x))
        jax.block_until_ready(jax.jit(f)(x))   # in memory now: not counted
      counts.append(counter.count)
  finally:
    jax.monitoring.unregister_event_listener(on_hit)
    jax.config.update("jax_compilation_cache_dir", old[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", old[1])
    compilation_cache.reset_cache()
  assert counts == [1, 1]
  assert len(hits) == 1, "the second pass was not served by the persistent cache"
