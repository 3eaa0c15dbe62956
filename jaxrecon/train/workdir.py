"""The files a run keeps in its workdir: atomic writes, stray temporary files, checkpoints present.

Every file the trainers write in a workdir (config.json, metrics.jsonl when it is rewritten on
resume, reports) goes through `write_text_atomic`: the text is written to `.<name>.tmp` beside the
target and renamed over it, so a run killed mid-write leaves the old file whole. What such a kill
leaves behind is the `.<name>.tmp` file itself; `clean_stray_tmp` removes those (and the cache's
temporary scene files) when the next run starts.
"""
from __future__ import annotations

import os
import pathlib

TMP_PATTERNS = (".*.tmp", "*.json.tmp")   # ours (.<name>.tmp), the cache's (.<stem>.XXX.npz.tmp,
                                          # provenance.json.tmp)


def write_text_atomic(path, text: str) -> None:
  """Writes `text` to `path` via `.<name>.tmp` in the same folder and a rename."""
  path = pathlib.Path(path)
  tmp = path.with_name(f".{path.name}.tmp")
  try:
    tmp.write_text(text)
    os.replace(tmp, path)
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise


def clean_stray_tmp(workdir) -> list[pathlib.Path]:
  """Removes the temporary files an interrupted write left in `workdir`, its cache/ and its
  method folders (one level down); returns what was removed. Call it before anything of this run
  writes, on process 0 only: another process's write in progress would look the same."""
  workdir = pathlib.Path(workdir)
  if not workdir.is_dir():
    return []
  folders = [workdir] + [p for p in workdir.iterdir() if p.is_dir() and p.name != "checkpoints"]
  removed = []
  for folder in folders:
    for pattern in TMP_PATTERNS:
      for path in folder.glob(pattern):
        if path.is_file():
          path.unlink()
          removed.append(path)
  return sorted(set(removed))


def checkpoint_steps(checkpoints) -> list[int]:
  """Steps of the complete checkpoints in a checkpoints/ folder (Orbax renames a step's
  temporary folder to the bare step number once it is complete)."""
  folder = pathlib.Path(checkpoints)
  if not folder.is_dir():
    return []
  return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


def checkpoint_folders(workdir) -> list[pathlib.Path]:
  """The checkpoints/ folders of a run that hold a complete checkpoint: <workdir>/checkpoints, or
  <workdir>/<method>/checkpoints for a task that trains several methods in one workdir."""
  workdir = pathlib.Path(workdir)
  if not workdir.is_dir():
    return []
  candidates = [workdir / "checkpoints"] + sorted(workdir.glob("*/checkpoints"))
  return [c for c in candidates if checkpoint_steps(c)]
