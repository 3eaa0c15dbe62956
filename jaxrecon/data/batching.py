"""The grain chain every training pipeline shares: seeded, endless, batched, resumable, and split
across processes by rows of the global batch."""
from __future__ import annotations

import grain
from absl import flags


class ProcessRows(grain.MapDataset):
  """This process's rows of every global batch of `parent`'s element stream.

  The global batch g holds elements [g * G, (g + 1) * G) of `parent`, G = rows * process_count;
  process p takes its `rows` consecutive ones, [g * G + p * rows, g * G + (p + 1) * rows). So p
  processes batching `rows` each feed the batch one process batching G would, row for row, and
  each element is computed by one process only (the mapping runs lazily, per index).
  """

  def __init__(self, parent: grain.MapDataset, rows: int, process_index: int,
               process_count: int):
    super().__init__(parent)
    if not 0 <= process_index < process_count:
      raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    self._rows, self._index, self._count = rows, process_index, process_count

  def __len__(self) -> int:
    return len(self._parent) // (self._rows * self._count) * self._rows

  def parent_index(self, index: int) -> int:
    """The index in `parent` of this dataset's element `index`."""
    batch, row = divmod(index, self._rows)
    return (batch * self._count + self._index) * self._rows + row

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    return self._parent[self.parent_index(index)]

  def __str__(self) -> str:
    return f"ProcessRows(rows={self._rows}, process {self._index} of {self._count})"


def batched_dataset(source, sample_fn, *, seed: int, shuffle: bool, batch_size: int,
                    worker_count: int, process_index: int = 0, process_count: int = 1):
  """The grain chain of every pipeline: seeded shuffle of `source`, endless repeat,
  sample_fn(element, rng) per element, this process's `batch_size` rows of each global batch
  (`ProcessRows`), optional worker processes. The iterator's position is checkpointable
  (get_state / set_state).

  Every process shuffles the same way and each element's rng depends on its index in the global
  stream only, so the global batch (process_count x batch_size rows, in process order) equals
  the batch of one process with batch_size x process_count: a run's samples do not depend on how
  many processes feed it.

  sample_fn must be picklable (a module-level function or a functools.partial of one) when
  worker_count > 0.
  """
  ds = grain.MapDataset.source(source).seed(seed)
  if shuffle:
    ds = ds.shuffle()
  ds = ds.repeat(None).random_map(sample_fn)
  if process_count > 1:
    ds = ProcessRows(ds, batch_size, process_index, process_count)
  ds = ds.batch(batch_size, drop_remainder=True).to_iter_dataset()
  if worker_count > 0:
    # grain's workers read absl flags; outside absl.app (scripts, notebooks) nobody parsed them.
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
  return ds
