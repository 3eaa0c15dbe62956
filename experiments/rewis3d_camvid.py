"""Rewis3d on real footage: CamVid with the point cloud reconstructed from the frames (issue #14).

    python experiments/rewis3d_camvid.py [--out runs/rewis3d_camvid] [--seeds 0,1,2]
        [--set KEY=VALUE ...] [--report-only]

For each seed, the real command `python -m jaxrecon.main --config=configs/rewis3d.py:camvid`
(recon "mvs": SIFT tracks, per-scene fit, plane-sweep stereo; 18 training frames with generated
scribbles, the last 6 frames held out as their own clip) trains the EMA baseline and Rewis3d with
the same budget (`--set KEY=VALUE` adds `--config.KEY=VALUE` to every run, e.g.
objective.cmc_balance=True); seed 0 builds the segmentation records and the other seeds read them
(`--config.data.cache`), so every seed sees the same reconstruction. Then:
  * the held-out mIoU of both methods per seed, mean +- sample std, and Rewis3d - EMA paired by
    seed with its 95 % Student-t interval (a difference whose interval holds 0 is "not
    resolved");
  * how much of the labelled training pixels got a 3D point (scribbled pixels, and all pixels
    with a dense label), per class;
  * how often the cloud's cross-frame links join pixels of the same dense label, per class, and
    each class's share of the cloud against its share of the labels;
  * a figure of the training clip's point cloud coloured by the dense labels
    (experiments/rewis3d_camvid.png).
Writes experiments/rewis3d_camvid.md and .json.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from ablation_table import paired_difference, verdict  # noqa: E402

CONFIG = "configs/rewis3d.py:camvid"
METHODS = ("ema", "rewis3d")


def run_seed(out: pathlib.Path, seed: int, first: int, settings=()) -> dict:
  """summary.json of one seed (trained now unless it exists); settings: "KEY=VALUE" config
  overrides."""
  workdir = out / f"seed{seed}"
  summary = workdir / "summary.json"
  if not summary.exists():
    command = [sys.executable, "-m", "jaxrecon.main", f"--config={CONFIG}",
               f"--workdir={workdir}", f"--config.seed={seed}",
               *(f"--config.{kv}" for kv in settings)]
    if seed != first:
      command.append(f"--config.data.cache={out / f'seed{first}' / 'cache'}")
    print(" ".join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True)
  return json.loads(summary.read_text())


def coverage(cache: pathlib.Path, class_names) -> dict:
  """Share of labelled pixels of the training records with a reconstructed depth."""
  out = {"scribbled": [], "dense": [], "per_class": {}}
  hits, totals = np.zeros(len(class_names)), np.zeros(len(class_names))
  for path in sorted(cache.glob("*train*.npz")):
    record = np.load(path)
    has_point = record["recon_depth"] > 0
    sparse, dense = record["sparse_labels"], record["dense_labels"]
    out["scribbled"].append(float(np.mean(has_point[sparse != 255])))
    out["dense"].append(float(np.mean(has_point[dense != 255])))
    for c in range(len(class_names)):
      hits[c] += np.sum(has_point & (dense == c))
      totals[c] += np.sum(dense == c)
  out["scribbled"], out["dense"] = float(np.mean(out["scribbled"])), float(np.mean(out["dense"]))
  out["per_class"] = {n: (float(hits[c] / totals[c]) if totals[c] else None)
                      for c, n in enumerate(class_names)}
  return out


def _camera_points(depth, k, world_from_cam):
  """(n, 3) world points of the pixels with depth > 0 of one view, and their (rows, cols)."""
  v, u = np.nonzero(depth > 0)
  z = depth[v, u]
  cam = np.stack([(u - k[0, 2]) / k[0, 0] * z, (v - k[1, 2]) / k[1, 1] * z, z], 1)
  return cam @ world_from_cam[:3, :3].T + world_from_cam[:3, 3], (v, u)


def label_agreement(cache: pathlib.Path, class_names, window: int = 3,
                    depth_tolerance: float = 0.03) -> dict:
  """How well the training clip's cloud links pixels of one class across frames.

  Each reconstructed pixel of frame i is projected into frames i - window .. i + window; where
  that frame has a depth within depth_tolerance of the point's, the two pixels are a link (what
  Rewis3d's cross-modal term relies on: the same surface in two frames). Per class of the first
  pixel (dense labels, evaluation only): the share of the cloud's points, the share of the
  labelled pixels, and how often the linked pixel has the same label."""
  record = np.load(next(iter(sorted(cache.glob("*train*.npz")))))
  depth, k, pose = record["recon_depth"], record["intrinsics"], record["recon_world_from_cam"]
  labels = record["dense_labels"]
  n, h, w = depth.shape
  num = len(class_names)
  agree, links, points = np.zeros(num), np.zeros(num), np.zeros(num)
  for i in range(n):
    world, (v, u) = _camera_points(depth[i], k[i], pose[i])
    li = labels[i][v, u]
    points += np.bincount(li[li < num], minlength=num)
    for j in range(max(0, i - window), min(n, i + window + 1)):
      if j == i:
        continue
      cam_from_world = np.linalg.inv(pose[j])
      cam = world @ cam_from_world[:3, :3].T + cam_from_world[:3, 3]
      front = cam[:, 2] > 0
      uj = np.rint(k[j, 0, 0] * cam[:, 0] / np.where(front, cam[:, 2], 1) + k[j, 0, 2])
      vj = np.rint(k[j, 1, 1] * cam[:, 1] / np.where(front, cam[:, 2], 1) + k[j, 1, 2])
      ok = front & (uj >= 0) & (uj < w) & (vj >= 0) & (vj < h)
      uj, vj = uj.astype(int), vj.astype(int)
      dj = np.where(ok, depth[j][np.clip(vj, 0, h - 1), np.clip(uj, 0, w - 1)], 0.0)
      ok &= (dj > 0) & (np.abs(dj - cam[:, 2]) < depth_tolerance * cam[:, 2])
      lj = labels[j][np.clip(vj, 0, h - 1), np.clip(uj, 0, w - 1)]
      ok &= (li < num) & (lj < num)
      links += np.bincount(li[ok], minlength=num)
      agree += np.bincount(li[ok & (li == lj)], minlength=num)
  labelled = np.bincount(labels[labels < num].ravel(), minlength=num).astype(float)
  return {"overall": float(agree.sum() / max(links.sum(), 1)), "links": int(links.sum()),
          "per_class": {name: {"cloud_share": float(points[c] / max(points.sum(), 1)),
                               "label_share": float(labelled[c] / max(labelled.sum(), 1)),
                               "agreement": float(agree[c] / links[c]) if links[c] else None}
                        for c, name in enumerate(class_names)}}


def cloud_figure(cache: pathlib.Path, class_names, path: pathlib.Path) -> None:
  """Top and side views of the training clip's points, coloured by the dense label."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  record = np.load(next(iter(sorted(cache.glob("*train*.npz")))))
  depth, k, pose = record["recon_depth"], record["intrinsics"], record["recon_world_from_cam"]
  labels = record["dense_labels"]
  points, classes = [], []
  for i in range(len(depth)):
    world, (v, u) = _camera_points(depth[i], k[i], pose[i])
    points.append(world)
    classes.append(labels[i][v, u])
  points, classes = np.concatenate(points), np.concatenate(classes)
  centres = pose[:, :3, 3]
  cmap = matplotlib.colormaps["tab20"]
  fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
  # Axes of the first camera: x right, y down, z forward.
  for ax, (a, b, title) in zip(axes, ((0, 2, "top view (x right, z forward)"),
                                      (2, 1, "side view (z forward, y down)"))):
    for c, name in enumerate(class_names):
      sel = classes == c
      if sel.any():
        ax.scatter(points[sel, a], points[sel, b], s=0.3, color=cmap(c % 20), label=name)
    sel = classes == 255
    ax.scatter(points[sel, a], points[sel, b], s=0.3, color="0.6", label="void")
    ax.plot(centres[:, a], centres[:, b], "k.-", ms=4)
    lo, hi = np.percentile(points[:, [a, b]], [2, 98], axis=0)
    pad = 0.2 * (hi - lo)
    ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
    ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    if b == 1:
      ax.invert_yaxis()
    ax.set_aspect("equal")
    ax.set_title(title)
  axes[0].legend(markerscale=12, fontsize=7, loc="upper left", ncol=2)
  fig.suptitle(f"CamVid 0001TP training clip, recon 'mvs': {len(points)} points coloured by "
               f"the dense labels, cameras in black (the fit's gauge, not metric)")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def report(out: pathlib.Path, seeds, summaries: dict, class_names, settings=()) -> str:
  rows = [{"variant": m, "seed": s, "miou": 100 * summaries[s][m]["student"]["miou"],
           "pixel_accuracy": 100 * summaries[s][m]["student"]["pixel_accuracy"]}
          for s in seeds for m in METHODS]
  cache = out / f"seed{seeds[0]}" / "cache"
  cov = coverage(cache, class_names)
  links = label_agreement(cache, class_names)
  lines = ["# Rewis3d on CamVid with the 'mvs' reconstruction (issue #14)", "",
           f"    python experiments/rewis3d_camvid.py --out {out} --seeds "
           f"{','.join(map(str, seeds))}" + "".join(f" --set {kv}" for kv in settings), "",
           "Each seed runs `python -m jaxrecon.main --config=configs/rewis3d.py:camvid`"
           + "".join(f" `--config.{kv}`" for kv in settings) + " (otherwise the defaults "
           "of that config: 18 training frames with generated scribbles, 6 held-out frames "
           "reconstructed as their own clip, 96x128 records, 64x96 crops, 400 steps per method). "
           "Held-out mIoU of the student, 11 classes.", "",
           "| method | " + " | ".join(f"seed {s}" for s in seeds) + " | mean +- std |",
           "|---|" + "---|" * (len(seeds) + 1)]
  for m in METHODS:
    values = [r["miou"] for r in rows if r["variant"] == m]
    std = np.std(values, ddof=1) if len(values) > 1 else float("nan")
    lines.append(f"| {m} | " + " | ".join(f"{x:.2f}" for x in values)
                 + f" | {np.mean(values):.2f} +- {std:.2f} |")
  d = paired_difference(rows, "rewis3d", "ema", "miou")
  lines += ["", f"Rewis3d - EMA (paired by seed, n={d['n']}): {d['mean']:+.2f} "
            f"[{d['lo']:.2f}, {d['hi']:.2f}] mIoU points, {verdict(d, True)}.", "",
            "Labelled training pixels with a reconstructed 3D point (training clip): "
            f"{100 * cov['scribbled']:.1f} % of the scribbled pixels, {100 * cov['dense']:.1f} % "
            "of all densely labelled pixels. Per class (dense labels):", "",
            "| " + " | ".join(class_names) + " |", "|" + "---|" * len(class_names),
            "| " + " | ".join("-" if v is None else f"{100 * v:.1f}"
                              for v in cov["per_class"].values()) + " |", "",
            "Cross-frame links of the training clip's cloud (a pixel's point lands in a frame up "
            "to 3 apart on a pixel whose depth agrees to 3 %): "
            f"{links['links']} links, {100 * links['overall']:.1f} % join pixels of the same "
            "dense label. Per class: its share of the cloud's points, of the labelled pixels, "
            "and how often its links keep the label:", "",
            "| | " + " | ".join(class_names) + " |", "|---|" + "---|" * len(class_names),
            "| cloud share | " + " | ".join(f"{100 * v['cloud_share']:.1f}"
                                            for v in links["per_class"].values()) + " |",
            "| label share | " + " | ".join(f"{100 * v['label_share']:.1f}"
                                            for v in links["per_class"].values()) + " |",
            "| agreement | " + " | ".join("-" if v["agreement"] is None else
                                          f"{100 * v['agreement']:.1f}"
                                          for v in links["per_class"].values()) + " |", "",
            "![point cloud](rewis3d_camvid.png)"]
  (HERE / "rewis3d_camvid.json").write_text(json.dumps(
      {"rows": rows, "difference": d, "coverage": cov, "links": links}, indent=2))
  cloud_figure(cache, class_names, HERE / "rewis3d_camvid.png")
  return "\n".join(lines) + "\n"


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", default=str(ROOT / "runs" / "rewis3d_camvid"))
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="a config override for every run (repeatable)")
  parser.add_argument("--report-only", action="store_true")
  args = parser.parse_args()
  out = pathlib.Path(args.out)
  seeds = [int(s) for s in args.seeds.split(",")]
  summaries = {}
  for seed in seeds:
    summary = out / f"seed{seed}" / "summary.json"
    if args.report_only:
      if summary.exists():
        summaries[seed] = json.loads(summary.read_text())
    else:
      summaries[seed] = run_seed(out, seed, seeds[0], args.set)
  seeds = [s for s in seeds if s in summaries]
  sys.path.insert(0, str(ROOT))
  from configs.rewis3d import CAMVID_CLASSES
  text = report(out, seeds, summaries, list(CAMVID_CLASSES), args.set)
  path = HERE / "rewis3d_camvid.md"
  # The reading is written by hand below a marker; a rerun keeps it (and it must be re-read).
  marker = "\n## Reading"
  old = path.read_text() if path.exists() else ""
  if marker in old:
    text += marker + old.split(marker, 1)[1]
  path.write_text(text)
  print(text)


if __name__ == "__main__":
  main()
