"""Segmentation records whose point cloud comes from a trained Reliev3R model (the "ffrm" source).

Rewis3d needs a reconstruction of every training video; `jaxrecon.rewis3d.records` provides the
ground-truth and simulated ones, this module the learned one: the whole scene (all its views at
once, the backbone is permutation-equivariant and takes any number of views) goes through the
feed-forward model of a Reliev3R run; its depth and confidence maps (upsampled from the model's
input size to the scene's) and camera-to-world poses become the record's reconstruction. The
model's world frame and scale are its own gauge; the segmentation pipeline normalises scale, and
the record's "up" (the 3D augmentation's rotation axis) is estimated from the predicted cameras
(`geometry.up_from_cameras`: their mean -y axis), not assumed to be a world axis.
"""
from __future__ import annotations

import functools
from typing import Callable, Mapping

import numpy as np

from jaxrecon.data.scene import Scene
from jaxrecon.rewis3d.records import camvid_scene, label_options, seg_record
from jaxrecon.data.synthetic import make_scene
from jaxrecon.data.transforms import resize, resize_images
from jaxrecon.export.views import resize_maps
from jaxrecon.geometry.cameras import up_from_cameras
from jaxrecon.reliev3r.task import build, predict
from jaxrecon.train.runs import locate_run, restore_latest, stored_config


@functools.lru_cache(maxsize=2)
def load_ffrm(checkpoint: str):
  """(graphdef, state, step, (height, width) model input size) of a Reliev3R run's latest step."""
  workdir, checkpoints = locate_run(checkpoint)
  config = stored_config(workdir)
  if config is None or config.get("task", "reliev3r") != "reliev3r":
    raise ValueError(f"{workdir}: not a Reliev3R run (no config.json with task 'reliev3r')")
  graphdef, _, init_state = build(config)
  state, step = restore_latest(checkpoints, init_state)
  return graphdef, state, step, (int(config.pipeline.height), int(config.pipeline.width))


def ffrm_reconstruction(scene: Scene, checkpoint: str):
  """(depth (v, h, w) float32, confidence (v, h, w) float32, world_from_cam (v, 4, 4) float64) of
  a scene predicted by the Reliev3R model of `checkpoint`, at the scene's resolution."""
  graphdef, state, _, model_hw = load_ffrm(checkpoint)
  small = resize_images(np.asarray(scene.images), model_hw).astype(np.float32) / 255.0
  pred = predict(graphdef, state, small[None])
  size = scene.image_size
  depth = resize_maps(np.asarray(pred["depth"][0], np.float32), size).astype(np.float32)
  confidence = resize_maps(np.asarray(pred["confidence"][0], np.float32), size).astype(np.float32)
  return depth, confidence, np.asarray(pred["world_from_cam"][0], np.float64)


def _camvid_scene(settings: Mapping, part: str) -> Scene:
  """CamVid frames with intrinsics from an assumed field of view, resized to camvid.(height,
  width) (the FFRM and the segmentation crops work at low resolution); part "train" is all but
  the last camvid.held_out_frames frames, "held_out" those last frames (a separate clip: it is
  reconstructed on its own, so no training geometry or label reaches it)."""
  camvid = settings["camvid"]
  scene = camvid_scene(camvid["root"], intrinsics_fov_deg=camvid["intrinsics_fov_deg"])
  held_out = int(camvid["held_out_frames"])
  if not 0 < held_out < scene.num_views - 1:
    raise ValueError(f"camvid.held_out_frames: expected 1..{scene.num_views - 2}, got {held_out}")
  split = scene.num_views - held_out
  views = range(split) if part == "train" else range(split, scene.num_views)
  return resize(scene.select(list(views)), (camvid["height"], camvid["width"]))


def _ffrm_record(scene_fn: Callable[[], Scene], settings: Mapping) -> dict:
  scene = scene_fn()
  depth, confidence, world_from_cam = ffrm_reconstruction(scene, settings["ffrm"]["checkpoint"])
  return seg_record(scene, label_kind=settings["label_kind"], label_seed=settings["label_seed"],
                    recon_depth=depth, recon_confidence=confidence,
                    recon_world_from_cam=world_from_cam,
                    up=np.asarray(up_from_cameras(world_from_cam), np.float64),
                    **label_options(settings))


def build_ffrm_jobs(settings: Mapping) -> list[tuple[str, Callable[[], dict]]]:
  """(scene name, record function) pairs for `cache.cache_scenes` with recon "ffrm"."""
  checkpoint = settings["ffrm"]["checkpoint"]
  if not checkpoint:
    raise ValueError("data.prepare.ffrm.checkpoint: give a Reliev3R run (its workdir) whose "
                     "model reconstructs the scenes, e.g. the workdir of `python -m jaxrecon.main "
                     "--config=configs/reliev3r.py`")
  locate_run(checkpoint)  # fail before any scene is read
  source = settings["source"]
  if source == "camvid":
    # Names sort train first: the trainer holds out the last scenes in sorted order.
    return [(f"camvid-{i}-{part}", functools.partial(
        _ffrm_record, functools.partial(_camvid_scene, settings, part), settings))
        for i, part in enumerate(("train", "held_out"))]
  if source == "synthetic":
    synth = settings["synthetic"]
    seeds = range(synth["seed"], synth["seed"] + synth["num_scenes"])
    scene_fn = functools.partial(make_scene, num_views=synth["num_views"],
                                 height=synth["height"], width=synth["width"], path=synth["path"])
    return [(f"synthetic-{synth['path']}-{s:05d}",
             functools.partial(_ffrm_record, functools.partial(scene_fn, s), settings))
            for s in seeds]
  raise ValueError(f"source: expected 'synthetic' or 'camvid', got {source!r}")
