"""Deterministic, resumable grain pipelines of Rewis3d segmentation samples.

The source (`SegNpzSource`) enumerates (scene, view) pairs of cached segmentation records (see
`jaxrecon.rewis3d.records`): every view of every scene is one training target. A scene's point
cloud (`pointcloud.lift` of its reconstruction, with the sparse labels of all its views) is lifted
on first use and memoised per worker; lifting is deterministic, so the memo never changes results.

A sample (`make_seg_sample`) of target view t, with H x W the crop and N the point budget:
1. 2D: one random geometry (`jaxrecon.rewis3d.augment.shared_geometry`: rescale, crop, flip) of view t gives
   image_weak (teacher) and, plus `strong_photometric`, image_strong (student), and the sparse /
   dense labels under the same geometry;
2. 3D: N points of the cloud (`view_aware_sample`, or the uniform ablation `random_sample`; with
   context "target_view" the cloud is view t's points only: the multi-view reconstruction
   restricted to one view, NOT a single-frame reconstruction, since its depth and confidence still
   come from all views), centred on the centroid of view t's points and divided by their radius (see
   `normalise_points`) so the 3D network sees unit-scale input whatever the reconstruction's
   scale, then augmented twice (`augment_points` with WEAK_POINTS / STRONG_POINTS: same points in
   the same order);
3. points_pixel: for each point lifted from view t, its pixel in the crop
   (`correspondences` then `apply_geometry_pixels`), -1 otherwise.
Every array has a fixed shape, so batches stack and the train step compiles once:

    image_weak, image_strong (H, W, 3) uint8     labels, dense_labels (H, W) int32 (255 = ignore)
    points_weak, points_strong (N, 3) float32    points_rgb (N, 3) float32 in [0, 1]
    points_label (N,) int32 (255 = ignore)       points_confidence (N,) float32
    points_valid (N,) bool                       points_pixel (N,) int32 (row * W + col or -1)

Padding points (points_valid False) have zero xyz / rgb / confidence, label 255 and pixel -1.

Determinism: as in `jaxrecon.reliev3r.pipeline`, grain's MapDataset derives each element's random
stream from (seed, index), so the batches depend on the config alone (worker_count is part of it
and fixed), and `iterator.get_state()` / `set_state()` restart the stream exactly.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import threading
import zipfile
from typing import Sequence

import grain
import numpy as np

from jaxrecon.data.cache import read_npz
from jaxrecon.reliev3r.pipeline import batched_dataset
from jaxrecon.data.pointcloud import (PointCloud, correspondences, lift, random_sample,
                                      view_aware_sample, view_ball)
from jaxrecon.data.scene import IGNORE_LABEL
from jaxrecon.rewis3d.augment import (STRONG_POINTS, WEAK_POINTS, apply_geometry_image,
                                       apply_geometry_labels, apply_geometry_pixels,
                                       augment_points, shared_geometry, strong_photometric)
from jaxrecon.rewis3d.records import check_seg_record

SAMPLINGS = ("view_aware", "random")
CONTEXTS = ("scene", "target_view")


@dataclasses.dataclass(frozen=True)
class SegPipelineConfig:
  """Shapes, randomness and parallelism of a segmentation pipeline (all fixed by the config).

  height, width: crop size H x W in pixels, multiples of 32 (the 2D network's stride).
  num_points: N, points per sample.
  rho: fraction of N from the target view (view-aware sampling); radius_scale: its context ball
    as a multiple of the target view's radius.
  sampling: "view_aware" (Rewis3d) or "random" (uniform over the cloud, the ablation).
  context: "scene" (the whole scene's cloud) or "target_view" (the target view's points of it).
  scale_range, flip_prob: the shared 2D rescale range and mirror probability.
  blur_prob, blur_sigma, colour_strength, colour_prob, grayscale_prob, cutout_prob, cutout_size:
    the student's `strong_photometric` settings.
  up: the world's up direction for the 3D rotations (synthetic worlds: z), used for records
    without their own "up" (records of a reconstruction in its own frame, e.g. "ffrm", carry one
    estimated from their cameras, which takes precedence).
  min_confidence_percentile: per-view confidence percentile dropped when lifting, in [0, 100].
  batch_size: samples per batch (per process). seed: the one seed of the whole pipeline.
  worker_count: grain worker processes (0 = in the main process); fixed here, since it is part
    of what defines the stream.
  shuffle: reshuffle the (scene, view) pairs every epoch.
  """
  height: int = 64
  width: int = 64
  num_points: int = 4096
  rho: float = 0.6
  radius_scale: float = 1.5
  sampling: str = "view_aware"
  context: str = "scene"
  scale_range: tuple = (0.75, 1.5)
  flip_prob: float = 0.5
  blur_prob: float = 0.5
  blur_sigma: tuple = (0.1, 2.0)
  colour_strength: float = 0.4
  colour_prob: float = 0.8
  grayscale_prob: float = 0.2
  cutout_prob: float = 0.5
  cutout_size: tuple = (0.2, 0.5)
  up: tuple = (0.0, 0.0, 1.0)
  min_confidence_percentile: float = 10.0
  batch_size: int = 2
  seed: int = 0
  worker_count: int = 0
  shuffle: bool = True

  def __post_init__(self):
    for name in ("height", "width"):
      value = getattr(self, name)
      if value < 32 or value % 32:
        raise ValueError(f"{name}: expected a positive multiple of 32, got {value}")
    for name in ("num_points", "batch_size"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
    if self.worker_count < 0:
      raise ValueError(f"worker_count: expected >= 0, got {self.worker_count}")
    if self.sampling not in SAMPLINGS:
      raise ValueError(f"sampling: expected one of {SAMPLINGS}, got {self.sampling!r}")
    if self.context not in CONTEXTS:
      raise ValueError(f"context: expected one of {CONTEXTS}, got {self.context!r}")
    if not 0.0 <= self.rho <= 1.0:
      raise ValueError(f"rho: expected a value in [0, 1], got {self.rho}")
    if not 0.0 <= self.min_confidence_percentile <= 100.0:
      raise ValueError(f"min_confidence_percentile: expected a value in [0, 100], got "
                       f"{self.min_confidence_percentile}")
    if not 0 < self.scale_range[0] <= self.scale_range[1]:
      raise ValueError(f"scale_range: expected 0 < lo <= hi, got {self.scale_range}")

  @property
  def photometric(self) -> dict:
    """Keyword arguments of `jaxrecon.rewis3d.augment.strong_photometric`."""
    return dict(blur_prob=self.blur_prob, blur_sigma=self.blur_sigma,
                colour_strength=self.colour_strength, colour_prob=self.colour_prob,
                grayscale_prob=self.grayscale_prob, cutout_prob=self.cutout_prob,
                cutout_size=self.cutout_size)


def lift_record(record, *, min_confidence_percentile: float = 10.0) -> PointCloud:
  """The scene's `PointCloud` (world frame of the reconstruction, its units) from a segmentation
  record: recon depth / confidence / poses, images, intrinsics and the sparse labels of every
  view (so they accumulate in 3D)."""
  return lift(record["recon_depth"], record["recon_confidence"], record["images"],
              record["intrinsics"], record["recon_world_from_cam"], record["sparse_labels"],
              min_confidence_percentile=min_confidence_percentile)


def _npz_num_views(path: str) -> int:
  """v of images.npy in an .npz, read from the array header only (no data)."""
  try:
    with zipfile.ZipFile(path) as archive, archive.open("images.npy") as f:
      version = np.lib.format.read_magic(f)
      shape = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
               else np.lib.format.read_array_header_2_0(f))[0]
  except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
    raise ValueError(f"{path}: cannot read the segmentation record's images ({e})") from e
  if len(shape) != 4:
    raise ValueError(f"{path}: images has shape {shape}, expected (v, h, w, 3)")
  return int(shape[0])


class SegNpzSource:
  """grain random-access source over the (scene, view) pairs of cached segmentation records.

  Element i is a dict {"record": the scene's record (dict of arrays), "cloud": its lifted
  `PointCloud`, "scene": scene index, "target_view": view index}; pairs are ordered scene by
  scene, views in order. Records and clouds are memoised per process (each grain worker holds its
  own copy of the source), at most `max_cached_scenes` scenes, least recently used dropped.

  Args:
    paths: .npz files written by `cache.cache_scenes` from `jaxrecon.rewis3d.records` jobs.
    min_confidence_percentile: lifting's per-view confidence filter (must equal the pipeline
      config's).
    max_cached_scenes: memo size, >= 1.
  """

  def __init__(self, paths: Sequence[str], *, min_confidence_percentile: float = 10.0,
               max_cached_scenes: int = 8):
    self._paths = [str(p) for p in paths]
    if not self._paths:
      raise ValueError("paths: no segmentation record files given")
    if max_cached_scenes < 1:
      raise ValueError(f"max_cached_scenes: expected >= 1, got {max_cached_scenes}")
    self.min_confidence_percentile = float(min_confidence_percentile)
    self._max_cached = int(max_cached_scenes)
    counts = [_npz_num_views(p) for p in self._paths]
    self._pairs = [(s, t) for s, n in enumerate(counts) for t in range(n)]
    self._cache = collections.OrderedDict()
    self._lock = threading.Lock()

  def __len__(self):
    return len(self._pairs)

  def __getstate__(self):  # workers start with an empty memo
    state = dict(self.__dict__)
    state["_cache"] = collections.OrderedDict()
    del state["_lock"]
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._lock = threading.Lock()

  def scene(self, index: int):
    """(record, cloud) of scene `index`, memoised (thread-safe: grain maps on a thread pool)."""
    with self._lock:
      if index in self._cache:
        self._cache.move_to_end(index)
        return self._cache[index]
      path = self._paths[index]
      record = read_npz(path, "segmentation record")
      check_seg_record(record, path)
      cloud = lift_record(record, min_confidence_percentile=self.min_confidence_percentile)
      self._cache[index] = (record, cloud)
      while len(self._cache) > self._max_cached:
        self._cache.popitem(last=False)
      return record, cloud

  def __getitem__(self, index):
    scene, view = self._pairs[index]
    record, cloud = self.scene(scene)
    return {"record": record, "cloud": cloud, "scene": scene, "target_view": view}


def normalise_points(cloud: PointCloud, target_view: int):
  """Centre and scale that map the cloud to unit scale around the target view.

  centre and scale: the target view's robust ball (`data.pointcloud.view_ball`: median centre,
  95th-percentile radius; the ball view-aware sampling uses, so 95% of the target points land in
  the unit ball and its context in the ball of radius radius_scale, and a far sky point cannot
  shrink the scene to a dot). Without target-view points the whole cloud is used; for an empty
  cloud (or a zero radius) centre 0 and scale 1.

  Returns:
    centre (3,) float64 and scale float (world units of the reconstruction).
  """
  xyz = cloud.xyz.astype(np.float64)
  ref = xyz[cloud.view == int(target_view)]
  if not len(ref):
    ref = xyz
  if not len(ref):
    return np.zeros(3), 1.0
  centre, radius = view_ball(ref)
  return centre, (radius if radius > 1e-12 else 1.0)


def make_seg_sample(record, cloud: PointCloud | None, target_view: int, rng: np.random.Generator,
                    config: SegPipelineConfig) -> dict:
  """One fixed-shape segmentation sample of `target_view` (see the module docstring).

  Args:
    record: segmentation record (dict of arrays, `jaxrecon.rewis3d.records`), v views of h x w pixels.
    cloud: the record's lifted cloud (`lift_record`), or None to lift it here.
    target_view: index in [0, v).
    rng: numpy Generator, the only source of randomness.
    config: SegPipelineConfig (crop H x W, N points, augmentations).
  Returns:
    dict of the arrays listed in the module docstring.
  """
  images = np.asarray(record["images"])
  v, h, w = images.shape[:3]
  if isinstance(target_view, bool) or int(target_view) != target_view or not 0 <= target_view < v:
    raise ValueError(f"target_view: expected an integer in [0, {v}), got {target_view!r}")
  t = int(target_view)
  if cloud is None:
    cloud = lift_record(record, min_confidence_percentile=config.min_confidence_percentile)
  if cloud.image_hw != (h, w):
    raise ValueError(f"cloud: image_hw {cloud.image_hw} differs from the record's {(h, w)}")
  out_hw = (config.height, config.width)
  n = config.num_points

  geom = shared_geometry((h, w), rng, out_hw=out_hw, scale_range=config.scale_range,
                         flip_prob=config.flip_prob)
  image_weak = apply_geometry_image(images[t], geom)
  image_strong, _ = strong_photometric(image_weak, rng, **config.photometric)
  labels = apply_geometry_labels(record["sparse_labels"][t], geom).astype(np.int32)
  dense_labels = apply_geometry_labels(record["dense_labels"][t], geom).astype(np.int32)

  if config.context == "target_view":
    pool = np.flatnonzero(cloud.view == t)
    sub = PointCloud(xyz=cloud.xyz[pool], rgb=cloud.rgb[pool], confidence=cloud.confidence[pool],
                     view=cloud.view[pool], pixel=cloud.pixel[pool], label=cloud.label[pool],
                     image_hw=cloud.image_hw)
  else:
    pool, sub = None, cloud
  if config.sampling == "view_aware":
    indices, valid = view_aware_sample(sub, t, rng, num_points=n, rho=config.rho,
                                       radius_scale=config.radius_scale)
  else:
    indices, valid = random_sample(sub, rng, num_points=n)
  if pool is not None and len(pool):  # back to indices of the whole cloud (padding stays 0)
    indices = np.where(valid, pool[indices], 0)
  pixel = apply_geometry_pixels(correspondences(cloud, indices, valid, t), geom, (h, w))

  centre, scale = normalise_points(cloud, t)
  picked = indices[valid]
  xyz = (cloud.xyz[picked].astype(np.float64) - centre) / scale
  points_weak = np.zeros((n, 3), np.float32)
  points_strong = np.zeros((n, 3), np.float32)
  up = tuple(np.asarray(record["up"], np.float64)) if "up" in record else config.up
  points_weak[valid] = augment_points(xyz, rng, **{**WEAK_POINTS, "up": up})
  points_strong[valid] = augment_points(xyz, rng, **{**STRONG_POINTS, "up": up})
  rgb = np.zeros((n, 3), np.float32)
  rgb[valid] = cloud.rgb[picked].astype(np.float32) / 255.0
  label = np.full(n, IGNORE_LABEL, np.int32)
  label[valid] = cloud.label[picked]
  confidence = np.zeros(n, np.float32)
  confidence[valid] = cloud.confidence[picked]
  return {"image_weak": image_weak, "image_strong": image_strong, "labels": labels,
          "dense_labels": dense_labels, "points_weak": points_weak,
          "points_strong": points_strong, "points_rgb": rgb, "points_label": label,
          "points_confidence": confidence, "points_valid": valid.astype(bool),
          "points_pixel": pixel.astype(np.int32)}


def _element_sample(element, rng, *, config: SegPipelineConfig) -> dict:
  return make_seg_sample(element["record"], element["cloud"], element["target_view"], rng, config)


def make_seg_dataset(source, config: SegPipelineConfig, *, process_index: int = 0,
                     process_count: int = 1) -> grain.IterDataset:
  """Infinite iterable dataset of batches (dicts of (batch_size, ...) arrays) for one process.

  Args:
    source: `SegNpzSource` (or any random-access source of elements {"record", "cloud",
      "target_view"}); its min_confidence_percentile must equal the config's.
    config: SegPipelineConfig.
    process_index, process_count: each process yields its own `batch_size` rows of every global
      batch of (scene, view) samples (`jaxrecon.data.batching.ProcessRows`), so N processes feed
      the batches one process with N x batch_size would.
  """
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index: expected 0 <= process_index < process_count = "
                     f"{process_count}, got {process_index}")
  percentile = getattr(source, "min_confidence_percentile", config.min_confidence_percentile)
  if percentile != config.min_confidence_percentile:
    raise ValueError(f"source: lifts with min_confidence_percentile {percentile}, the config asks "
                     f"for {config.min_confidence_percentile}")
  if len(source) < 1:
    raise ValueError("source: no (scene, view) pairs")
  check_seg_record(source[0]["record"], "element 0")  # fail early on a malformed source
  # A partial, not a lambda: worker processes receive the pipeline pickled.
  return batched_dataset(source, functools.partial(_element_sample, config=config),
                         seed=config.seed, shuffle=config.shuffle, batch_size=config.batch_size,
                         worker_count=config.worker_count, process_index=process_index,
                         process_count=process_count)


def seg_eval_samples(paths: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
  """Every view of the held-out scenes, full frame and unaugmented, for mIoU.

  Args:
    paths: segmentation record .npz files.
  Returns:
    list of (image (h, w, 3) uint8, dense_labels (h, w) uint8, 255 = unknown), scenes in the
    given order, views in order.
  """
  out = []
  for path in paths:
    try:
      with np.load(path, allow_pickle=False) as data:
        images, dense = data["images"], data["dense_labels"]
    except (OSError, ValueError, KeyError) as e:
      raise ValueError(f"{path}: cannot read images / dense_labels ({e})") from e
    if images.shape[:3] != dense.shape or images.dtype != np.uint8:
      raise ValueError(f"{path}: images {images.dtype} {images.shape} do not match dense_labels "
                       f"{dense.shape}")
    out.extend((images[i], dense[i].astype(np.uint8)) for i in range(images.shape[0]))
  return out
