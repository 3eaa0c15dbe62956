"""The Reliev3R demo trained on SIFT vs XFeat tracks: held-out metrics over 3 seeds.

    python experiments/xfeat_reliev3r.py [--out=runs/xfeat_reliev3r] [--trackers=sift,xfeat]
        [--seeds=0,1,2] [--steps=600] [--scenes=168] [--md=experiments/xfeat_reliev3r.md]

Everything goes through the commands users run, so the comparison is the demo as shipped with one
setting changed:
  1. per tracker, `python -m jaxrecon.prepare --config=configs/prepare.py:synthetic --out=C
     --config.tracker=T` with the fields where the demo's prepare settings differ from that variant
     passed as overrides (so the cache is the demo's cache, bar the tracker);
  2. per tracker and seed, `python -m jaxrecon.main --config=configs/reliev3r.py --workdir=W
     --config.data.cache=C --config.seed=S --config.pipeline.seed=S` (seed of the initialisation
     and of the data order); its final held-out evaluation (the "eval/" row of metrics.jsonl,
     the mean over scenes that `--mode=eval` also writes) is read.
The same held-out scenes (the last 8 of the cache, sorted by name) are evaluated for both trackers:
the scenes are rendered from the same procedural seed, only their tracks differ. Reported per
tracker: mean +- std over the seeds of held-out depth rel, tau, AUC@30, RRA@30, RTA@30, ATE, and
the tracks the cache holds. Rows are appended to <out>/rows.json as they finish (a re-run skips
finished runs), then the table is written to --md with this command line. Logs: <out>/log_*.txt.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import ablation_table  # noqa: E402
LOWER_IS_BETTER = ("depth_rel", "ate")
READING = "## Reading"
METRICS = (("depth_rel", "depth rel", ".3f"), ("depth_tau", "tau@1.03 (%)", ".1f"),
           ("auc30", "AUC@30", ".1f"), ("rra30", "RRA@30", ".1f"), ("rta30", "RTA@30", ".1f"),
           ("ate", "ATE", ".3f"))


def flatten(d: dict, prefix: str = "") -> dict:
  out = {}
  for key, value in d.items():
    if isinstance(value, dict):
      out.update(flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def prepare_overrides(tracker: str) -> list[str]:
  """--config.* flags that turn configs/prepare.py:synthetic into the demo's prepare settings."""
  sys.path.insert(0, str(ROOT))
  from configs import prepare, reliev3r
  base = flatten(prepare.get_config("synthetic").to_dict())
  demo = flatten(reliev3r.get_config("demo").data.prepare.to_dict())
  demo["tracker"] = tracker
  flags = []
  for key, value in sorted(demo.items()):
    if key in base and base[key] != value:
      flags.append(f"--config.{key}={value}")
  return flags


def run(cmd: list[str], log: pathlib.Path) -> float:
  start = time.perf_counter()
  with open(log, "w") as f:
    f.write("$ " + " ".join(cmd) + "\n")
    f.flush()
    done = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
  if done.returncode:
    raise SystemExit(f"{cmd[2]} failed (exit {done.returncode}); see {log}")
  return time.perf_counter() - start


