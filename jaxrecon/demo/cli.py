"""Command line of the demo: `python -m jaxrecon.demo [--seed 0] [--views 5] [--steps 300] ...`."""
from __future__ import annotations

import argparse
import functools
import time

import jax.numpy as jnp

from jaxrecon.demo.fit import FitConfig, evaluate_params, fit, init_params, to_floats
from jaxrecon.demo.scene import HEIGHT, WIDTH, make_problem
from jaxrecon.losses.registration import FORMS

_ROWS = (("rotation error, median over pairs (deg)", "rot_median_deg", "{:.3f}"),
         ("rotation error, max over pairs (deg)", "rot_max_deg", "{:.3f}"),
         ("camera centre error / scene size", "centre_rel", "{:.4f}"),
         ("depth abs rel (median-scaled, non-sky)", "depth_rel", "{:.4f}"))


def format_table(before, after):
  """Markdown table of the metrics of `evaluate` before and after the fit."""
  lines = ["| metric | before | after |", "|---|---:|---:|"]
  for name, key, fmt in _ROWS:
    lines.append(f"| {name} | {fmt.format(before[key])} | {fmt.format(after[key])} |")
  return "\n".join(lines)


def parse_args(argv=None):
  """Command-line flags (argv without the program name; default sys.argv[1:])."""
  parser = argparse.ArgumentParser(
      prog="python -m jaxrecon.demo",
      description="Fit cameras and depth maps of a small synthetic scene from weak supervision "
                  "(monocular pseudo-depth + noisy tracks) with jaxrecon's losses.")
  parser.add_argument("--seed", type=int, default=0, help="seed of the scene's randomness")
  parser.add_argument("--views", type=int, default=5, help="number of cameras (>= 2)")
  parser.add_argument("--steps", type=int, default=FitConfig.steps, help="Adam steps")
  parser.add_argument("--form", choices=FORMS, default="angular", help="registration loss form")
  parser.add_argument("--quiet", action="store_true", help="print only the final table")
  args = parser.parse_args(argv)
  if args.views < 2:
    parser.error("--views must be at least 2")
  if args.steps < 1:
    parser.error("--steps must be at least 1")
  return args


def main(argv=None):
  """Command-line entry point; returns the metrics.

  Args:
    argv: arguments (without the program name); default sys.argv[1:].
  Returns:
    dict with "before" and "after" (dicts of `evaluate`'s metrics, floats), "final" (the last
    step's loss diagnostics), "seconds" (wall time including compilation) and the settings.
  """
  args = parse_args(argv)
  log = (lambda *a: None) if args.quiet else functools.partial(print, flush=True)
  start = time.perf_counter()
  config = FitConfig(form=args.form, steps=args.steps)
  problem, truth = make_problem(args.seed, views=args.views)
  num_obs = int(jnp.sum(problem.visibility))
  log(f"scene: {args.views} views of {HEIGHT}x{WIDTH} px, "
      f"{float(jnp.mean(~truth.valid)):.0%} sky, {problem.tracks.shape[0]} tracks, "
      f"{num_obs} observations ({float(jnp.sum(truth.outlier)) / num_obs:.0%} outliers); "
      f"registration form {config.form!r}, {config.steps} steps")
  before = to_floats(evaluate_params(init_params(problem), problem, truth))
  params, final = fit(problem, truth, config, log=log)
  after = to_floats(evaluate_params(params, problem, truth))
  seconds = time.perf_counter() - start
  print(f"\n{format_table(before, after)}\n")
  print(f"form {config.form!r}, seed {args.seed}, {args.views} views, {config.steps} steps, "
        f"{seconds:.1f} s", flush=True)
  return {"before": before, "after": after, "final": final, "seconds": seconds,
          "form": config.form, "seed": args.seed, "views": args.views, "steps": config.steps}
