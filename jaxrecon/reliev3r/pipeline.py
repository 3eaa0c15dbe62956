"""Deterministic, resumable grain pipelines of multi-view training samples.

A *record* is one scene as a dict of numpy arrays (what `python -m jaxrecon.prepare` caches in one
.npz per scene): V views of H x W pixels and T tracks,

    images (V, H, W, 3) uint8        intrinsics (V, 3, 3)           mono_depth (V, H, W) float
    tracks (T, V, 2) float (NaN = not seen)                         visibility (T, V) bool
    optional: depth (V, H, W) (0 = unknown), cam_from_world (V, 4, 4), labels (V, H, W) uint8.

A *sample* takes `num_views` views of one record, one random zoom-crop for all of them resized to
(height, width) with the intrinsics and track pixels updated, a photometric jitter per view, and a
fixed number of tracks (those seen in at least two of the chosen views, padded with NaN / not
visible). Every array has a fixed shape, so batches stack and the train step compiles once.

Determinism: grain's MapDataset derives each element's random stream from (seed, index), so the
sequence of batches depends on the seed alone, not on the worker count or on where it resumes;
`iterator.get_state()` / `set_state()` restart it exactly.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Mapping, Sequence

import grain
import numpy as np

from jaxrecon.data.batching import batched_dataset
from jaxrecon.data.cache import read_npz, read_npz_arrays
from jaxrecon.data.transforms import crop_resize_camera, resize_images, resize_nearest
from jaxrecon.errors import UserError

REQUIRED = ("images", "intrinsics", "mono_depth", "tracks", "visibility")
OPTIONAL = ("depth", "cam_from_world", "labels")
VIEW_SELECTIONS = ("window", "random")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """Shapes, randomness and parallelism of a pipeline (all fixed by the config, never implicit).

  num_views: v views per sample. height, width: output size in pixels. max_tracks: t.
  view_selection: "window" (v consecutive views from a random start) or "random" (the first view
    random, the others random among views sharing at least `min_shared_tracks` tracks with it).
  zoom: (low, high) range of the random zoom; 1 = the largest crop of the output aspect ratio.
  photometric: strength of the per-view brightness / contrast / colour jitter (0 = off).
  batch_size: samples per batch (per process). seed: the one seed of the whole pipeline.
  worker_count: grain worker processes (0 = in the main process); results do not depend on it.
  shuffle: reshuffle the records every epoch.
  """
  num_views: int = 4
  height: int = 64
  width: int = 64
  max_tracks: int = 256
  view_selection: str = "window"
  min_shared_tracks: int = 8
  zoom: tuple = (1.0, 1.25)
  photometric: float = 0.1
  batch_size: int = 2
  seed: int = 0
  worker_count: int = 0
  shuffle: bool = True

  def __post_init__(self):
    if self.view_selection not in VIEW_SELECTIONS:
      raise ValueError(f"view_selection: expected one of {VIEW_SELECTIONS}, "
                       f"got {self.view_selection!r}")
    if not 1.0 <= self.zoom[0] <= self.zoom[1]:
      raise ValueError(f"zoom: expected 1 <= low <= high, got {self.zoom}")
    for name in ("num_views", "height", "width", "max_tracks", "batch_size"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")


class NpzSource:
  """grain random-access source over cached scenes, one .npz per scene (loaded without pickle);
  each record is checked on loading (`check_record`), errors naming its file."""

  def __init__(self, paths: Sequence[str]):
    self._paths = [str(p) for p in paths]
    if not self._paths:
      raise UserError("paths: no scene files given")

  def __len__(self):
    return len(self._paths)

  def __getitem__(self, index):
    record = read_npz(self._paths[index])
    check_record(record, self._paths[index])
    return record

  def name(self, index: int) -> str:
    return self._paths[index]

  def check_views(self, num_views: int) -> None:
    """Every file has at least `num_views` views (reads only the visibility arrays); UserError
    naming the first that has fewer, before training starts rather than at its first sample."""
    for path in self._paths:
      views = read_npz_arrays(path, ["visibility"])["visibility"].shape[-1]
      if views < num_views:
        raise UserError(f"{path}: {views} views, fewer than the pipeline's num_views={num_views} "
                        f"(lower pipeline.num_views, or re-run prepare with --config.min_views="
                        f"{num_views} to leave such scenes out)")


def check_record(record: Mapping[str, np.ndarray], name: str = "record") -> None:
  """Raises UserError naming the record (its file) and key when a record misses keys or has bad
  shapes."""
  missing = [k for k in REQUIRED if k not in record]
  if missing:
    raise UserError(f"{name}: missing {missing}")
  v, h, w = np.shape(record["images"])[:3]
  t = np.shape(record["tracks"])[0]
  want = {"images": (v, h, w, 3), "intrinsics": (v, 3, 3), "mono_depth": (v, h, w),
          "tracks": (t, v, 2), "visibility": (t, v), "depth": (v, h, w),
          "cam_from_world": (v, 4, 4), "labels": (v, h, w)}
  for key, shape in want.items():
    if key in record and np.shape(record[key]) != shape:
      raise UserError(f"{name}: {key} has shape {np.shape(record[key])}, expected {shape}")


def select_views(visibility, num_views, rng, *, mode="window", min_shared_tracks=8):
  """Indices (num_views,) of the views of one sample.

  Args:
    visibility: (T, V) bool tracks x views of the record.
    num_views: v <= V.
    rng: numpy Generator.
    mode: "window" (consecutive, random start) or "random" (views sharing >= min_shared_tracks
      tracks with a random first view; topped up with the best-connected others if too few).
  """
  total = visibility.shape[1]
  if num_views > total:
    raise UserError(f"num_views: a record has {total} views, fewer than {num_views}")
  if mode == "window":
    start = rng.integers(0, total - num_views + 1)
    return np.arange(start, start + num_views)
  first = rng.integers(0, total)
  shared = np.sum(visibility & visibility[:, first:first + 1], axis=0)
  shared[first] = -1
  pool = np.flatnonzero(shared >= min_shared_tracks)
  if len(pool) >= num_views - 1:
    others = rng.choice(pool, num_views - 1, replace=False)
  else:  # not enough overlap: take the best-connected views
    others = np.argsort(-shared, kind="stable")[:num_views - 1]
  return np.concatenate([[first], np.sort(others)])


def crop_box(src_hw, out_hw, zoom, rng):
  """A random integer crop (top, left, crop_h, crop_w) of about the output aspect ratio, zoomed
  by a factor drawn from `zoom` (1 = the largest such crop)."""
  (h, w), (oh, ow) = src_hw, out_hw
  scale = min(h / oh, w / ow) / rng.uniform(*zoom)
  ch, cw = min(h, max(1, round(oh * scale))), min(w, max(1, round(ow * scale)))
  return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw


def photometric_jitter(images, rng, strength):
  """Per-view brightness, contrast and colour gains on (v, h, w, 3) float images in [0, 1]."""
  v = images.shape[0]
  gain = 1.0 + strength * rng.uniform(-1, 1, (v, 1, 1, 1))
  colour = 1.0 + 0.5 * strength * rng.uniform(-1, 1, (v, 1, 1, 3))
  bias = 0.5 * strength * rng.uniform(-1, 1, (v, 1, 1, 1))
  mean = images.mean(axis=(1, 2, 3), keepdims=True)
  return np.clip((images - mean) * gain * colour + mean + bias, 0.0, 1.0)


def pick_tracks(tracks, visibility, max_tracks, rng):
  """Up to max_tracks tracks seen in >= 2 views, in random order, padded to fixed shapes.

  Returns: tracks (max_tracks, v, 2) float32 (NaN where not visible), visibility (max_tracks, v).
  """
  usable = np.flatnonzero(visibility.sum(axis=1) >= 2)
  chosen = rng.permutation(usable)[:max_tracks]
  v = tracks.shape[1]
  out = np.full((max_tracks, v, 2), np.nan, np.float32)
  vis = np.zeros((max_tracks, v), bool)
  vis[:len(chosen)] = visibility[chosen]
  out[:len(chosen)] = np.where(vis[:len(chosen), :, None], tracks[chosen], np.nan)
  return out, vis


def make_sample(record, rng, config: PipelineConfig):
  """One fixed-shape training sample from a record (see the module docstring)."""
  out_hw = (config.height, config.width)
  views = select_views(np.asarray(record["visibility"], bool), config.num_views, rng,
                       mode=config.view_selection, min_shared_tracks=config.min_shared_tracks)
  src_hw = np.shape(record["images"])[1:3]
  box = crop_box(src_hw, out_hw, config.zoom, rng)
  intrinsics, pix = crop_resize_camera(record["intrinsics"][views], record["tracks"][:, views],
                                       box, out_hw)
  top, left, ch, cw = box
  cut = lambda key: np.asarray(record[key])[views, top:top + ch, left:left + cw]
  inside = np.all((pix >= 0) & (pix <= [out_hw[1] - 1, out_hw[0] - 1]), axis=-1)
  visible = np.asarray(record["visibility"], bool)[:, views] & inside & np.all(np.isfinite(pix), -1)
  tracks, visibility = pick_tracks(pix, visible, config.max_tracks, rng)
  images = resize_images(cut("images"), out_hw).astype(np.float32) / 255.0
  if config.photometric > 0:
    images = photometric_jitter(images, rng, config.photometric).astype(np.float32)
  # Depth-like maps and labels use nearest neighbour: blending across a depth edge would invent
  # surfaces floating between foreground and background.
  nearest = lambda key, dtype: resize_nearest(cut(key), out_hw).astype(dtype)
  sample = {"images": images, "intrinsics": intrinsics.astype(np.float32), "tracks": tracks,
            "visibility": visibility, "mono_depth": nearest("mono_depth", np.float32)}
  if "depth" in record:
    sample["depth"] = nearest("depth", np.float32)
  if "labels" in record:
    sample["labels"] = nearest("labels", np.uint8)
  if "cam_from_world" in record:
    sample["cam_from_world"] = np.asarray(record["cam_from_world"][views], np.float32)
  return sample


def make_dataset(source, config: PipelineConfig, *, process_index: int = 0,
                 process_count: int = 1) -> grain.IterDataset:
  """Infinite iterable dataset of batches (dicts of (batch_size, ...) arrays) for one process.

  Args:
    source: a random-access source of records (a list of dicts, or `NpzSource`).
    config: PipelineConfig.
    process_index, process_count: each process yields its own `batch_size` rows of every global
      batch (`jaxrecon.data.batching.ProcessRows`), so N processes feed the batches one process
      with N x batch_size would, and each sample is made by one process only.
  """
  if isinstance(source, NpzSource):
    source.check_views(config.num_views)
  for i in range(min(len(source), 3)):  # fail early, naming the record, on a malformed source
    name = source.name(i) if isinstance(source, NpzSource) else f"record {i}"
    check_record(source[i], name)
  # A partial, not a lambda: worker processes receive the pipeline pickled.
  return batched_dataset(source, functools.partial(make_sample, config=config), seed=config.seed,
                         shuffle=config.shuffle, batch_size=config.batch_size,
                         worker_count=config.worker_count, process_index=process_index,
                         process_count=process_count)
