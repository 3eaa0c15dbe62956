"""The scene files of a training run: a prepared cache, or one built in the workdir, split into
training and held-out scenes.

    train_files, held_out_files = cached_split(config, workdir, build_jobs)

Config fields read: data.cache, data.prepare, data.num_eval_scenes.

With several processes a cache built in the workdir is split between them: each builds every
process_count-th scene (`jaxrecon.data.cache`), after process 0 has removed what killed runs left
(`engine.open_workdir`, and the cache's own leftovers), and none reads the folder before all have
finished; a scene failing in any process fails the run in every process.
"""
from __future__ import annotations

import json
import pathlib
from typing import Callable

import jax

from jaxrecon.data.cache import PROVENANCE, cache_scenes
from jaxrecon.errors import UserError
from jaxrecon.train import multihost
from jaxrecon.train.progress import log, timed


def cached_split(config, workdir: pathlib.Path, build_jobs: Callable,
                 provenance: Callable = dict) -> tuple[list, list]:
  """(train, held-out) .npz paths of a run: config.data.cache, or a cache built in
  <workdir>/cache from config.data.prepare by build_jobs(settings) -> [(name, record fn)] and
  recorded as provenance(settings), the record `prepare` writes for the same settings; a workdir
  cache that recorded the raw settings (what runs wrote before they used `provenance`) is still
  accepted. The last config.data.num_eval_scenes files (sorted by name) are held out."""
  if config.data.cache:
    folder = pathlib.Path(config.data.cache)
    note_cache_settings(folder, provenance(config.data.prepare.to_dict()))
  else:
    folder = workdir / "cache"
    settings = config.data.prepare.to_dict()
    with timed(f"pseudo-label cache {folder}"):
      # The barrier: process 0's clean-ups (open_workdir's, then the cache's own) are over
      # before any process writes a scene.
      report = cache_scenes(build_jobs(settings), folder, provenance=provenance(settings),
                            progress=jax.process_index() == 0,
                            process_index=jax.process_index(), process_count=jax.process_count(),
                            synchronize=lambda: multihost.barrier("cache folder set up"),
                            also_accept=(settings,))
    # Also waits for every process's scenes: nobody lists the folder before they are written.
    failed = multihost.total(len(report.failed), "cache failures")
    if report.failed:
      raise UserError(f"{folder}: {len(report.failed)} scene(s) failed: " + "; ".join(
          f"{name}: {error}" for name, error in list(report.failed.items())[:3]))
    if failed:
      raise UserError(f"{folder}: {failed} scene(s) failed in other processes (see their "
                      f"error output)")
  paths = sorted(folder.glob("*.npz"))
  held_out = config.data.num_eval_scenes
  if len(paths) <= held_out:
    raise UserError(f"{folder}: {len(paths)} scene files (*.npz), but config.data."
                    f"num_eval_scenes={held_out} are held out, so at least {held_out + 1} are "
                    f"needed")
  return paths[:len(paths) - held_out], paths[len(paths) - held_out:]


def _flat(d, prefix=""):
  out = {}
  for key, value in (d or {}).items():
    if isinstance(value, dict):
      out.update(_flat(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def setting_differences(made: dict, wanted: dict) -> list[str]:
  """'key: A (cache) vs B (config)' for every (nested, dotted) setting that differs; keys only
  one side has show <absent> on the other."""
  a, b = _flat(made), _flat(wanted)
  absent = "<absent>"
  return [f"{k}: {a.get(k, absent)!r} (cache) vs {b.get(k, absent)!r} (config)"
          for k in sorted(set(a) | set(b)) if a.get(k, absent) != b.get(k, absent)]


def note_cache_settings(folder: pathlib.Path, wanted: dict) -> None:
  """Says (one log line) when the prepared cache config.data.cache was made with other settings
  than config.data.prepare describes, or records none: a run trains on the cache as it is, so
  its config.json alone would misdescribe the data (e.g. a cache prepared with --config.tracker=
  xfeat under a config whose data.prepare says sift)."""
  path = folder / PROVENANCE
  try:
    made = json.loads(path.read_text()).get("settings")
  except (OSError, json.JSONDecodeError):
    made = None
  if made is None:
    log(f"config.data.cache={folder}: no readable {PROVENANCE}, so the settings its scenes were "
        f"made with are unknown; config.data.prepare is not used")
    return
  diff = setting_differences(made, wanted)
  if diff:
    shown = "; ".join(diff[:6]) + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")
    log(f"config.data.cache={folder} was made with other settings than config.data.prepare "
        f"({shown}); training uses the cache as it is (its settings: {path})")
