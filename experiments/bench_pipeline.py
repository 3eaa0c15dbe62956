"""Benchmark: grain pipeline throughput (samples/s) on cached synthetic scenes.

    python experiments/bench_pipeline.py [--scenes 4] [--batches 50]

Caches a few scenes of the embedded world (simulated tracks and monocular depth; rendering time is
not part of the measurement), then times the pipeline with the default PipelineConfig (4 views,
64x64, 256 tracks, batch 2) for 0 and 2 worker processes, after a warm-up batch.
"""
import argparse
import pathlib
import sys
import tempfile
import time

from jaxrecon.data.cache import cache_scenes
from jaxrecon.reliev3r.pipeline import NpzSource, PipelineConfig, make_dataset
from jaxrecon.reliev3r.records import build_jobs, default_expert_settings


def cached_scenes(folder, num_scenes):
  settings = {**default_expert_settings(), "source": "synthetic", "tracker": "simulated",
              "depth_expert": "simulated",
              "synthetic": dict(num_scenes=num_scenes, seed=0, num_views=8, height=128,
                                width=128, path="orbit")}
  cache_scenes(build_jobs(settings), folder, provenance=settings, progress=False)
  return sorted(pathlib.Path(folder).glob("*.npz"))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--scenes", type=int, default=4)
  parser.add_argument("--batches", type=int, default=50)
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    paths = cached_scenes(tmp, args.scenes)
    print("| workers | batch | samples/s |\n|---|---|---|")
    for workers in (0, 2):
      config = PipelineConfig(worker_count=workers)
      it = iter(make_dataset(NpzSource(paths), config))
      next(it)
      start = time.perf_counter()
      for _ in range(args.batches):
        next(it)
      rate = args.batches * config.batch_size / (time.perf_counter() - start)
      print(f"| {workers} | {config.batch_size} | {rate:.0f} |")
      sys.stdout.flush()


if __name__ == "__main__":
  main()