def cache_stats(cache: pathlib.Path) -> dict:
  tracks, lengths = [], []
  for path in sorted(cache.glob("*.npz")):
    with np.load(path) as z:
      vis = np.asarray(z["visibility"])
      mask = vis.sum(-1) >= 2
      tracks.append(int(mask.sum()))
      lengths.append(float(vis[mask].sum(-1).mean()) if mask.any() else 0.0)
  return dict(tracks_per_scene=float(np.mean(tracks)), mean_track_length=float(np.mean(lengths)))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default=str(ROOT / "runs" / "xfeat_reliev3r"))
  parser.add_argument("--trackers", default="sift,xfeat")
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--steps", type=int, default=0, help="0: the demo's own")
  parser.add_argument("--scenes", type=int, default=0, help="0: the demo's own (168)")
  parser.add_argument("--jobs", type=int, default=1, help="runs side by side")
  parser.add_argument("--md", default=str(ROOT / "experiments" / "xfeat_reliev3r.md"))
  args = parser.parse_args()
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  rows_path = out / "rows.json"
  rows = json.loads(rows_path.read_text()) if rows_path.exists() else []
  py = sys.executable
  trackers = args.trackers.split(",")
  seeds = [int(s) for s in args.seeds.split(",")]
  caches = {t: out / f"cache_{t}" for t in trackers}

  def prepare(tracker):
    flags = prepare_overrides(tracker)
    if args.scenes:
      flags.append(f"--config.synthetic.num_scenes={args.scenes}")
    if (caches[tracker] / "provenance.json").exists():
      return None
    return run([py, "-m", "jaxrecon.prepare", "--config=configs/prepare.py:synthetic",
                f"--out={caches[tracker]}", *flags], out / f"log_prepare_{tracker}.txt")

  def train(tracker, seed):
    workdir = out / f"{tracker}_s{seed}"
    cmd = [py, "-m", "jaxrecon.main", "--config=configs/reliev3r.py", f"--workdir={workdir}",
           f"--config.data.cache={caches[tracker]}", f"--config.seed={seed}",
           f"--config.pipeline.seed={seed}"]
    if args.steps:
      cmd += [f"--config.steps={args.steps}",
              f"--config.optim.warmup_steps={min(50, args.steps // 4)}"]
    train_s = run(cmd, out / f"log_{tracker}_s{seed}.txt")
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    final = json.loads([line for line in lines if '"eval/' in line][-1])
    metrics = {k[5:]: v for k, v in final.items() if k.startswith("eval/")}
    return dict(tracker=tracker, seed=seed, train_s=train_s, **cache_stats(caches[tracker]),
                **{k: metrics[k] for k, _, _ in METRICS if k in metrics})

  # --jobs > 1 runs the caches, then the training runs, side by side (an accelerator with room
  # for several tiny runs); times are then those of concurrent runs.
  with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
    prepare_s = dict(zip(trackers, pool.map(prepare, trackers)))
    todo = [(t, s) for t in trackers for s in seeds
            if not any(r["tracker"] == t and r["seed"] == s for r in rows)]
    for row in pool.map(lambda ts: train(*ts), todo):
      row["prepare_s"] = prepare_s[row["tracker"]]
      rows.append(row)
      rows_path.write_text(json.dumps(rows, indent=1))
  write_table(rows, pathlib.Path(args.md), out)


def write_table(rows: list, md: pathlib.Path, out: pathlib.Path) -> None:
  cmd = "python experiments/xfeat_reliev3r.py " + " ".join(sys.argv[1:])
  lines = ["# The Reliev3R demo trained on SIFT vs XFeat tracks\n",
           f"Produced by `{cmd}` ({platform.node()}, {os.cpu_count()} CPU cores; jax devices: "
           f"{_devices()}). Mean +- std over seeds {sorted({r['seed'] for r in rows})}; held-out "
           "scenes of the cache (the same rendered scenes for both trackers).\n",
           "| tracker | seeds | tracks / scene | mean track length | "
           + " | ".join(name for _, name, _ in METRICS) + " | train s |",
           "|---" * (5 + len(METRICS)) + "|"]
  for tracker in dict.fromkeys(r["tracker"] for r in rows):
    sub = [r for r in rows if r["tracker"] == tracker]
    cells = [tracker, str(len(sub)), f"{sub[0]['tracks_per_scene']:.0f}",
             f"{sub[0]['mean_track_length']:.2f}"]
    for key, _, fmt in METRICS:
      vals = np.array([r[key] for r in sub if key in r], float)
      cells.append(f"{vals.mean():{fmt}} +- {vals.std(ddof=1) if len(vals) > 1 else 0:{fmt}}"
                   if len(vals) else "-")
    cells.append(f"{np.mean([r['train_s'] for r in sub]):.0f}")
    lines.append("| " + " | ".join(cells) + " |")
  trackers = list(dict.fromkeys(r["tracker"] for r in rows))
  if len(trackers) > 1:
    paired = [dict(r, variant=r["tracker"]) for r in rows]
    lines += ["", "Paired by seed (a seed fixes the initialisation and the data order of both "
              "runs): the per-seed difference, its mean and 95 % Student-t interval; resolved "
              "(better / worse) only when the interval excludes 0.", "",
              ablation_table.comparisons(paired, [(t, trackers[0]) for t in trackers[1:]],
                                         [(k, name, fmt, k not in LOWER_IS_BETTER)
                                          for k, name, fmt in METRICS])]
  text = "\n".join(lines) + "\n"
  # Hand-written text below the marker survives a re-run.
  old = md.read_text() if md.exists() else ""
  if READING in old:
    text += "\n" + old[old.index(READING):]
  md.write_text(text)
  (out / "table.md").write_text(text)
  print(text)


def _devices() -> str:
  try:
    out = subprocess.run([sys.executable, "-c", "import jax; print(jax.devices()[0].device_kind,"
                          " len(jax.devices()))"], capture_output=True, text=True, timeout=120)
    return out.stdout.strip() or "?"
  except Exception:  # the table still gets written
    return "?"


if __name__ == "__main__":
  main()
