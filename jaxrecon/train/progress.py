"""Console progress and the metrics.jsonl file of a run (both on process 0 only)."""
from __future__ import annotations

import json
import pathlib
import time
from typing import Mapping

import jax


def log(message: str) -> None:
  """Prints on process 0 (one line per event, flushed so `tail -f` and CI logs show it)."""
  if jax.process_index() == 0:
    print(message, flush=True)


class MetricsLog:
  """Appends {"step": s, ...} JSON lines to <workdir>/metrics.jsonl on process 0.

  On resume from `start_step`, lines of later steps (done again after the restored checkpoint)
  are dropped first, so every step appears once.
  """

  def __init__(self, path, start_step: int):
    self._file = None
    if jax.process_index() != 0:
      return
    path = pathlib.Path(path)
    if path.exists():
      kept = [line for line in path.read_text().splitlines()
              if json.loads(line)["step"] <= start_step]
      path.write_text("".join(line + "\n" for line in kept))
    self._file = open(path, "a")

  def write(self, step: int, values: Mapping, *, prefix: str = "") -> None:
    if self._file:
      self._file.write(json.dumps({"step": step, **{f"{prefix}{k}": float(v)
                                                      for k, v in values.items()}}) + "\n")
      self._file.flush()

  def close(self) -> None:
    if self._file:
      self._file.close()


class Progress:
  """Formats "step N  terms  rate steps/s  eta s" lines for a run from start_step to total."""

  def __init__(self, start_step: int, total: int):
    self.start_step, self.total = start_step, total
    self._start = time.perf_counter()

  def line(self, step: int, metrics: Mapping) -> str:
    rate = (step - self.start_step) / max(time.perf_counter() - self._start, 1e-9)
    eta = (self.total - step) / max(rate, 1e-9)
    terms = "  ".join(f"{k} {float(v):.4g}" for k, v in metrics.items()
                      if "/" not in k and k != "grads_finite")
    return f"step {step:6d}  {terms}  {rate:.2f} steps/s  eta {eta:6.0f}s"
