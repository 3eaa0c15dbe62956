"""Wall-clock timing shared by the benchmarks: the median of repeated calls."""
import time

import numpy as np


def median_seconds(fn, repeats: int, warmup: bool = False) -> float:
  """Median wall time in seconds of `repeats` calls of fn(), which must block until its result is
  ready (jax.block_until_ready, torch.cuda.synchronize); warmup: one untimed call first (compile,
  allocations, thread pools). The median: one slow call (a GC pause) does not move it."""
  if warmup:
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return float(np.median(times))
