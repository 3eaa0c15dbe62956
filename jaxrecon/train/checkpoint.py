"""Orbax checkpoints of the train state together with the grain data iterator's position.

One checkpoint per saved step holds both items, written asynchronously (training goes on while the
arrays are written) and atomically by Orbax (a killed save leaves no half checkpoint behind), so a
run killed at any moment restarts from its last complete checkpoint and continues with exactly the
batches it would have seen.

Several processes: every process calls `save` and `restore` with the same step; Orbax writes one
checkpoint folder per step for all of them (each array shard once, by the process holding its
first replica; metadata by process 0), and its data/ item holds one grain iterator position per
process, data/process_<i>-of-<n>.json, written and read back by process i (grain's handler). A run
therefore resumes with the number of processes it was saved with; another number is refused in one
line (`check_data_positions`) rather than starting some process's data from the wrong place.

Resume order (`restore_or_init`): the run's own workdir if it holds a checkpoint, else
`init_from` (another run's checkpoint folder or a step folder inside it; only the train state is
taken, the data iterator starts fresh), else a fresh state.
"""
from __future__ import annotations

import pathlib
from typing import Any, Callable, Optional

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxrecon.errors import UserError


class Checkpointer:
  """Saves and restores {state, data iterator} under `directory` (keeps the last `keep`).

  Args:
    directory: folder of this run's checkpoints (created if missing).
    keep: number of most recent checkpoints kept.
    async_save: write in a background thread (call `wait` before reading the files or exiting).
  """

  def __init__(self, directory, *, keep: int = 3, async_save: bool = True):
    self.directory = pathlib.Path(directory).absolute()
    # cleanup_tmp_directories: a save killed mid-way leaves a <step>.orbax-checkpoint-tmp folder;
    # the next run removes it.
    options = ocp.CheckpointManagerOptions(max_to_keep=keep,
                                           enable_async_checkpointing=async_save,
                                           cleanup_tmp_directories=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, data_iterator: Optional[grain.DatasetIterator] = None,
           *, force: bool = False) -> bool:
    """Starts saving `state` (a pytree of arrays) and the iterator's position at `step`."""
    items = {"state": ocp.args.StandardSave(state)}
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    return self._manager.save(step, args=ocp.args.Composite(**items), force=force)

  def restore(self, abstract_state: Any, data_iterator: Optional[grain.DatasetIterator] = None,
              step: Optional[int] = None) -> Any:
    """The state at `step` (default latest); moves `data_iterator` to its saved position.

    abstract_state: pytree of jax.ShapeDtypeStruct describing the state; leaves without a
      sharding are restored whole on this process's first device (`restore_target`).
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"{self.directory}: no checkpoint to restore")
    items = {"state": ocp.args.StandardRestore(restore_target(abstract_state))}
    if data_iterator is not None:
      check_data_positions(self.directory / str(step))
      items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    try:
      state = self._manager.restore(step, args=ocp.args.Composite(**items)).state
    except (ValueError, KeyError, TypeError) as e:
      raise mismatch_error(self.directory / str(step), e) from e
    return host_local(state, abstract_state)

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


def restore_target(abstract_state: Any) -> Any:
  """`abstract_state` with this process's first device as the sharding of every leaf that has
  none (jax.eval_shape gives none): where a fresh state is created. Without it Orbax would
  rebuild the saved shardings, which name the devices of the run that wrote the checkpoint and
  fail ("Topology mismatch") for a checkpoint written by another number of processes or
  devices, e.g. a multi-host run evaluated on one machine."""
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

  def target(leaf):
    if getattr(leaf, "sharding", None) is not None:
      return leaf
    return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device,
                                weak_type=leaf.weak_type)
  return jax.tree.map(target, abstract_state)


def host_local(state: Any, abstract_state: Any) -> Any:
  """With several processes, the leaves restored by `restore_target` (committed to this
  process's first device) as numpy arrays: jax places a host value on a mesh spanning all
  processes (the same value in each), but refuses to move a committed device array to devices of
  other processes. One process: `state` as it is."""
  if jax.process_count() == 1:
    return state
  return jax.tree.map(lambda leaf, spec: leaf if getattr(spec, "sharding", None) is not None
                      else np.asarray(leaf), state, abstract_state)


def data_position_file(step_dir: pathlib.Path, process_index: int,
                       process_count: int) -> pathlib.Path:
  """Where grain's checkpoint handler keeps process `process_index`'s iterator position."""
  return step_dir / "data" / f"process_{process_index}-of-{process_count}.json"


def check_data_positions(step_dir: pathlib.Path) -> None:
  """UserError when the step folder's data positions were written by another number of
  processes than this run has (grain would fail with "File ... does not exist")."""
  mine = data_position_file(step_dir, jax.process_index(), jax.process_count())
  written = sorted((step_dir / "data").glob("process_*-of-*.json"))
  if written and not mine.exists():
    saved_count = written[0].stem.rpartition("-of-")[2]
    raise UserError(f"{step_dir}: saved by {saved_count} process(es) (one data position each), "
                    f"this run has {jax.process_count()}; resume it with --num_processes="
                    f"{saved_count}")


def mismatch_error(where: pathlib.Path, error: Exception) -> UserError:
  """The one-line report of a checkpoint whose arrays do not fit the model of this config (Orbax's
  own message runs to pages; its first line names the array)."""
  first = next((line.strip() for line in str(error).splitlines() if line.strip()),
               type(error).__name__)
  return UserError(f"{where}: the checkpoint does not fit the model this config builds "
                   f"({first[:200]}); was it trained with another config?")


def _state_only(path: pathlib.Path, abstract_state: Any) -> Any:
  """Restores just the train state from another run (its workdir or checkpoints/ folder) or one
  of its step folders."""
  if (path / "checkpoints").is_dir():    # a run's workdir
    path = path / "checkpoints"
  if (path / "state").is_dir():          # a step folder: <run>/<step>/state
    step_dir = path
  else:                                  # a run folder: take its latest step
    steps = sorted((int(p.name) for p in path.iterdir() if p.name.isdigit()), reverse=True)
    if not steps:
      raise FileNotFoundError(f"config.init_from={path}: no checkpoint found in it")
    step_dir = path / str(steps[0])
  with ocp.StandardCheckpointer() as ckpt:
    try:
      return host_local(ckpt.restore(step_dir / "state", restore_target(abstract_state)),
                        abstract_state)
    except (ValueError, KeyError, TypeError) as e:
      raise mismatch_error(step_dir, e) from e


def restore_or_init(checkpointer: Checkpointer, init_fn: Callable[[], Any], *,
                    data_iterator: Optional[grain.DatasetIterator] = None,
                    init_from: Optional[str] = None) -> tuple[Any, str]:
  """Train state by the resume order workdir -> init_from -> fresh.

  Args:
    checkpointer: this run's checkpoints.
    init_fn: builds a fresh state (also used, under jax.eval_shape, for the restore target).
    data_iterator: moved to the saved position when resuming this run's own checkpoint.
    init_from: optional path of another run (or one of its step folders) to start from.
  Returns:
    (state, origin) with origin "workdir:<step>", "init_from:<path>" or "fresh".
  """
  if checkpointer.latest_step() is not None:
    abstract = jax.eval_shape(init_fn)
    step = checkpointer.latest_step()
    return checkpointer.restore(abstract, data_iterator, step), f"workdir:{step}"
  if init_from:
    abstract = jax.eval_shape(init_fn)
    return _state_only(pathlib.Path(init_from).absolute(), abstract), f"init_from:{init_from}"
  return init_fn(), "fresh"
