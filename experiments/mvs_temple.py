"""Plane-sweep MVS on Middlebury templeRing with its supplied cameras: fused points checked in
held-out views (no ground-truth depth exists for these images).

Usage: python experiments/mvs_temple.py [--data ../shared/data] [--out experiments/mvs_temple]

Views 3, 9 and 15 of the 19 are held out; the other 16 are reconstructed at half resolution
(320 x 240, intrinsics scaled to match) with `MVSSettings` as chosen on the procedural world's
validation scenes (experiments/mvs_synthetic.json; never tuned on this scene), neighbours and
depth range from their SIFT tracks triangulated with the supplied cameras. Check: SIFT matches (full resolution, ratio + mutual test + essential-matrix
RANSAC) between a held-out view and each reconstructed view are independent evidence of where a
surface point appears in the held-out view. Where the reconstructed view's pixel of a match is
confident, its fused depth places the point; projected into the held-out view, its distance to the
matched keypoint is the transfer error (full-resolution pixels). The supplied cameras themselves
agree with SIFT matches to 0.08-0.13 px (../shared/data/README.md), which bounds the floor.
"""
from __future__ import annotations

import dataclasses
import json
import time

import jax.numpy as jnp
import numpy as np

from mvs_common import half_resolution, real_scene_setup, sparse_points  # noqa: E402

from jaxrecon import geometry, mvs  # noqa: E402
from jaxrecon.data.formats import read_middlebury  # noqa: E402
from jaxrecon.experts import MatcherSettings, detect_features, match_pair  # noqa: E402

HELD_OUT = (3, 9, 15)


def main():
  args, settings, use_views = real_scene_setup("mvs_temple")
  scene = read_middlebury(f"{args.data}/templeRing")
  recon = [i for i in range(scene.num_views) if i not in HELD_OUT]
  h, w = scene.image_size
  small, k_small = half_resolution(scene.images[recon], scene.intrinsics[recon])
  cams = scene.cam_from_world[recon]
  pts, views = sparse_points(small, k_small, cams, with_views=True)
  t0 = time.time()
  res = mvs.reconstruct_dense(small, k_small, cams, pts, settings=settings,
                              point_views=views if use_views else None)
  seconds = time.time() - t0
  print(f"reconstructed {len(recon)} views in {seconds:.1f}s, {len(res.points)} points",
        flush=True)

  matcher = MatcherSettings(max_features=4000)
  feats = {i: detect_features(scene.images[i], matcher) for i in range(scene.num_views)}
  rows, overlay = [], {}
  for hold in HELD_OUT:
    errors, total = [], 0
    for j, src in enumerate(recon):
      pairs = match_pair(feats[src], feats[hold], scene.intrinsics[src], scene.intrinsics[hold],
                         matcher)
      if not len(pairs):
        continue
      total += len(pairs)
      u_src = feats[src].keypoints[pairs[:, 0]].astype(np.float64)
      u_hold = feats[hold].keypoints[pairs[:, 1]].astype(np.float64)
      half = (u_src + 0.5) * 0.5 - 0.5                     # full -> half resolution pixels
      col = np.clip(np.round(half[:, 0]).astype(int), 0, w // 2 - 1)
      row = np.clip(np.round(half[:, 1]).astype(int), 0, h // 2 - 1)
      conf = res.confidence[j, row, col]
      keep = conf > 0
      world = geometry.unproject(jnp.asarray(u_src[keep]),
                                 jnp.asarray(res.depth[j, row, col][keep]),
                                 jnp.asarray(scene.intrinsics[src]),
                                 geometry.invert_pose(jnp.asarray(cams[j])))
      pix, _ = geometry.project(world, jnp.asarray(scene.intrinsics[hold]),
                                jnp.asarray(scene.cam_from_world[hold]))
      errors.append(np.linalg.norm(np.asarray(pix) - u_hold[keep], axis=-1))
    err = np.concatenate(errors)
    rows.append({"held_out": scene.names[hold], "matches": total, "with_depth": int(len(err)),
                 "median_px": float(np.median(err)), "p90_px": float(np.percentile(err, 90)),
                 "under_1px": float(np.mean(err < 1.0)), "under_2px": float(np.mean(err < 2.0))})
    overlay[hold] = err
    print(rows[-1], flush=True)
  all_err = np.concatenate(list(overlay.values()))
  report = {"settings": dataclasses.asdict(settings), "seconds": seconds,
            "points": int(len(res.points)), "sparse_points": int(len(pts)),
            "coverage": float(np.mean(res.confidence > 0)), "rows": rows,
            "all": {"median_px": float(np.median(all_err)),
                    "p90_px": float(np.percentile(all_err, 90)), "n": int(len(all_err))}}
  with open(args.out + ".json", "w") as f:
    json.dump(report, f, indent=1)
  figure(scene, res, recon, args.out + ".png", all_err)
  write_markdown(report, args.out + ".md")


def figure(scene, res, recon, path, errors):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  hold = HELD_OUT[1]
  fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
  pix, z = geometry.project(jnp.asarray(res.points),
                            jnp.asarray(scene.intrinsics[hold]),
                            jnp.asarray(scene.cam_from_world[hold]))
  pix = np.asarray(pix)
  sel = np.random.default_rng(0).permutation(len(pix))[:20000]
  axes[0].imshow(scene.images[hold])
  axes[0].scatter(pix[sel, 0], pix[sel, 1], s=0.2, c=res.colors[sel] / 255.0)
  axes[0].set_xlim(-0.5, scene.image_size[1] - 0.5)
  axes[0].set_ylim(scene.image_size[0] - 0.5, -0.5)
  axes[0].set_title(f"fused points projected into held-out {scene.names[hold]}")
  j = len(recon) // 2
  d = np.where(res.confidence[j] > 0, res.depth[j], np.nan)
  axes[1].imshow(d, cmap="viridis")
  axes[1].set_title(f"confident depth of {scene.names[recon[j]]} (half resolution)")
  axes[2].hist(np.clip(errors, 0, 5), bins=50)
  axes[2].set_xlabel("transfer error into held-out views (full-resolution px, clipped at 5)")
  for a in axes[:2]:
    a.axis("off")
  fig.tight_layout()
  fig.savefig(path, dpi=90)


def write_markdown(report, path):
  lines = ["# Plane-sweep MVS on templeRing (supplied cameras), checked in held-out views", "",
           "    python experiments/mvs_temple.py", "", __doc__.split("\n\n", 1)[1].strip(), "",
           f"16 views reconstructed in {report['seconds']:.1f} s (2 shared CPU cores, "
           f"compilation included); {report['points']} fused points; "
           f"{100 * report['coverage']:.1f} % of all pixels confident (the black background "
           f"is most of each image); {report['sparse_points']} sparse points.", "",
           "| held-out view | SIFT matches | with a confident depth | median px | p90 px | "
           "< 1 px | < 2 px |", "|---|---|---|---|---|---|---|"]
  for r in report["rows"]:
    lines.append(f"| {r['held_out']} | {r['matches']} | {r['with_depth']} | "
                 f"{r['median_px']:.2f} | {r['p90_px']:.2f} | {100 * r['under_1px']:.1f} % | "
                 f"{100 * r['under_2px']:.1f} % |")
  a = report["all"]
  lines += [f"| all | | {a['n']} | {a['median_px']:.2f} | {a['p90_px']:.2f} | | |", "",
            "![held-out projection, depth, error histogram](mvs_temple.png)", ""]
  with open(path, "w") as f:
    f.write("\n".join(lines))


if __name__ == "__main__":
  main()
