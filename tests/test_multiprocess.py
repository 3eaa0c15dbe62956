"""Multi-process training for real (#15): `python -m jaxrecon.main` as 2 local processes x 4 CPU
devices joined by jax.distributed (gloo collectives), against 1 process x 8 devices.

The end-to-end test trains a tiny Reliev3R config whose pseudo-label cache each run builds in its
workdir (so the 2-process run splits the scenes between its processes): the one-process run goes
to step 4 uninterrupted; the 2-process run stops at its checkpoint of step 2 (--config.steps=2),
then both processes are started again with steps=4 and resume. With warmup_steps=1 the learning
rate of steps 1-2 is the same for steps=2 and steps=4 (0, then the peak), so the resumed run must
reproduce the uninterrupted one: the parameters of steps 2 and 4 are compared with the one-process
run's. Cheap checks of the pieces (global batch, cache split) come first.
"""
import json
import pathlib
import subprocess
import sys

import grain
import jax
import ml_collections
import numpy as np
import pytest
from main_runs import REPO, tiny_flags
from multiprocess_runs import describe, process_env, run_processes

from jaxrecon.data.batching import batched_dataset
from jaxrecon.data.cache import PROVENANCE, cache_scenes
from jaxrecon.reliev3r import task as reliev3r
from jaxrecon.errors import UserError
from jaxrecon.train import multihost
from jaxrecon.train.checkpoint import Checkpointer, check_data_positions

# The run's own cache: 3 synthetic scenes with simulated tracks (no SIFT), 2 train / 1 held out.
PREPARE = {"data.prepare.tracker": "simulated", "data.prepare.synthetic.num_scenes": 3,
           "data.prepare.synthetic.num_views": 4, "data.prepare.synthetic.height": 40,
           "data.prepare.synthetic.width": 40}
GLOBAL_BATCH = 8  # one sample per device


def _flags(steps: int, batch_size: int) -> list[str]:
  fields = {**{k.replace(".", "__"): v for k, v in PREPARE.items()},
            "steps": steps, "pipeline__batch_size": batch_size}
  return ["-m", "jaxrecon.main", "--config=configs/reliev3r.py", *tiny_flags(**fields)]


def _sample(element, rng):
  return {"x": np.float32(element) + np.float32(rng.uniform()), "id": np.int32(element)}


def test_two_processes_feed_the_one_process_batch():
  """Process p's batches are rows [p * b, (p + 1) * b) of the one-process batch of 2 b: same
  shuffle, same per-element randomness, no element computed twice. Also after a restore."""
  source = list(range(11))
  chain = dict(seed=3, shuffle=True, worker_count=0)
  one = iter(batched_dataset(source, _sample, batch_size=6, **chain))
  parts = [iter(batched_dataset(source, _sample, batch_size=3, process_index=p, process_count=2,
                                **chain)) for p in range(2)]
  for _ in range(5):  # several epochs of 11 elements
    want = next(one)
    got = [next(part) for part in parts]
    for key in want:
      np.testing.assert_array_equal(np.concatenate([g[key] for g in got]), want[key])
  # A process restored from its iterator state continues with its own rows.
  state = parts[1].get_state()
  want = next(parts[1])
  again = iter(batched_dataset(source, _sample, batch_size=3, process_index=1, process_count=2,
                               **chain))
  again.set_state(state)
  np.testing.assert_array_equal(next(again)["x"], want["x"])
  assert isinstance(again, grain.DatasetIterator)


def test_cache_scenes_are_split_between_processes(tmp_path):
  """Each process writes only its share of the scenes and only process 0 the provenance; the
  union is every scene once. Process 1 runs first: it must not write provenance.json."""
  calls = []

  def job(name):
    def run():
      calls.append(name)
      return {"x": np.zeros(2)}
    return run
  jobs = [(f"scene{i}", job(f"scene{i}")) for i in range(5)]
  synced = []
  for index in (1, 0):
    report = cache_scenes(jobs, tmp_path, provenance={"a": 1}, progress=False,
                          process_index=index, process_count=2,
                          synchronize=lambda index=index: synced.append(index))
    assert report.written == [f"scene{i}" for i in range(index, 5, 2)]
    assert (tmp_path / PROVENANCE).exists() == (index == 0)
  assert synced == [1, 0]
  assert sorted(calls) == [f"scene{i}" for i in range(5)]
  assert sorted(p.stem for p in tmp_path.glob("*.npz")) == sorted(calls)


