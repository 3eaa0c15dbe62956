"""How well does the demo Reliev3R model reconstruct CamVid (no ground-truth geometry there)?

Usage: python experiments/camvid_reconstruction.py --checkpoint=RUN [--data ../shared/data]

CamVid 0001TP has no depth, poses or intrinsics, so the only available check of a reconstruction
is its own multi-view consistency against independent evidence: SIFT tracks (matched at full
resolution with an assumed 60 degree horizontal field of view) must be explained by the predicted
depth and poses. For each model (the trained run, the same architecture untrained) and each clip
(the 18 training frames, the 6 held-out frames, as the Rewis3d camvid config splits them) this
reports the angular registration residual of the tracks: for every observation pair, the angle at
one camera between its ray and the other view's back-projected point (`losses.registration_loss`,
the paper's form), mean and the fraction under 1 and 5 degrees. The same numbers on held-out
synthetic scenes of the demo cache (with their SIFT tracks) give the scale of a "good" value.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

import jax.numpy as jnp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxrecon.rewis3d.records import camvid_scene  # noqa: E402
from jaxrecon.data.transforms import resize_images  # noqa: E402
from jaxrecon.experts import MatcherSettings, TrackSettings, track_images  # noqa: E402
from jaxrecon.export.views import resize_maps  # noqa: E402
from jaxrecon.losses.registration import registration_loss  # noqa: E402
from jaxrecon.reliev3r.task import build, predict, scene_files  # noqa: E402
from jaxrecon.train.runs import locate_run, restore_latest, stored_config  # noqa: E402


def residuals(graphdef, state, images, intrinsics, pixels, visible, model_hw):
  """(mean angular residual in degrees, fraction < 1 deg, fraction < 5 deg) of the tracks, and the
  predicted motion between consecutive frames: median angle (degrees) between a frame's step to
  the next camera centre and its own optical axis (a car driving ahead moves along it, so small
  is plausible), and the median step length over the median predicted depth."""
  small = resize_images(images, model_hw).astype(np.float32) / 255.0
  pred = predict(graphdef, state, small[None])
  depth = resize_maps(np.asarray(pred["depth"][0], np.float32), images.shape[1:3])
  out = {}
  for deg in (1.0, 5.0):
    _, diag = registration_loss(jnp.asarray(np.nan_to_num(pixels)), jnp.asarray(visible),
                                jnp.asarray(depth), jnp.asarray(pred["world_from_cam"][0]),
                                jnp.asarray(intrinsics, jnp.float32), form="angular",
                                robust="l2", robust_scale=float(np.deg2rad(deg)))
    out[deg] = float(diag["inlier_fraction"])
    mean = float(np.rad2deg(diag["mean_residual"]))
  pose = np.asarray(pred["world_from_cam"][0], np.float64)
  steps = np.einsum("vji,vj->vi", pose[:-1, :3, :3], pose[1:, :3, 3] - pose[:-1, :3, 3])
  length = np.linalg.norm(steps, axis=-1)
  forward = np.degrees(np.arccos(np.clip(steps[:, 2] / np.maximum(length, 1e-12), -1, 1)))
  return (mean, out[1.0], out[5.0], float(np.median(forward)),
          float(np.median(length) / np.median(depth)))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--checkpoint", required=True, help="a Reliev3R run (its workdir)")
  parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
  parser.add_argument("--held-out-frames", type=int, default=6)
  args = parser.parse_args()

  workdir, checkpoints = locate_run(args.checkpoint)
  config = stored_config(workdir)
  graphdef, _, init_state = build(config)
  trained, step = restore_latest(checkpoints, init_state)
  models = {f"trained ({step} steps)": trained, "untrained": init_state()}
  model_hw = (int(config.pipeline.height), int(config.pipeline.width))

  clips = {}
  scene = camvid_scene(pathlib.Path(args.data) / "camvid_0001TP", intrinsics_fov_deg=60.0)
  split = scene.num_views - args.held_out_frames
  for name, views in (("camvid train clip", range(split)),
                      ("camvid held-out clip", range(split, scene.num_views))):
    part = scene.select(list(views))
    tracks = track_images(list(part.images), part.intrinsics, MatcherSettings(), TrackSettings())
    visible = tracks.visible & tracks.mask[:, None]
    clips[name] = (np.asarray(part.images), part.intrinsics, tracks.pixels, visible)
  _, eval_paths = scene_files(config, workdir)
  for path in eval_paths[:4]:
    record = np.load(path)
    clips[f"synthetic held-out {path.stem[-5:]}"] = (record["images"], record["intrinsics"],
                                                     record["tracks"], record["visibility"])

  print("| model | clip | views | tracks | mean angle (deg) | < 1 deg | < 5 deg | "
        "step vs optical axis (deg) | step / median depth |")
  print("|---|---|---|---|---|---|---|---|---|")
  for model_name, state in models.items():
    for clip_name, (images, k, pixels, visible) in clips.items():
      mean, in1, in5, forward, step = residuals(graphdef, state, images, k, pixels, visible,
                                                model_hw)
      tracks = int(np.sum(np.sum(visible, -1) >= 2))
      print(f"| {model_name} | {clip_name} | {len(images)} | {tracks} | {mean:.2f} | "
            f"{100 * in1:.1f} % | {100 * in5:.1f} % | {forward:.1f} | {step:.3f} |", flush=True)


if __name__ == "__main__":
  main()
