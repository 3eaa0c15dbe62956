"""Speed of plane-sweep MVS on the CPU: time per reference view vs image size and hypotheses, and
the extrapolated time of the 24 CamVid frames at 480 x 360.

Usage: python experiments/mvs_speed.py [--data ../shared/data] [--out experiments/mvs_speed]

CamVid ships no cameras, so the cameras are a plausible stand-in, not a reconstruction: a car
driving straight ahead 1 m per frame (frames are 1 s apart in 0001TP, city traffic), 60 degree
horizontal field of view, depth range 2-100 m given (no sparse points). Images are the first 5
CamVid frames (real texture; the timing does not depend on the cameras being right). Each row
times the per-view depth step (`mvs.view_depth`: coarse sweep, refinement sweep, winner-take-all,
filter) on every one of the 5 views after one warm-up call (compilation excluded), and the
geometric-consistency step of the 5 views; 24 frames = 24 x (view time + consistency time per
view), extrapolated, since each view's cost does not depend on the number of frames.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import time

import cv2
import jax
import jax.numpy as jnp
import numpy as np

import mvs_common  # noqa: F401  (sets sys.path)

from jaxrecon import mvs, xla_options  # noqa: E402
from jaxrecon.data.formats import read_camvid  # noqa: E402
from jaxrecon.data.synthetic import intrinsics_from_fov  # noqa: E402

CONFIGS = [((120, 160), 32), ((240, 320), 32), ((360, 480), 32), ((360, 480), 48),
           ((360, 480), 64), ((240, 320), 64), ((240, 320), 128)]


def time_config(images, size, num, settings):
  h, w = size
  v = len(images)
  imgs = np.stack([cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA) for im in images])
  k = np.tile(intrinsics_from_fov(h, w, 60.0), (v, 1, 1)).astype(np.float32)
  cams = np.tile(np.eye(4, dtype=np.float32), (v, 1, 1))
  cams[:, 2, 3] = -np.arange(v, dtype=np.float32)        # camera i at z = i metres, looking +z
  s = dataclasses.replace(settings, num_hypotheses=num)
  grey = jnp.asarray(mvs.grey_images(imgs))
  nbrs = np.array([[j for j in range(v) if j != i] for i in range(v)])
  kk, cc = jnp.asarray(k), jnp.asarray(cams)

  def view(r):
    return mvs.view_depth(grey[r], grey[nbrs[r]], kk[r], kk[nbrs[r]], cc[r], cc[nbrs[r]],
                          jnp.asarray([s.near, s.far]), settings=s)

  jax.block_until_ready(view(0))
  t0 = time.perf_counter()
  depth = jnp.stack([jax.block_until_ready(view(r))[0] for r in range(v)])
  per_view = (time.perf_counter() - t0) / v
  check = lambda: mvs.geometric_consistency(depth, kk, cc, jnp.asarray(nbrs))
  jax.block_until_ready(check())
  t0 = time.perf_counter()
  jax.block_until_ready(check())
  consistency = (time.perf_counter() - t0) / v
  return {"size": f"{w}x{h}", "hypotheses": num, "refine": s.refine_hypotheses,
          "neighbours": v - 1, "window": 2 * s.window_radius + 1,
          "seconds_per_view": per_view, "consistency_per_view": consistency,
          "extrapolated_24_frames": 24 * (per_view + consistency)}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--data", default="../shared/data")
  parser.add_argument("--out", default="experiments/mvs_speed")
  args = parser.parse_args()
  images = read_camvid(f"{args.data}/camvid_0001TP").images[:5]
  settings = mvs.MVSSettings(near=2.0, far=100.0)
  rows = []
  for size, num in CONFIGS:
    rows.append(time_config(images, size, num, settings))
    print(rows[-1], flush=True)
  report = {"rows": rows, "cpu_count": os.cpu_count(), "load_average": os.getloadavg()}
  with open(args.out + ".json", "w") as f:
    json.dump(report, f, indent=1)
  lines = ["# Plane-sweep MVS speed on the CPU", "", "    python experiments/mvs_speed.py", "",
           __doc__.split("\n\n", 1)[1].strip(), "",
           f"Machine: {os.cpu_count()} CPU cores shared with other jobs (load average at the end "
           f"{report['load_average'][0]:.1f}); jax {jax.__version__}; compiler options "
           f"{xla_options.options() or 'XLA defaults'} (`jaxrecon.xla_options`). Window "
           f"{rows[0]['window']} x {rows[0]['window']}, top-k {settings.top_k}, chunk "
           f"{settings.chunk}.", "",
           "| image | hypotheses D | refinement R | neighbours N | s / view | consistency s / view "
           "| 24 frames (extrapolated) s |", "|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['size']} | {r['hypotheses']} | {r['refine']} | {r['neighbours']} | "
                 f"{r['seconds_per_view']:.2f} | {r['consistency_per_view']:.3f} | "
                 f"{r['extrapolated_24_frames']:.0f} |")
  # A hand-written "## Reading" section of the previous file is kept (re-read it after a rerun).
  previous = pathlib.Path(args.out + ".md")
  reading = previous.read_text().partition("\n## Reading")[2] if previous.exists() else ""
  with open(args.out + ".md", "w") as f:
    f.write("\n".join(lines) + "\n" + ("\n## Reading" + reading if reading else ""))


if __name__ == "__main__":
  main()
