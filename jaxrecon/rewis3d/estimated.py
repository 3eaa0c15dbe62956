"""Segmentation records whose reconstruction is estimated from the images (the "ffrm" and "mvs"
sources), and the scenes they are made of.

A reconstruction function maps a `Scene` (images, intrinsics; any resolution) to an
`Estimate`: depth and confidence maps at its own working resolution, camera-to-world poses in its
own gauge, which views it placed and, where it refined them, a focal scale. `estimated_record`
turns the scene and its estimate into the record at the record's resolution; `build_estimated_jobs`
lists the (name, function) jobs of a source for `cache.cache_scenes`.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Mapping, NamedTuple, Optional

import numpy as np

from jaxrecon.data.scene import Scene
from jaxrecon.data.synthetic import make_scene
from jaxrecon.data.transforms import resize, resize_nearest
from jaxrecon.geometry.cameras import up_from_cameras
from jaxrecon.rewis3d.records import camvid_scene, label_options, seg_record


class Estimate(NamedTuple):
  """A scene's estimated reconstruction (v views).

  depth: (v, h', w') float32 camera z in the estimate's units, 0 where there is no point.
  confidence: (v, h', w') float32 >= 0 (0 where there is no point).
  world_from_cam: (v, 4, 4) float64 camera-to-world, OpenCV axes; finite for every view (the
    pose of a view that was not placed is arbitrary: its depth is 0 everywhere).
  registered: (v,) bool, the views that were placed (their cameras define "up").
  focal_scale: the factor the estimate applied to the scene's focal lengths (1: as given).
  """
  depth: np.ndarray
  confidence: np.ndarray
  world_from_cam: np.ndarray
  registered: np.ndarray
  focal_scale: float = 1.0


def camvid_part(settings: Mapping, part: str, *, resized: bool = True) -> Scene:
  """The CamVid frames of settings["camvid"] with intrinsics from an assumed field of view;
  part "train" is all but the last camvid.held_out_frames frames, "held_out" those last frames
  (a separate clip: it is reconstructed on its own, so no training geometry or label reaches
  it). resized: at the records' size camvid.(height, width) (else the native frames)."""
  camvid = settings["camvid"]
  scene = camvid_scene(camvid["root"], intrinsics_fov_deg=camvid["intrinsics_fov_deg"])
  held_out = int(camvid["held_out_frames"])
  if not 0 < held_out < scene.num_views - 1:
    raise ValueError(f"camvid.held_out_frames: expected 1..{scene.num_views - 2}, got {held_out}")
  split = scene.num_views - held_out
  views = range(split) if part == "train" else range(split, scene.num_views)
  scene = scene.select(list(views))
  return resize(scene, (camvid["height"], camvid["width"])) if resized else scene


def estimated_record(scene: Scene, estimate: Estimate, settings: Mapping,
                     size: Optional[tuple] = None) -> dict:
  """The segmentation record of `scene` (resized to `size` = (h, w), default its own) with the
  estimate's maps resampled to it (nearest: a map's 0 = no point must not blend into depths), its
  intrinsics times the estimate's focal scale, and "up" from the placed views' cameras."""
  if size is not None and tuple(size) != scene.image_size:
    scene = resize(scene, size)
  h, w = scene.image_size
  depth = resize_nearest(np.asarray(estimate.depth, np.float32), (h, w))
  confidence = resize_nearest(np.asarray(estimate.confidence, np.float32), (h, w))
  confidence = np.where(depth > 0, confidence, 0.0)
  intrinsics = np.array(scene.intrinsics, np.float64)
  intrinsics[:, :2, :2] *= float(estimate.focal_scale)
  scene = dataclasses.replace(scene, intrinsics=intrinsics)
  registered = np.asarray(estimate.registered, bool)
  up = None
  if registered.sum() >= 2:
    up = np.asarray(up_from_cameras(np.asarray(estimate.world_from_cam)[registered]), np.float64)
  return seg_record(scene, label_kind=settings["label_kind"], label_seed=settings["label_seed"],
                    recon_depth=depth, recon_confidence=confidence,
                    recon_world_from_cam=estimate.world_from_cam, up=up,
                    **label_options(settings))


def _record(scene_fn: Callable[[], Scene], reconstruct: Callable[[Scene], Estimate],
            settings: Mapping, size) -> dict:
  scene = scene_fn()
  return estimated_record(scene, reconstruct(scene), settings, size)


def build_estimated_jobs(settings: Mapping, reconstruct: Callable[[Scene], Estimate], *,
                         native_camvid: bool = False) -> list[tuple[str, Callable[[], dict]]]:
  """(scene name, record function) pairs for `cache.cache_scenes`: every scene of
  settings["source"] reconstructed by `reconstruct` (called once per scene, in the job).

  CamVid gives two scenes, "camvid-0-train" and "camvid-1-held_out" (names sort train first: the
  trainer holds out the last scenes in sorted order); native_camvid: `reconstruct` sees the
  native frames (the record is still made at camvid.(height, width)). The synthetic source gives
  `make_scene(s)` named synthetic-<path>-<s:05d>, as `records.build_seg_jobs` does.
  """
  source = settings["source"]
  if source == "camvid":
    size = (settings["camvid"]["height"], settings["camvid"]["width"])
    return [(f"camvid-{i}-{part}", functools.partial(
        _record, functools.partial(camvid_part, settings, part, resized=not native_camvid),
        reconstruct, settings, size)) for i, part in enumerate(("train", "held_out"))]
  if source == "synthetic":
    synth = settings["synthetic"]
    seeds = range(synth["seed"], synth["seed"] + synth["num_scenes"])
    scene_fn = functools.partial(make_scene, num_views=synth["num_views"],
                                 height=synth["height"], width=synth["width"], path=synth["path"])
    return [(f"synthetic-{synth['path']}-{s:05d}",
             functools.partial(_record, functools.partial(scene_fn, s), reconstruct, settings,
                               None)) for s in seeds]
  raise ValueError(f"source: expected 'synthetic' or 'camvid', got {source!r}")
