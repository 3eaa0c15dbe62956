"""Benchmark: speed of the procedural world's JAX ray caster (jaxrecon.data.synthetic) on the CPU.

Usage:
    python experiments/bench_synthetic.py [--sizes 128,256] [--supersample 1,2] [--views 8]

Prints a markdown table per (image size, supersampling): compile time of the per-view renderer
(jit lower + compile, measured once, no persistent cache) and the steady-state throughput in
images per second (median over repeats of rendering `--views` views of a random world along an
orbit, after compilation; each image is RGB + depth + labels).
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxrecon.data.synthetic import intrinsics_from_fov, orbit, random_world  # noqa: E402
from jaxrecon.data.synthetic.render import render_view  # noqa: E402


def bench(size, supersample, views, repeats):
  """(compile seconds, median seconds per image) for size x size renders."""
  world = random_world(0)
  k = intrinsics_from_fov(size, size, 60.0).astype(np.float32)
  poses = orbit(views, radius=6.0, height=3.0, arc_degrees=360).astype(np.float32)
  kwargs = dict(height=size, width=size, supersample=supersample)
  start = time.perf_counter()
  compiled = render_view.lower(world, k, poses[0], **kwargs).compile()
  compile_s = time.perf_counter() - start
  jax.block_until_ready(compiled(world, k, poses[0]))     # warm-up (allocations, thread pools)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    for pose in poses:
      jax.block_until_ready(compiled(world, k, pose))
    times.append((time.perf_counter() - start) / views)
  return compile_s, float(np.median(times))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", default="128,256")
  parser.add_argument("--supersample", default="1,2")
  parser.add_argument("--views", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  print(f"jax {jax.__version__}, backend {jax.default_backend()}, {os.cpu_count()} CPU cores")
  print("| size | rays/pixel (RGB) | compile s | ms / image | images / s |")
  print("|---|---|---|---|---|")
  for size in (int(s) for s in args.sizes.split(",")):
    for ss in (int(s) for s in args.supersample.split(",")):
      compile_s, per_image = bench(size, ss, args.views, args.repeats)
      print(f"| {size}x{size} | {ss * ss} | {compile_s:.2f} | {per_image * 1e3:.1f} | "
            f"{1.0 / per_image:.1f} |", flush=True)


if __name__ == "__main__":
  main()
