"""Scene point clouds lifted from per-view depth, view-aware subsampling and 2D-3D correspondences.

Rewis3d lifts every frame's (reconstructed) depth into one world-frame point cloud. Each point keeps
where it came from (source view and pixel), its colour, the reconstruction confidence and the sparse
label of its pixel (IGNORE_LABEL where unlabelled), so the sparse labels of all frames accumulate in
3D. For each training target view a fixed-size subsample is drawn (`view_aware_sample`, or the
uniform ablation `random_sample`), and `correspondences` tells, for every sampled point, which pixel
of the target view it came from (or -1).

Conventions are the package's (see `jaxrecon.geometry`): OpenCV camera axes, `world_from_cam` 4x4
camera-to-world poses, pixel centres at integer coordinates, depth = camera-frame z in world units.
Pixels are stored as flat row-major indices `row * w + col` into their source view's (h, w) image.
These are host-side numpy functions (grain data workers; `lift` runs the geometry in float64); randomness comes only from the numpy
Generator passed in.
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np

from jaxrecon.data.scene import IGNORE_LABEL
from jaxrecon.geometry.cameras import backproject_depth


@dataclasses.dataclass(frozen=True)
class PointCloud:
  """n points of one scene, each remembering its source view and pixel.

  xyz: (n, 3) float32 world coordinates (world units).
  rgb: (n, 3) uint8 colour of the source pixel.
  confidence: (n,) float32 reconstruction confidence (higher = more reliable; 1 for ground truth).
  view: (n,) int32 index of the source view.
  pixel: (n,) int32 flat index `row * w + col` of the source pixel in its view's (h, w) image.
  label: (n,) uint8 (sparse) semantic label of the source pixel, IGNORE_LABEL where unlabelled.
  image_hw: (h, w) of the source views, in pixels.

  Arrays are converted to these dtypes on construction; shapes are checked.
  """
  xyz: np.ndarray
  rgb: np.ndarray
  confidence: np.ndarray
  view: np.ndarray
  pixel: np.ndarray
  label: np.ndarray
  image_hw: tuple[int, int]

  def __post_init__(self):
    xyz = np.asarray(self.xyz, np.float32)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
      raise ValueError(f"xyz: expected shape (n, 3), got {xyz.shape}")
    n = xyz.shape[0]
    fields = {"rgb": ((n, 3), np.uint8), "confidence": ((n,), np.float32),
              "view": ((n,), np.int32), "pixel": ((n,), np.int32), "label": ((n,), np.uint8)}
    object.__setattr__(self, "xyz", xyz)
    for name, (shape, dtype) in fields.items():
      value = np.asarray(getattr(self, name))
      if value.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {value.shape}")
      object.__setattr__(self, name, value.astype(dtype, copy=False))
    hw = tuple(int(s) for s in self.image_hw)
    if len(hw) != 2 or min(hw) <= 0:
      raise ValueError(f"image_hw: expected positive (h, w), got {self.image_hw}")
    object.__setattr__(self, "image_hw", hw)
    if n and (self.pixel.min() < 0 or self.pixel.max() >= hw[0] * hw[1]):
      raise ValueError(f"pixel: flat indices must lie in [0, {hw[0] * hw[1]}), got "
                       f"[{self.pixel.min()}, {self.pixel.max()}]")
    if n and self.view.min() < 0:
      raise ValueError(f"view: indices must be >= 0, got min {self.view.min()}")

  @property
  def num_points(self) -> int:
    return int(self.xyz.shape[0])

  def __len__(self) -> int:
    return self.num_points


def confident_pixels(confidence, valid, min_confidence_percentile: float = 10.0) -> np.ndarray:
  """Rewis3d's per-view confidence filter, the one implementation (lifting and export use it).

  Per view, a pixel is kept when it is valid, its confidence is finite, and the confidence is at
  least the view's `min_confidence_percentile`-th percentile taken over that view's valid pixels
  with finite confidence only: sky / holes (invalid) do not shift the threshold, a NaN confidence
  drops that pixel alone (not the view), and about `min_confidence_percentile` % of each view's
  valid points go (ties at the threshold are kept). A view without such pixels keeps nothing.

  Args:
    confidence: (v, h, w) per-pixel confidence, higher = more reliable (any float, may hold NaN).
    valid: (v, h, w) bool, pixels that may be kept at all (e.g. finite depth > 0).
    min_confidence_percentile: in [0, 100]; 0 keeps every valid pixel with finite confidence.
  Returns:
    (v, h, w) bool keep mask.
  """
  if not 0.0 <= min_confidence_percentile <= 100.0:
    raise ValueError(f"min_confidence_percentile must be in [0, 100], got "
                     f"{min_confidence_percentile}")
  confidence = np.asarray(confidence)
  valid = np.asarray(valid, bool) & np.isfinite(confidence)
  if confidence.ndim != 3 or valid.shape != confidence.shape:
    raise ValueError(f"confidence and valid: expected equal shapes (v, h, w), got "
                     f"{confidence.shape} and {valid.shape}")
  keep = np.zeros_like(valid)
  for i in range(confidence.shape[0]):
    if valid[i].any():
      threshold = np.percentile(confidence[i][valid[i]], min_confidence_percentile)
      keep[i] = valid[i] & (confidence[i] >= threshold)
  return keep


def lift(depth, confidence, images, intrinsics, world_from_cam, labels, *,
         min_confidence_percentile: float = 10.0) -> PointCloud:
  """One world point per valid pixel of every view, minus each view's least confident pixels.

  The selection is `export.points.fuse_points`' (Rewis3d's lifting): `confident_pixels` over the
  valid pixels (finite depth > 0 and a finite world point), so sky / holes with depth 0 do not
  shift the percentile and about `min_confidence_percentile` % of each view's valid points are
  dropped. Pixels with non-finite or non-positive depth are always dropped.

  Args:
    depth: (v, h, w) camera-frame z in world units; 0 (or non-finite) where unknown (sky).
    confidence: (v, h, w) per-pixel confidence (higher = more reliable), or None for ground-truth
      depth (all ones: the percentile filter then keeps every valid pixel).
    images: (v, h, w, 3) uint8 RGB.
    intrinsics: (v, 3, 3) K in pixels (top-left pixel centre at (0, 0)).
    world_from_cam: (v, 4, 4) or (v, 3, 4) camera-to-world poses, OpenCV axes.
    labels: (v, h, w) integer (sparse) labels in [0, 255], IGNORE_LABEL where unlabelled, or None
      (every point IGNORE_LABEL).
    min_confidence_percentile: in [0, 100]; 0 keeps every valid pixel.
  Returns:
    `PointCloud` of the kept pixels, views in order, pixels row-major within a view.
  """
  if not 0.0 <= min_confidence_percentile <= 100.0:
    raise ValueError(f"min_confidence_percentile must be in [0, 100], got "
                     f"{min_confidence_percentile}")
  depth = np.asarray(depth)
  if depth.ndim != 3:
    raise ValueError(f"depth: expected shape (v, h, w), got {depth.shape}")
  v, h, w = depth.shape
  confidence = (np.ones(depth.shape, np.float32) if confidence is None
                else np.asarray(confidence, np.float32))
  images = np.asarray(images)
  labels = (np.full(depth.shape, IGNORE_LABEL, np.uint8) if labels is None
            else np.asarray(labels))
  intrinsics = np.asarray(intrinsics, np.float64)
  world_from_cam = np.asarray(world_from_cam, np.float64)
  if confidence.shape != depth.shape:
    raise ValueError(f"confidence: expected shape {depth.shape} like depth, got {confidence.shape}")
  if images.shape != depth.shape + (3,):
    raise ValueError(f"images: expected shape {depth.shape + (3,)}, got {images.shape}")
  if labels.shape != depth.shape:
    raise ValueError(f"labels: expected shape {depth.shape} like depth, got {labels.shape}")
  if labels.size and (labels.min() < 0 or labels.max() > 255):
    raise ValueError(f"labels: values must lie in [0, 255], got [{labels.min()}, {labels.max()}]")
  if intrinsics.shape != (v, 3, 3):
    raise ValueError(f"intrinsics: expected shape {(v, 3, 3)}, got {intrinsics.shape}")
  if world_from_cam.shape not in ((v, 4, 4), (v, 3, 4)):
    raise ValueError(f"world_from_cam: expected shape {(v, 4, 4)} or {(v, 3, 4)}, got "
                     f"{world_from_cam.shape}")

  with jax.enable_x64(True):  # float64 on the host, like the readers' poses
    points = np.asarray(backproject_depth(np.asarray(depth, np.float64), intrinsics,
                                          world_from_cam))                  # (v, h, w, 3) float64
  valid = np.isfinite(depth) & (depth > 0) & np.all(np.isfinite(points), -1)
  keep = confident_pixels(confidence, valid, min_confidence_percentile)
  view = np.broadcast_to(np.arange(v, dtype=np.int32)[:, None, None], depth.shape)
  pixel = np.broadcast_to(np.arange(h * w, dtype=np.int32).reshape(h, w), depth.shape)
  return PointCloud(xyz=points[keep].astype(np.float32), rgb=images[keep].astype(np.uint8),
                    confidence=confidence[keep], view=view[keep], pixel=pixel[keep],
                    label=labels[keep].astype(np.uint8), image_hw=(h, w))


def view_ball(xyz, percentile: float = 95.0):
  """Robust centre and radius of one view's points (view-aware sampling, point normalisation).

  centre = coordinate-wise median, radius = the `percentile`-th percentile of the distances from
  it. A maximum-distance radius (and a mean centre) let a single far point, e.g. sky at large
  depth, inflate the ball over the whole scene, which turns view-aware sampling into random
  sampling; a median and a high percentile move by a fraction of the view's extent at most
  while fewer than 100 - percentile % of the points are outliers.

  Args:
    xyz: (n, 3) points, n >= 1 (world units).
    percentile: in (0, 100].
  Returns:
    centre (3,) float64, radius float >= 0 (world units).
  """
  xyz = np.asarray(xyz, np.float64)
  if xyz.ndim != 2 or xyz.shape[1] != 3 or not len(xyz):
    raise ValueError(f"xyz: expected shape (n >= 1, 3), got {xyz.shape}")
  if not 0.0 < percentile <= 100.0:
    raise ValueError(f"percentile must be in (0, 100], got {percentile}")
  centre = np.median(xyz, axis=0)
  return centre, float(np.percentile(np.linalg.norm(xyz - centre, axis=-1), percentile))


def _check_num_points(num_points) -> int:
  if isinstance(num_points, bool) or int(num_points) != num_points or num_points <= 0:
    raise ValueError(f"num_points must be a positive integer, got {num_points!r}")
  return int(num_points)


def _choose(candidates: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
  """`count` (<= len) distinct entries of `candidates`, uniformly at random, int64."""
  if count <= 0:
    return np.zeros(0, np.int64)
  return rng.choice(candidates.astype(np.int64), size=count, replace=False)


def _pad(chosen: np.ndarray, num_points: int, rng: np.random.Generator):
  """(indices, valid): the chosen indices in random order, then padding (index 0, valid False)."""
  chosen = rng.permutation(chosen.astype(np.int64))
  indices = np.zeros(num_points, np.int64)
  indices[:chosen.size] = chosen
  valid = np.zeros(num_points, bool)
  valid[:chosen.size] = True
  return indices, valid


def random_sample(cloud: PointCloud, rng: np.random.Generator, *, num_points: int):
  """`num_points` distinct points drawn uniformly from the whole cloud (the Rewis3d ablation).

  Args:
    cloud: any `PointCloud` (n points).
    rng: numpy Generator, the only source of randomness.
    num_points: N > 0, the fixed output size.
  Returns:
    indices (N,) int64 into the cloud and valid (N,) bool. The min(N, n) valid entries come first,
    in random order, never repeated; when n < N the rest is padding: index 0 (not a valid index
    of an empty cloud) with valid False. Points are never duplicated to fill the budget.
  """
  num_points = _check_num_points(num_points)
  n = cloud.num_points
  return _pad(_choose(np.arange(n), min(num_points, n), rng), num_points, rng)


def view_aware_sample(cloud: PointCloud, target_view: int, rng: np.random.Generator, *,
                      num_points: int, rho: float = 0.6, radius_scale: float = 1.5):
  """Rewis3d's view-aware sampling: target-view points plus scene context around them.

  Let T be the points whose source view is `target_view`, c their centre and r their robust
  radius (`view_ball`: median and 95th-percentile distance), in world units. The sample holds
  1. round(rho N) points of T (all of T when it has fewer), without replacement;
  2. the rest from the context C = points of other views within radius_scale r of c, without
     replacement;
  3. when C is too small, the remaining budget goes to unused points of T (still distinct);
  4. what is left is padding (index 0, valid False); points are never duplicated.
  If T is empty (the target view lifted no point) the ball is undefined and the context is drawn
  uniformly from the whole cloud.

  Args:
    cloud: `PointCloud` (n points).
    target_view: index of the training target view (>= 0).
    rng: numpy Generator, the only source of randomness.
    num_points: N > 0, the fixed output size.
    rho: fraction of N taken from the target view, in [0, 1].
    radius_scale: ball radius as a multiple of the target view's radius, > 0.
  Returns:
    indices (N,) int64 into the cloud and valid (N,) bool; the valid entries come first, in random
    order, then the padding.
  """
  num_points = _check_num_points(num_points)
  if not 0.0 <= rho <= 1.0:
    raise ValueError(f"rho must be in [0, 1], got {rho}")
  if not radius_scale > 0:
    raise ValueError(f"radius_scale must be > 0, got {radius_scale}")
  if isinstance(target_view, bool) or int(target_view) != target_view or target_view < 0:
    raise ValueError(f"target_view must be a non-negative integer, got {target_view!r}")
  in_view = cloud.view == int(target_view)
  target = np.flatnonzero(in_view)
  if target.size:
    xyz = cloud.xyz.astype(np.float64)
    centre, radius = view_ball(xyz[target])
    dist2 = ((xyz - centre) ** 2).sum(-1)
    context = np.flatnonzero(~in_view & (dist2 <= (radius_scale * radius) ** 2))
  else:
    context = np.flatnonzero(~in_view)
  order = rng.permutation(target.size)                  # T in random order: quota, then top-up
  num_target = min(int(round(rho * num_points)), target.size)
  num_context = min(num_points - num_target, context.size)
  num_extra = min(num_points - num_target - num_context, target.size - num_target)
  chosen = np.concatenate([target[order[:num_target + num_extra]],
                           _choose(context, num_context, rng)])
  return _pad(chosen, num_points, rng)


def correspondences(cloud: PointCloud, indices, valid, target_view: int) -> np.ndarray:
  """Flat pixel of each sampled point in the target view's image, or -1.

  Args:
    cloud: the `PointCloud` that was sampled.
    indices: (N,) integer indices into the cloud (from `view_aware_sample` / `random_sample`).
    valid: (N,) bool, False for padding.
    target_view: index of the target view.
  Returns:
    (N,) int32: `row * w + col` in the target view's (h, w) = cloud.image_hw image for valid points
    lifted from that view, -1 for every other point and for padding. To follow a crop / flip /
    rescale of the target image, map these with the same augmentation's pixel map.
  """
  indices = np.asarray(indices)
  valid = np.asarray(valid, bool)
  if indices.ndim != 1 or valid.shape != indices.shape:
    raise ValueError(f"indices and valid: expected equal shapes (N,), got {indices.shape} and "
                     f"{valid.shape}")
  out = np.full(indices.shape, -1, np.int32)
  if not valid.any():
    return out
  picked = indices[valid].astype(np.int64)
  if picked.min() < 0 or picked.max() >= cloud.num_points:
    raise ValueError(f"indices: valid entries must lie in [0, {cloud.num_points}), got "
                     f"[{picked.min()}, {picked.max()}]")
  hit = cloud.view[picked] == int(target_view)
  out[np.flatnonzero(valid)[hit]] = cloud.pixel[picked[hit]]
  return out
