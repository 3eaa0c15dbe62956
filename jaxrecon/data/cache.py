"""On-disk cache of expert outputs: one .npz per scene (no pickle) plus a provenance JSON.

    cache_scenes(jobs, out_dir, provenance=...)

runs each job (a scene name and a function returning the scene's record, a dict of arrays; each
method's pipeline documents its records) and writes `out_dir/<name>.npz` atomically (temporary
file + rename, so a killed run never leaves a half-written scene; the temporary files a killed
run left are removed by the next, see `io.staging.remove_stray`). A re-run skips scenes already
written; a scene whose job raises is reported and the others go on: in one line for a UserError
or a missing file (bad input, named by the message), with a short traceback otherwise (a bug). A job raising
`SkipScene` is skipped with a warning and not counted as failed. `out_dir/provenance.json`
records which experts with which settings and package versions produced the files; a re-run with
different provenance refuses to mix the two in one folder.

Several processes (hosts) fill one cache folder together: each is given the same job list and
its process_index / process_count, and runs only every process_count-th job from its index, so
no two write the same file. Process 0 alone removes the leftovers of killed runs and writes
provenance.json; every process checks an existing provenance.json against its settings, then
calls `synchronize` (a barrier across the processes), so no scene is written before process 0's
clean-up. The caller waits for all processes before reading the folder
(`jaxrecon.train.datasplit`, `jaxrecon.prepare`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import sys
import tempfile
import threading
import time
import traceback
from typing import Callable, Iterable, Mapping

import numpy as np

from jaxrecon.errors import UserError
from jaxrecon.io.staging import remove_stray, tmp_prefix

PROVENANCE = "provenance.json"
# A job's failures caused by its input (their messages name the file): one line, no traceback.
_INPUT_ERRORS = (UserError, FileNotFoundError, PermissionError, IsADirectoryError,
                 NotADirectoryError)

# grain's iterators map elements on a thread pool; np.load parses each array header with
# ast.literal_eval, and CPython 3.11's compiler is not safe to run from several threads at once
# ("SystemError: AST constructor recursion depth mismatch"), so reads are serialised.
_READ_LOCK = threading.Lock()


def read_npz(path, what: str = "cached scene") -> dict:
  """All arrays of one .npz (no pickle) as a dict; ValueError naming the file when unreadable.
  Thread-safe (see _READ_LOCK)."""
  try:
    with _READ_LOCK, np.load(path, allow_pickle=False) as data:
      return {k: data[k] for k in data.files}
  except (OSError, ValueError) as e:
    raise UserError(f"{path}: cannot read the {what} ({e})") from e


class SkipScene(UserError):
  """Raised by a job whose scene should be left out of the cache (with a warning), not failed."""


def read_npz_arrays(path, keys, what: str = "cached scene") -> dict:
  """Only the arrays `keys` of one .npz (the others are not read); UserError naming the file when
  it is unreadable or lacks one. Thread-safe."""
  try:
    with _READ_LOCK, np.load(path, allow_pickle=False) as data:
      missing = [k for k in keys if k not in data.files]
      if missing:
        raise UserError(f"{path}: the {what} has no {missing}")
      return {k: data[k] for k in keys}
  except (OSError, ValueError) as e:
    if isinstance(e, UserError):
      raise
    raise UserError(f"{path}: cannot read the {what} ({e})") from e


@dataclasses.dataclass
class CacheReport:
  """What `cache_scenes` did: scene names written, skipped (already there), left out (SkipScene,
  with the reason) and failed (with the error message)."""
  written: list = dataclasses.field(default_factory=list)
  skipped: list = dataclasses.field(default_factory=list)
  left_out: dict = dataclasses.field(default_factory=dict)
  failed: dict = dataclasses.field(default_factory=dict)


def versions() -> dict:
  """Versions of the packages whose behaviour shapes the cached pseudo-labels."""
  import cv2  # noqa: PLC0415 (kept local: only provenance needs it)

  import jaxrecon  # noqa: PLC0415
  return {"jaxrecon": jaxrecon.__version__, "numpy": np.__version__, "opencv": cv2.__version__,
          "python": sys.version.split()[0]}


def write_npz_atomic(path, arrays: Mapping[str, np.ndarray]) -> None:
  """Writes arrays to `path` (.npz) via a temporary file in the same folder and a rename."""
  path = pathlib.Path(path)
  for key, value in arrays.items():
    if np.asarray(value).dtype == object:
      raise ValueError(f"{path.name}: array {key!r} has dtype object (would need pickle)")
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=tmp_prefix(path.name), suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache is meant to be shared
    os.replace(tmp, path)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise


def _check_provenance(out_dir: pathlib.Path, provenance: dict, *, write: bool = True,
                      also_accept: tuple = ()) -> None:
  """UserError when out_dir's provenance.json records other settings than `provenance` (or one
  of `also_accept`: older records of the same settings); writes it when missing and `write`
  (process 0 of several: the others only check)."""
  path = out_dir / PROVENANCE
  if path.exists():
    try:
      old = json.loads(path.read_text())
    except json.JSONDecodeError as e:
      raise UserError(f"{path}: corrupt provenance file ({e})") from e
    if old.get("settings") != provenance and old.get("settings") not in also_accept:
      raise UserError(f"{out_dir}: holds scenes made with other settings ({path}); use another "
                       f"folder or delete it")
  elif write:
    record = {"settings": provenance, "versions": versions(),
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=tmp_prefix(path.name), suffix=".tmp")
    with os.fdopen(fd, "w") as f:
      f.write(json.dumps(record, indent=2, sort_keys=True, default=str))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _progress(done, total, start, name, stream):
  elapsed = time.perf_counter() - start
  eta = elapsed / done * (total - done) if done else float("nan")
  width = 30
  bar = "#" * int(width * done / max(total, 1))
  stream.write(f"\r[{bar:<{width}}] {done}/{total} scenes  {elapsed:6.1f}s  eta {eta:6.1f}s  "
               f"{name[:30]:<30}")
  stream.flush()


def cache_scenes(jobs: Iterable[tuple[str, Callable[[], Mapping[str, np.ndarray]]]], out_dir, *,
                 provenance: dict, progress: bool = True, stream=None,
                 process_index: int = 0, process_count: int = 1,
                 synchronize: Callable[[], None] = lambda: None,
                 also_accept: Iterable[dict] = ()) -> CacheReport:
  """Runs the jobs not yet cached and writes one .npz per scene.

  Args:
    jobs: (scene name, function returning the scene's record) pairs; names must be unique and
      usable as file names.
    out_dir: the cache folder (created if missing).
    provenance: JSON-serialisable description of the experts and their settings.
    also_accept: other descriptions an existing folder may record for these same settings (how
      an older version recorded them); a new folder gets `provenance`.
    progress: show a progress bar on `stream` (default stderr).
    process_index, process_count: this process's share of the jobs when several fill the folder
      (jobs[process_index::process_count]; see the module docstring).
    synchronize: called by every process once the folder is set up, before its first job: a
      barrier across the processes when there are several.
  Returns:
    CacheReport of this process's jobs. Failed scenes are listed with their error; their files
    are not written.
  """
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} not in [0, {process_count})")
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  jobs = list(jobs)
  names = [n for n, _ in jobs]
  if len(set(names)) != len(names):
    raise UserError("jobs: scene names are not unique")
  for name in names:
    if not name or os.sep in name or name.startswith("."):
      raise UserError(f"jobs: {name!r} is not usable as a file name")
  provenance = json.loads(json.dumps(provenance, sort_keys=True, default=str))
  also_accept = tuple(json.loads(json.dumps(a, sort_keys=True, default=str)) for a in also_accept)
  stream = sys.stderr if stream is None else stream
  if process_index == 0:
    # (the legacy patterns: temporary names of versions before the writer's pid was in them)
    # Only process 0: another host's writer in progress looks like a dead pid from here.
    stray = remove_stray(out_dir, legacy=(".*.npz.tmp", "provenance.json.tmp"))
    if stray:
      stream.write(f"removed leftovers of an interrupted run in {out_dir}: {', '.join(stray)}\n")
  _check_provenance(out_dir, provenance, write=process_index == 0, also_accept=also_accept)
  synchronize()
  jobs = jobs[process_index::process_count]
  report = CacheReport()
  start = time.perf_counter()
  for i, (name, job) in enumerate(jobs):
    target = out_dir / f"{name}.npz"
    if target.exists():
      report.skipped.append(name)
    else:
      try:
        write_npz_atomic(target, job())
        report.written.append(name)
      except SkipScene as e:
        report.left_out[name] = str(e)
        stream.write(f"\nwarning: scene {name} skipped: {e}\n")
      except _INPUT_ERRORS as e:
        report.failed[name] = str(e)
        stream.write(f"\nscene {name} failed: {e}\n")
      except Exception as e:  # noqa: BLE001 (one bad scene must not stop the others)
        report.failed[name] = f"{type(e).__name__}: {e}"
        stream.write(f"\nscene {name} failed: {type(e).__name__}: {e}\n"
                     f"{traceback.format_exc(limit=3)}")
    if progress:
      _progress(i + 1, len(jobs), start, name, stream)
  if progress:
    stream.write("\n")
  left_out = f", {len(report.left_out)} skipped as unusable" if report.left_out else ""
  who = f"process {process_index} of {process_count}: " if process_count > 1 else ""
  stream.write(f"{who}cache {out_dir}: {len(report.written)} written, {len(report.skipped)} "
               f"already there{left_out}, {len(report.failed)} failed\n")
  return report
