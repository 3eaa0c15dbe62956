"""Console progress, the metrics.jsonl file of a run and its TensorBoard event files (all on
process 0 only).

TensorBoard files (<workdir>/tensorboard/events.out.tfevents.*) carry the same scalars as
metrics.jsonl; they come from tensorboardX (a light writer: numpy + protobuf). Without it
installed the run says so once and keeps metrics.jsonl alone.
"""
from __future__ import annotations

import contextlib
import json
import pathlib
import time
from typing import Mapping

import jax

from jaxrecon.train.workdir import write_text_atomic

_TENSORBOARD_WARNED = []


def log(message: str) -> None:
  """Prints on process 0 (one line per event, flushed so `tail -f` and CI logs show it)."""
  if jax.process_index() == 0:
    print(message, flush=True)


@contextlib.contextmanager
def timed(what: str):
  """Logs "<what> ..." before a slow phase and "<what>: done in N s" after it."""
  log(f"{what} ...")
  start = time.perf_counter()
  yield
  log(f"{what}: done in {time.perf_counter() - start:.1f} s")


def tensorboard_writer(folder: pathlib.Path, start_step: int):
  """A tensorboardX SummaryWriter in `folder` (events after `start_step` from an earlier,
  interrupted run are hidden by TensorBoard), or None when tensorboardX is not installed."""
  try:
    from tensorboardX import SummaryWriter  # noqa: PLC0415 (optional dependency)
  except ImportError as e:
    if not _TENSORBOARD_WARNED:
      _TENSORBOARD_WARNED.append(True)
      log(f"no TensorBoard files ({e}); metrics.jsonl only (pip install tensorboardX)")
    return None
  return SummaryWriter(str(folder), purge_step=start_step + 1 if start_step else None)


def _read_lines(path: pathlib.Path) -> list[str]:
  lines = []
  for line in path.read_text().splitlines():
    try:
      json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
      continue  # a line cut short by a kill: the steps it logged are redone after the restore
    lines.append(line)
  return lines


class MetricsLog:
  """Appends {"step": s, ...} JSON lines to <workdir>/metrics.jsonl on process 0, and the same
  scalars to TensorBoard event files in <workdir>/tensorboard when `tensorboard` is set.

  On resume from `start_step`, lines of later steps (done again after the restored checkpoint)
  are dropped first (rewriting the file atomically), so every step appears once.
  """

  def __init__(self, path, start_step: int, *, tensorboard: bool = True):
    self._file = self._writer = None
    if jax.process_index() != 0:
      return
    path = pathlib.Path(path)
    if path.exists():
      kept = [line for line in _read_lines(path) if json.loads(line)["step"] <= start_step]
      write_text_atomic(path, "".join(line + "\n" for line in kept))
    self._file = open(path, "a")
    if tensorboard:
      self._writer = tensorboard_writer(path.parent / "tensorboard", start_step)

  def write(self, step: int, values: Mapping, *, prefix: str = "") -> None:
    if self._file:
      scalars = {f"{prefix}{k}": float(v) for k, v in values.items()}
      self._file.write(json.dumps({"step": step, **scalars}) + "\n")
      self._file.flush()
      if self._writer is not None:
        for name, value in scalars.items():
          self._writer.add_scalar(name, value, step)
        self._writer.flush()

  def close(self) -> None:
    if self._file:
      self._file.close()
    if self._writer is not None:
      self._writer.close()


class Progress:
  """Formats "step N  terms  rate steps/s  eta s" lines for a run from start_step to total."""

  def __init__(self, start_step: int, total: int):
    self.start_step, self.total = start_step, total
    self._start = time.perf_counter()

  def restart(self, step: int) -> None:
    """Measures the rate from `step` on (after the first, compiling step)."""
    self.start_step, self._start = step, time.perf_counter()

  def line(self, step: int, metrics: Mapping) -> str:
    terms = "  ".join(f"{k} {float(v):.4g}" for k, v in metrics.items()
                      if "/" not in k and k != "grads_finite")
    if step <= self.start_step:  # no step timed yet (the first one also compiled)
      return f"step {step:6d}  {terms}"
    rate = (step - self.start_step) / max(time.perf_counter() - self._start, 1e-9)
    eta = (self.total - step) / max(rate, 1e-9)
    return f"step {step:6d}  {terms}  {rate:.2f} steps/s  eta {eta:6.0f}s"
