"""Writing a command's outputs so that a failure or a kill leaves nothing half-done.

    out = check_output_folder(out_flag, "--out")       # before any expensive work
    with StagedOutput(out, OUTPUTS, label="reconstruct") as stage:
      ...write everything under stage.path...
    stage.replaced                                      # earlier outputs it replaced

Everything is written into a hidden staging folder inside `out` (same file system, so the final
moves are renames). Only when the block ends without an error are the earlier outputs of the same
names removed and the new ones moved into place; on an error the staging folder is removed, an
earlier run's outputs are left as they were, and an `out` this run created is removed again. Files
in `out` that are not outputs (`names`) are never touched.

Temporary names carry the writer's process id, `.<name>.<pid>-<random>.tmp`, so the next run can
tell the leftovers of a killed writer (`remove_stray`) from those of a writer still running.
"""
from __future__ import annotations

import os
import pathlib
import re
import shutil
import tempfile
from typing import Sequence

from jaxrecon.errors import UserError

_STRAY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[A-Za-z0-9_]+\.tmp$")


def tmp_prefix(name: str) -> str:
  """Prefix of a temporary file or folder for `name` written by this process (see the module
  docstring; `tempfile.mkstemp(prefix=..., suffix=".tmp")` adds the random part)."""
  return f".{name}.{os.getpid()}-"


def _alive(pid: int) -> bool:
  if pid == os.getpid():
    return True
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, owned by someone else
    return True
  return True


def remove_stray(folder: str | os.PathLike, legacy: Sequence[str] = ()) -> list[str]:
  """Removes the temporary files / folders in `folder` that a killed writer left (named by
  `tmp_prefix`, whose process is gone), plus the names matching the glob patterns `legacy`
  (formats of older versions). Returns the names removed."""
  folder = pathlib.Path(folder)
  if not folder.is_dir():
    return []
  removed = []
  candidates = {p for p in folder.iterdir() if (m := _STRAY.match(p.name))
                and not _alive(int(m["pid"]))}
  for pattern in legacy:
    candidates.update(folder.glob(pattern))
  for path in sorted(candidates):
    if path.is_dir() and not path.is_symlink():
      shutil.rmtree(path, ignore_errors=True)
    else:
      path.unlink(missing_ok=True)
    removed.append(path.name)
  return removed


def check_output_folder(out: str | os.PathLike, flag: str = "--out") -> pathlib.Path:
  """`out` as a Path after checking, without writing anything, that it can become the output
  folder: not an existing file, below a folder (not a file), writable. UserError naming the flag
  and the path otherwise."""
  out = pathlib.Path(out)
  if out.exists() and not out.is_dir():
    raise UserError(f"{flag}={out} exists and is not a folder")
  existing = out
  while not existing.exists():
    if existing.parent == existing:
      break
    existing = existing.parent
  if not existing.is_dir():
    raise UserError(f"{flag}={out}: {existing} is a file, not a folder")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise UserError(f"{flag}={out}: no permission to write in {existing}")
  return out


class StagedOutput:
  """Context manager of one command's outputs (see the module docstring).

  out: the output folder (checked with `check_output_folder` first). names: every top-level
  name the command may write into `out` (files or folders); earlier ones are replaced at the end.
  label: names the staging folder. Attributes: path (the staging folder, inside the block),
  replaced (names of earlier outputs replaced, after the block), stray (leftovers of killed
  earlier runs removed on entry).
  """

  def __init__(self, out: str | os.PathLike, names: Sequence[str], label: str = "output"):
    self.out, self.names, self.label = check_output_folder(out), tuple(names), label
    self.path: pathlib.Path | None = None
    self.replaced: list[str] = []
    self.stray: list[str] = []
    self._created = False

  def notes(self) -> list[str]:
    """Lines a command prints after the block: leftovers removed, earlier outputs replaced."""
    lines = []
    if self.stray:
      lines.append(f"removed leftovers of an interrupted run in {self.out}: "
                   f"{', '.join(self.stray)}")
    if self.replaced:
      lines.append(f"replaced the earlier outputs in {self.out}: {', '.join(self.replaced)}")
    return lines

  def __enter__(self) -> "StagedOutput":
    self._created = not self.out.exists()
    self.out.mkdir(parents=True, exist_ok=True)
    self.stray = remove_stray(self.out)
    self.path = pathlib.Path(tempfile.mkdtemp(dir=self.out, prefix=tmp_prefix(self.label),
                                              suffix=".tmp"))
    os.chmod(self.path, 0o755)  # mkdtemp makes it 0700; outputs are meant to be shared
    return self

  def __exit__(self, kind, error, trace) -> None:
    if kind is not None:
      shutil.rmtree(self.path, ignore_errors=True)
      if self._created and not any(self.out.iterdir()):
        self.out.rmdir()
      return
    unexpected = sorted(p.name for p in self.path.iterdir() if p.name not in self.names)
    if unexpected:  # a bug in the command: its outputs must be declared to be replaced
      raise RuntimeError(f"{self.label}: undeclared outputs {unexpected}")
    for name in self.names:
      old = self.out / name
      if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old)
      elif old.exists() or old.is_symlink():
        old.unlink()
      else:
        continue
      self.replaced.append(name)
    for new in sorted(self.path.iterdir()):
      os.replace(new, self.out / new.name)
    self.path.rmdir()
