"""The scene files of a training run: a prepared cache, or one built in the workdir, split into
training and held-out scenes.

    train_files, held_out_files = cached_split(config, workdir, build_jobs)

Config fields read: data.cache, data.prepare, data.num_eval_scenes.
"""
from __future__ import annotations

import pathlib
from typing import Callable

import jax

from jaxrecon.data.cache import cache_scenes
from jaxrecon.errors import UserError
from jaxrecon.train.progress import timed


def cached_split(config, workdir: pathlib.Path, build_jobs: Callable) -> tuple[list, list]:
  """(train, held-out) .npz paths of a run: config.data.cache, or a cache built in
  <workdir>/cache from config.data.prepare by build_jobs(settings) -> [(name, record fn)]; the
  last config.data.num_eval_scenes files (sorted by name) are held out."""
  if config.data.cache:
    folder = pathlib.Path(config.data.cache)
  else:
    folder = workdir / "cache"
    settings = config.data.prepare.to_dict()
    with timed(f"pseudo-label cache {folder}"):
      report = cache_scenes(build_jobs(settings), folder, provenance=settings,
                            progress=jax.process_index() == 0)
    if report.failed:
      raise UserError(f"{folder}: {len(report.failed)} scene(s) failed: " + "; ".join(
          f"{name}: {error}" for name, error in list(report.failed.items())[:3]))
  paths = sorted(folder.glob("*.npz"))
  held_out = config.data.num_eval_scenes
  if len(paths) <= held_out:
    raise UserError(f"{folder}: {len(paths)} scene files (*.npz), but config.data."
                    f"num_eval_scenes={held_out} are held out, so at least {held_out + 1} are "
                    f"needed")
  return paths[:len(paths) - held_out], paths[len(paths) - held_out:]
