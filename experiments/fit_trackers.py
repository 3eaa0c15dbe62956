"""Per-scene fitting with SIFT vs XFeat vs XFeat + LighterGlue tracks on the real fit cases.

    python experiments/fit_trackers.py [--cases=temple_all,temple_every3,lego,icl_livingroom]
        [--trackers=sift,xfeat,xfeat_lighterglue] [--seeds=0,1,2] [--out=experiments/fit_trackers.md]

For each case of `jaxrecon.evaluate.fit_cases` and tracker: `experts.track_images(images, K,
tracker=...)` then `fit.fit_scene`, once per seed (the seed of the matcher's and the fit's RANSAC:
the only randomness; XFeat and SIFT features are deterministic). Reported per case and tracker,
mean and spread (min..max) over the seeds: tracks, mean track length, registered views, median
rotation error after alignment (sim(3) of the centres; degrees) and AUC@30 over the registered
views with ground truth, tracking and fitting wall time (2 CPU cores shared with other jobs).
Writes the markdown table (with this command line) to --out and the raw rows to <out>.json.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import platform
import subprocess
import sys
import time
import warnings

import numpy as np

from jaxrecon import experts
from jaxrecon.evaluate import fit_cases
from jaxrecon.evaluate.metrics import align_cameras_sim3, pose_auc, relative_pose_errors
from jaxrecon.fit import FitSettings, FitWarning, fit_scene

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


def rotation_median_deg(pred, gt):
  """Median rotation error (degrees) after sim(3) alignment of the camera centres."""
  aligned = align_cameras_sim3(pred, gt)
  rel = aligned[:, :3, :3] @ np.swapaxes(gt[:, :3, :3], -1, -2)
  chord = np.linalg.norm(rel - np.eye(3), axis=(1, 2))
  return float(np.median(np.degrees(2 * np.arcsin(np.clip(chord / (2 * np.sqrt(2)), 0, 1)))))


def run(case, tracker, seed):
  clock = time.perf_counter()
  tracks = experts.track_images(list(case.images), case.intrinsics,
                                experts.MatcherSettings(seed=seed), tracker=tracker)
  track_s = time.perf_counter() - clock
  vis = tracks.visible & tracks.mask[:, None]
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", FitWarning)
    result = fit_scene(tracks.pixels, vis, case.intrinsics, settings=FitSettings(seed=seed))
  reg = result.registered & np.all(np.isfinite(case.cam_from_world), axis=(1, 2))
  row = dict(case=case.name, tracker=tracker, seed=seed, tracks=int(tracks.mask.sum()),
             length=float(vis[tracks.mask].sum(1).mean()), registered=int(result.registered.sum()),
             views=len(case.images), track_s=track_s,
             fit_s=result.init_seconds + result.fit_seconds, warnings=list(result.warnings))
  if reg.sum() >= 3:
    rot, trans = relative_pose_errors(result.cam_from_world[reg], case.cam_from_world[reg])
    row.update(rot_med=rotation_median_deg(result.cam_from_world[reg], case.cam_from_world[reg]),
               auc30=float(pose_auc(rot, trans, 30)))
  return row


def summary(rows, key):
  values = [r[key] for r in rows if key in r]
  if not values:
    return "-"
  fmt = "{:.0f}" if key in ("tracks", "registered") else "{:.3f}" if key == "rot_med" else "{:.2f}"
  mean = fmt.format(np.mean(values))
  return mean if min(values) == max(values) else (
      f"{mean} ({fmt.format(min(values))}..{fmt.format(max(values))})")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cases", default="temple_all,temple_every3,lego,icl_livingroom")
  parser.add_argument("--trackers", default="sift,xfeat,xfeat_lighterglue")
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--out", default=str(pathlib.Path(__file__).with_suffix(".md")))
  args = parser.parse_args()
  seeds = [int(s) for s in args.seeds.split(",")]
  rows = []
  for name in args.cases.split(","):
    case = fit_cases.make_case(name, SHARED)
    for tracker in args.trackers.split(","):
      for seed in seeds:
        rows.append(run(case, tracker, seed))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "warnings"}), flush=True)
  out = pathlib.Path(args.out)
  out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
  commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
  lines = ["# Per-scene fitting with SIFT vs XFeat tracks (`experiments/fit_trackers.py`)", "",
           "Command: `python " + " ".join(["experiments/fit_trackers.py"] + sys.argv[1:]) + "`",
           f"(jaxrecon {commit}, Python {platform.python_version()}, 2 CPU cores shared with "
           "other jobs: times are rough). Mean over the seeds, (min..max) where they differ; "
           "rotation error after sim(3) alignment, AUC@30 over the registered views with ground "
           "truth; '-' where fewer than 3 views are registered.", "",
           "| case | tracker | tracks | mean length | registered | rot med (deg) | AUC@30 | "
           "track s | fit s |", "|---|---|---|---|---|---|---|---|---|"]
  for name in args.cases.split(","):
    for tracker in args.trackers.split(","):
      group = [r for r in rows if r["case"] == name and r["tracker"] == tracker]
      lines.append(f"| {name} | {tracker} | {summary(group, 'tracks')} | "
                   f"{summary(group, 'length')} | {summary(group, 'registered')}/"
                   f"{group[0]['views']} | {summary(group, 'rot_med')} | "
                   f"{summary(group, 'auc30')} | {summary(group, 'track_s')} | "
                   f"{summary(group, 'fit_s')} |")
  out.write_text("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