def test_a_checkpoint_of_another_process_count_is_refused_in_one_line(tmp_path):
  data = tmp_path / "4" / "data"
  data.mkdir(parents=True)
  for i in range(2):
    (data / f"process_{i}-of-2.json").write_text("{}")
  with pytest.raises(UserError, match=r"saved by 2 process\(es\).*this run has 1; resume it "
                                      r"with --num_processes=2"):
    check_data_positions(tmp_path / "4")
  (data / "process_0-of-1.json").write_text("{}")
  check_data_positions(tmp_path / "4")   # this run's own file: fine


def test_incomplete_multiprocess_settings_are_one_line_errors():
  assert not multihost.initialize()      # nothing given: a single process, nothing to connect
  with pytest.raises(UserError, match="--num_processes, --process_id not set"):
    multihost.initialize(coordinator_address="localhost:1")
  with pytest.raises(UserError, match=r"--process_id=2: must be in \[0, --num_processes=2\)"):
    multihost.initialize(coordinator_address="localhost:1", num_processes=2, process_id=2)
  parts = [multihost.share(range(7), i, 3) for i in range(3)]
  assert sorted(sum(parts, [])) == list(range(7)) and parts[1] == [1, 4]


def _params(workdir: pathlib.Path, step: int):
  """The parameters of `workdir`'s checkpoint of `step` (restored in this process)."""
  config = ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text()))
  _, _, init_state = reliev3r.build(config)
  checkpointer = Checkpointer(workdir / "checkpoints", async_save=False)
  try:
    return checkpointer.restore(jax.eval_shape(init_state), step=step).params
  finally:
    checkpointer.close()


def _fresh_params(workdir: pathlib.Path):
  config = ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text()))
  return reliev3r.build(config)[2]().params


def _files(folder: pathlib.Path) -> list[str]:
  return sorted(p.name for p in folder.iterdir())


@pytest.mark.slow
def test_two_processes_train_and_resume_like_one(tmp_path, assert_same_updates):
  one_dir, two_dir = tmp_path / "one", tmp_path / "two"
  # One after the other: a third process compiling beside the two would make them reach the first
  # collective further apart (gloo gives up after 30 s, see multiprocess_runs.process_env).
  reference = subprocess.run([sys.executable, *_flags(4, GLOBAL_BATCH), f"--workdir={one_dir}"],
                             cwd=REPO, env=process_env(8), capture_output=True, text=True,
                             timeout=300)
  assert reference.returncode == 0, f"one process:\n{reference.stderr[-4000:]}"
  # The 2-process runs keep a compile cache per process: the relaunch loads what the first launch
  # compiled, in both processes.
  caches = str(tmp_path / "compile_caches")
  first = run_processes([*_flags(2, GLOBAL_BATCH // 2), f"--workdir={two_dir}"],
                        num_processes=2, devices_each=4, timeout=300, cache=caches)
  assert all(r.returncode == 0 for r in first), describe(first)
  out0 = first[0].stdout
  assert "fresh, step 0 of 2" in out0 and "8 devices" in out0, describe(first)
  assert "step " not in first[1].stdout, describe(first)  # only process 0 logs
  # The cache's 3 scenes split between the processes: 2 by process 0, 1 by process 1.
  assert "process 0 of 2: cache" in first[0].stderr and "2 written" in first[0].stderr
  assert "process 1 of 2: cache" in first[1].stderr and "1 written" in first[1].stderr
  # One checkpoint folder for both processes, with one data position per process.
  assert _files(two_dir / "checkpoints") == ["2"]
  assert _files(two_dir / "checkpoints" / "2" / "data") == [
      "commit_success.txt", "process_0-of-2.json", "process_1-of-2.json"]

  resumed = run_processes([*_flags(4, GLOBAL_BATCH // 2), f"--workdir={two_dir}"],
                          num_processes=2, devices_each=4, timeout=300, cache=caches)
  assert all(r.returncode == 0 for r in resumed), describe(resumed)
  assert "workdir:2, step 2 of 4" in resumed[0].stdout, describe(resumed)
  assert _files(two_dir / "checkpoints") == ["2", "4"]
  assert _files(one_dir / "checkpoints") == ["2", "4"]
  # Same losses step by step (metrics.jsonl of process 0 only)...
  logs = [[json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
          for d in (one_dir, two_dir)]
  assert [m["step"] for m in logs[1]] == [1, 2, 3, 4]
  np.testing.assert_allclose([m["loss"] for m in logs[1]], [m["loss"] for m in logs[0]],
                             rtol=1e-5)
  # ... and the same parameters: the updates from the fresh state agree per leaf to 1e-3 of
  # their norm (conftest: float32 all-reduce order, amplified by Adam near its eps).
  fresh = _fresh_params(one_dir)
  for step in (2, 4):
    assert_same_updates(fresh, _params(one_dir, step), _params(two_dir, step))
