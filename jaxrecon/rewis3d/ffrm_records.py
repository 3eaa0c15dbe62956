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
from jaxrecon.data.transforms import resize_images
from jaxrecon.export.views import resize_maps
from jaxrecon.reliev3r.task import build, predict
from jaxrecon.rewis3d.estimated import Estimate, build_estimated_jobs
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


def ffrm_estimate(scene: Scene, checkpoint: str) -> Estimate:
  """`ffrm_reconstruction` as an `Estimate` (every view placed, the focal as given)."""
  depth, confidence, world_from_cam = ffrm_reconstruction(scene, checkpoint)
  return Estimate(depth, confidence, world_from_cam, np.ones(len(depth), bool))


def build_ffrm_jobs(settings: Mapping) -> list[tuple[str, Callable[[], dict]]]:
  """(scene name, record function) pairs for `cache.cache_scenes` with recon "ffrm"."""
  checkpoint = settings["ffrm"]["checkpoint"]
  if not checkpoint:
    raise ValueError("data.prepare.ffrm.checkpoint: give a Reliev3R run (its workdir) whose "
                     "model reconstructs the scenes, e.g. the workdir of `python -m jaxrecon.main "
                     "--config=configs/reliev3r.py`")
  locate_run(checkpoint)  # fail before any scene is read
  return build_estimated_jobs(settings, functools.partial(ffrm_estimate, checkpoint=checkpoint))
