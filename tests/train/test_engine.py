"""The training engine on a toy task: evaluation cadence, the final evaluation, metrics.jsonl,
checkpoints, resume of a finished run, the finiteness check (the methods' task tests run it on
Reliev3R and Rewis3d end to end)."""
import json
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxrecon.data.batching import batched_dataset
from jaxrecon.train import engine
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

  def step(self, state, batch):
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
  return ml_collections.ConfigDict(dict(steps=steps, log_every=2, eval_every=2,
                                        checkpoint_every=3, keep_checkpoints=5, init_from="",
                                        **extra))


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
