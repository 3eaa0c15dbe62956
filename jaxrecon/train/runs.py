"""Finding a trained run on disk and restoring its model (used by the CLIs and by trainers that
consume another run, e.g. Rewis3d reconstructing scenes with a Reliev3R checkpoint)."""
from __future__ import annotations

import json
import pathlib
from typing import Optional

import jax
import ml_collections

from jaxrecon.train.checkpoint import Checkpointer


def locate_run(checkpoint: str) -> tuple[pathlib.Path, pathlib.Path]:
  """(workdir, checkpoints folder) of a run given as its workdir or its checkpoints/ folder."""
  path = pathlib.Path(checkpoint).absolute()
  if not path.is_dir():
    raise FileNotFoundError(f"checkpoint folder not found: {path}")
  if (path / "checkpoints").is_dir():
    return path, path / "checkpoints"
  return (path.parent if path.name == "checkpoints" else path), path


def stored_config(workdir: pathlib.Path) -> Optional[ml_collections.ConfigDict]:
  """The config a run was trained with (<workdir>/config.json, written by the trainers), or None."""
  stored = pathlib.Path(workdir) / "config.json"
  if stored.is_file():
    return ml_collections.ConfigDict(json.loads(stored.read_text()))
  return None


def restore_latest(checkpoints: pathlib.Path, init_state):
  """(state, step) of the latest checkpoint in `checkpoints`; init_state builds a fresh state
  (only traced, under jax.eval_shape, for the restore target)."""
  manager = Checkpointer(checkpoints, async_save=False)
  try:
    step = manager.latest_step()
    if step is None:
      raise FileNotFoundError(f"{checkpoints}: no checkpoint to restore")
    return manager.restore(jax.eval_shape(init_state), step=step), step
  finally:
    manager.close()   # also on "no checkpoint"
