"""Counts XLA compilations, so a training loop can say when a step compiled again.

    counter = CompileCounter()
    with counter:
      before = counter.count
      state, metrics = step(state, batch)
      if counter.count > before: ...   # this call compiled (shapes, dtypes or shardings changed)

A recompiled train step costs as much as the first step (tens of seconds at paper size) and
usually means a shape, dtype, weak type or sharding of the state or batch changed between steps.
The counter listens to jax's backend-compile event (one per program the in-memory jit caches
missed: jax records it for an XLA compilation and for a program loaded from the persistent
compile cache alike, so a run with JAX_COMPILATION_CACHE_DIR set is still told) and counts only
events on the thread that entered it: Orbax saves checkpoints on its own threads, and their work
is not the loop's.
"""
from __future__ import annotations

import threading

import jax

# jax records this event once per backend compilation (jax._src.dispatch.BACKEND_COMPILE_EVENT;
# a public name, stable across the jax versions we support).
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


class CompileCounter:
  """Context manager: `count` is the number of XLA compilations on the entering thread while it
  is active (it keeps its value after exit)."""

  def __init__(self):
    self.count = 0
    self._thread = None

  def _listener(self, event: str, duration_secs: float, **kwargs) -> None:
    del duration_secs, kwargs
    if event == BACKEND_COMPILE_EVENT and threading.current_thread() is self._thread:
      self.count += 1

  def __enter__(self) -> "CompileCounter":
    self._thread = threading.current_thread()
    jax.monitoring.register_event_duration_secs_listener(self._listener)
    return self

  def __exit__(self, *exc) -> None:
    jax.monitoring.unregister_event_duration_listener(self._listener)
