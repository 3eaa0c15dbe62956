"""The grain chain every training pipeline shares: sharded, seeded, endless, batched, resumable."""
from __future__ import annotations

import grain
from absl import flags


def batched_dataset(source, sample_fn, *, seed: int, shuffle: bool, batch_size: int,
                    worker_count: int, process_index: int = 0, process_count: int = 1):
  """The grain chain of every pipeline: this process's shard of `source`, seeded shuffle,
  endless repeat, sample_fn(element, rng) per element, fixed-size batches, optional worker
  processes. The iterator's position is checkpointable (get_state / set_state).

  sample_fn must be picklable (a module-level function or a functools.partial of one) when
  worker_count > 0.
  """
  ds = grain.MapDataset.source(source)
  if process_count > 1:
    ds = ds[process_index::process_count]
  ds = ds.seed(seed)
  if shuffle:
    ds = ds.shuffle()
  ds = ds.repeat(None).random_map(sample_fn)
  ds = ds.batch(batch_size, drop_remainder=True).to_iter_dataset()
  if worker_count > 0:
    # grain's workers read absl flags; outside absl.app (scripts, notebooks) nobody parsed them.
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
  return ds
