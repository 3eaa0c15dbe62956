"""Does a new scene reuse the fit's compiled LM program? Size buckets vs exact shapes (issue #12).

Usage:
  python experiments/bench_fit_buckets.py --base ../base [--rounds 2] [--data ../shared/data]
      [--out experiments/bench_fit_buckets.md]

`--base` is a checkout of the code to compare with (e.g. `git worktree add ../base <commit>`);
this tree is "new". A family is a sequence of different scenes of one kind and size, as a user
reconstructing several captures of one rig would run them:
  * synth_orbit8_worlds: 8-view orbits (the synth_orbit8 case's path and camera) around the
    procedural worlds of seeds 0-3;
  * temple_windows10: templeRing windows of 10 consecutive views starting at views 0, 3, 6, 9.
For each family, round and code version, the scenes run in order, each in a fresh process
(`experts.track_images` + `fit.fit_scene`, default settings) with the persistent compilation cache
the commands use (`cli.use_compile_cache`) in a folder that starts empty; then the last scene runs
once more (a repeat: the cache holds its program under both versions). Versions alternate within
a round. Per run: the fit's wall time (`FitResult.fit_seconds`: the refinement, not the global
initialisation), its XLA compile seconds (jax's backend_compile events) and whether its programs
came from the cache (cache-hit events over compile requests).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile

import numpy as np

import ablation_table

ROOT = pathlib.Path(__file__).resolve().parent.parent
FAMILIES = ("synth_orbit8_worlds", "temple_windows10")


def family_scenes(name: str, data: str):
  """[(scene name, images (v, h, w, 3) uint8, intrinsics (v, 3, 3))] of a family."""
  from jaxrecon.evaluate import fit_cases
  if name == "synth_orbit8_worlds":
    from jaxrecon.data import synthetic as syn
    h, w = fit_cases.SYNTH_SIZE
    poses = syn.orbit(8, radius=fit_cases.ORBIT_RADIUS, height=fit_cases.ORBIT_HEIGHT,
                      arc_degrees=360.0)
    k = np.tile(syn.intrinsics_from_fov(h, w, fit_cases.SYNTH_FOV_DEGREES), (8, 1, 1))
    out = []
    for seed in range(4):
      world = syn.random_world(seed, mirror_prob=0.0)
      images, _, _ = syn.render(world, k, poses, h, w)
      out.append((f"world {seed}", np.asarray(images), k))
    return out
  case = fit_cases.make_case("temple_all", data)
  return [(f"views {s}-{s + 9}", case.images[s:s + 10], case.intrinsics[s:s + 10])
          for s in (0, 3, 6, 9)]


def worker(scene_file: str, out_file: str):
  """One timed run (in its own process; the cache folder comes in JAXRECON_COMPILE_CACHE)."""
  import collections
  import jax.monitoring as monitoring
  from jaxrecon import cli
  cli.use_compile_cache()
  from jaxrecon.experts import track_images
  from jaxrecon.fit import fit_scene
  data = np.load(scene_file)
  tracks = track_images(list(data["images"]), data["intrinsics"])
  events, seconds = collections.Counter(), collections.Counter()
  monitoring.register_event_listener(lambda e, **kw: events.update([e.split("/")[-1]]))
  monitoring.register_event_duration_secs_listener(
      lambda e, d, **kw: seconds.update({e.split("/")[-1]: d}))
  result = fit_scene(tracks.pixels, tracks.visible & tracks.mask[:, None], data["intrinsics"])
  json.dump({"fit_seconds": result.fit_seconds, "init_seconds": result.init_seconds,
             "registered": int(result.registered.sum()),
             "compile_seconds": seconds.get("backend_compile_duration", 0.0),
             "cache_hits": events.get("cache_hits", 0),
             "compile_requests": events.get("compile_requests_use_cache", 0)},
            open(out_file, "w"))


def run_once(tree: str, scene_file: pathlib.Path, cache: pathlib.Path, timeout: float) -> dict:
  env = dict(os.environ, PYTHONPATH=str(tree), JAXRECON_COMPILE_CACHE=str(cache))
  out = scene_file.with_suffix(".out.json")
  proc = subprocess.run([sys.executable, __file__, "--worker", str(scene_file), str(out)],
                        env=env, capture_output=True, text=True, timeout=timeout)
  if proc.returncode:
    raise RuntimeError(f"worker failed ({tree}): {proc.stderr.strip().splitlines()[-1:]}")
  return json.loads(out.read_text())


def table(results: dict) -> str:
  lines = ["| family | scene | run | base fit s | new fit s | base compile s | new compile s | "
           "base cached | new cached |", "|---|---|---|---|---|---|---|---|---|"]
  for family, rows in results.items():
    for row in rows:
      cells = [family, row["scene"], row["run"]]
      for key, fmt in (("fit_seconds", ".2f"), ("compile_seconds", ".2f")):
        for version in ("base", "new"):
          vals = np.array(row[version][key])
          cells.append(f"{vals.mean():{fmt}} +- {vals.std(ddof=1) if len(vals) > 1 else 0:{fmt}}")
      for version in ("base", "new"):
        hits = row[version]["cache_hits"]
        reqs = row[version]["compile_requests"]
        cells.append(", ".join(f"{h}/{r}" for h, r in zip(hits, reqs)))
      lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
  parser.add_argument("--base", help="checkout of the code to compare with")
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument("--families", default=",".join(FAMILIES))
  parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
  parser.add_argument("--timeout", type=float, default=600.0)
  parser.add_argument("--out", default=str(ROOT / "experiments" / "bench_fit_buckets.md"))
  parser.add_argument("--report-only", action="store_true",
                      help="rewrite the table from the .json beside --out (no runs)")
  args = parser.parse_args()
  if args.worker:
    return worker(*args.worker)
  out = pathlib.Path(args.out)
  if args.report_only:
    saved = json.loads(out.with_suffix(".json").read_text())
    ablation_table.write_block(out, saved["header"] + table(saved["results"]))
    return
  if not args.base or not pathlib.Path(args.base, "jaxrecon").is_dir():
    raise SystemExit("--base: a checkout of the code to compare with (holding jaxrecon/)")
  trees = {"base": str(pathlib.Path(args.base).resolve()), "new": str(ROOT)}
  commits = {v: subprocess.run(["git", "-C", t, "rev-parse", "--short", "HEAD"], text=True,
                               capture_output=True).stdout.strip() or "?" for v, t in trees.items()}
  results = {}
  with tempfile.TemporaryDirectory(prefix="bench_buckets_") as tmp:
    tmp = pathlib.Path(tmp)
    for family in args.families.split(","):
      scenes = family_scenes(family, args.data)
      files = []
      for i, (_, images, k) in enumerate(scenes):
        files.append(tmp / f"{family}_{i}.npz")
        np.savez(files[-1], images=images, intrinsics=k)
      order = list(range(len(scenes))) + [len(scenes) - 1]
      rows = [{"scene": scenes[i][0], "run": "first" if n == 0 else
               ("repeat" if n == len(scenes) else "new scene"),
               **{v: {"fit_seconds": [], "compile_seconds": [], "cache_hits": [],
                      "compile_requests": []} for v in trees}} for n, i in enumerate(order)]
      for round_ in range(args.rounds):
        versions = list(trees) if round_ % 2 == 0 else list(trees)[::-1]
        for version in versions:
          cache = tmp / f"cache_{family}_{version}_{round_}"
          for n, i in enumerate(order):
            got = run_once(trees[version], files[i], cache, args.timeout)
            for key in rows[n][version]:
              rows[n][version][key].append(got[key])
            print(family, round_, version, scenes[i][0], rows[n]["run"], got, flush=True)
      results[family] = rows
  load = " ".join(f"{x:.1f}" for x in os.getloadavg())
  cpu = f"{os.cpu_count()} CPU cores, Python {platform.python_version()}"
  command = "python experiments/bench_fit_buckets.py " + " ".join(sys.argv[1:])
  when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  header = (f"Generated by `{command}` on {when} ({cpu}, load average after {load}); protocol "
            f"in the script's docstring. base = commit {commits['base']}, new = the working tree "
            f"at {commits['new']}. Seconds, mean +- sd over {args.rounds} rounds; cached = cache "
            f"hits / compile requests of the fit, per round.\n\n")
  if not out.exists():
    out.write_text("# Does a new scene reuse the fit's compiled LM program? (issue #12)\n\n"
                   "<!-- RESULTS START -->\n<!-- RESULTS END -->\n")
  ablation_table.write_block(out, header + table(results))
  out.with_suffix(".json").write_text(json.dumps({"header": header, "results": results},
                                                 indent=1))
  print(header + table(results))


if __name__ == "__main__":
  main()
