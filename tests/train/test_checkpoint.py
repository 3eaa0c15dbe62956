"""Checkpoints: state and data iterator saved together, exact resume, resume order, keep N."""
import grain
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrecon.train.checkpoint import Checkpointer, restore_or_init


def _dataset():
  return grain.MapDataset.range(1000).seed(0).shuffle().batch(4).to_iter_dataset()


def _state(scale=1.0):
  return {"params": {"w": jnp.arange(6.0).reshape(2, 3) * scale}, "step": jnp.int32(0)}


def test_state_and_iterator_resume_exactly(tmp_path):
  ckpt = Checkpointer(tmp_path / "run", keep=2)
  it = iter(_dataset())
  for _ in range(5):
    next(it)
  state = _state(2.0)
  ckpt.save(5, state, it)
  ckpt.wait()
  expected = [next(it) for _ in range(3)]
  fresh_it = iter(_dataset())
  restored, origin = restore_or_init(Checkpointer(tmp_path / "run"), lambda: _state(0.0),
                                     data_iterator=fresh_it)
  assert origin == "workdir:5"
  np.testing.assert_array_equal(restored["params"]["w"], state["params"]["w"])
  for want in expected:
    np.testing.assert_array_equal(next(fresh_it), want)


def test_keeps_the_last_n(tmp_path):
  ckpt = Checkpointer(tmp_path, keep=2)
  for step in (1, 2, 3):
    ckpt.save(step, _state(step))
  ckpt.wait()
  assert ckpt.all_steps() == [2, 3] and ckpt.latest_step() == 3


def test_resume_order(tmp_path):
  state, origin = restore_or_init(Checkpointer(tmp_path / "new"), lambda: _state(1.0))
  assert origin == "fresh"
  other = Checkpointer(tmp_path / "other")
  other.save(7, _state(3.0))
  other.wait()
  for init_from in (tmp_path / "other", tmp_path / "other" / "7"):
    state, origin = restore_or_init(Checkpointer(tmp_path / f"b{len(str(init_from))}"),
                                    lambda: _state(1.0), init_from=str(init_from))
    assert origin.startswith("init_from")
    np.testing.assert_array_equal(state["params"]["w"], _state(3.0)["params"]["w"])
  # The run's own checkpoint wins over init_from.
  own = Checkpointer(tmp_path / "own")
  own.save(2, _state(5.0))
  own.wait()
  state, origin = restore_or_init(own, lambda: _state(1.0), init_from=str(tmp_path / "other"))
  assert origin == "workdir:2" and float(state["params"]["w"][0, 1]) == 5.0


def test_missing_checkpoints_are_clear_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="no checkpoint"):
    Checkpointer(tmp_path / "empty").restore(_state())
  (tmp_path / "nothing").mkdir()
  with pytest.raises(FileNotFoundError, match="no checkpoint"):
    restore_or_init(Checkpointer(tmp_path / "x"), _state, init_from=str(tmp_path / "nothing"))
