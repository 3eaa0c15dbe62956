"""XFeat correspondences of a scene: batched extraction, batched pair matching, host verification.

The jit-compiled, fixed-shape parts (`xfeat_match.extract_features` over chunks of views,
`xfeat_match.match_pairs` or `lighterglue.match_pairs` over chunks of view pairs) run on the
accelerator; the essential-matrix RANSAC with known K (`matcher.verify_matches`) and the
union-find track building (`tracks.build_tracks`) run on the host, exactly as for SIFT, so the
trackers differ only in their correspondences.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon.experts import xfeat_match
from jaxrecon.experts.matcher import MatcherSettings, verify_matches, view_pairs

MATCHERS = ("xfeat", "xfeat_lighterglue")
# Views per extraction call and pairs per matching call: bounds device memory (the similarity
# matrices of a chunk of pairs are pairs x top_k^2 floats) while keeping the batch dimension.
VIEW_CHUNK = 8
PAIR_CHUNK = 8
TRIM = 512


def _chunks(n: int, size: int):
  return [range(s, min(n, s + size)) for s in range(0, n, size)]


def extract_scene(images, settings: xfeat_match.XFeatSettings) -> xfeat_match.XFeatFeatures:
  """`xfeat_match.extract_features` over v same-size images in chunks of `VIEW_CHUNK` views.

  The last chunk is padded with copies of its first view, so every call has the same shape and
  one compilation serves the whole scene. Returns (v, top_k, ...) arrays.
  """
  images = np.asarray(images)
  v = len(images)
  parts = []
  for chunk in _chunks(v, VIEW_CHUNK):
    batch = images[list(chunk)]
    if len(batch) < min(v, VIEW_CHUNK):
      batch = np.concatenate([batch, np.repeat(batch[:1], min(v, VIEW_CHUNK) - len(batch), 0)])
    parts.append(jax.tree.map(lambda a, n=len(chunk): a[:n],
                              xfeat_match.extract_features(batch, settings)))
  return xfeat_match.XFeatFeatures(*(jnp.concatenate(a) for a in zip(*parts)))


def candidate_matches(features: xfeat_match.XFeatFeatures, pairs: Sequence[tuple[int, int]],
                      settings: xfeat_match.XFeatSettings, method: str = "xfeat",
                      image_size: tuple[int, int] | None = None) -> list[np.ndarray]:
  """Unverified matches of the given view pairs, batched `PAIR_CHUNK` pairs per call.

  Args:
    features: (v, k, ...) `XFeatFeatures` of the scene.
    pairs: (i, j) view pairs.
    settings: `XFeatSettings` (min_cossim for mutual NN; LighterGlue uses its own threshold).
    method: 'xfeat' (mutual nearest neighbours) or 'xfeat_lighterglue'.
    image_size: (h, w) of the images, pixels (LighterGlue normalises keypoints with it).
  Returns:
    one (m, 2) int64 array of keypoint index pairs per view pair.
  """
  if method not in MATCHERS:
    raise ValueError(f"method must be one of {MATCHERS}, got {method!r}")
  if method == "xfeat_lighterglue":
    from jaxrecon.experts import lighterglue  # the matcher's weights load only when used
    if image_size is None:
      raise ValueError("image_size (h, w) is needed by LighterGlue")
  # Valid rows are a prefix (sorted by score): matching only the first k' rows, k' the scene's
  # largest keypoint count rounded up to a multiple of TRIM (few distinct shapes, few compiles),
  # gives the same matches for less work (attention and similarity are quadratic in k).
  most = int(np.asarray(features.valid).sum(axis=1).max(initial=1))
  budget = min(features.valid.shape[1], -(-max(most, 1) // TRIM) * TRIM)
  features = xfeat_match.XFeatFeatures(*(a[:, :budget] for a in features))
  out = []
  pairs = list(pairs)
  for chunk in _chunks(len(pairs), PAIR_CHUNK):
    idx = [pairs[n] for n in chunk]
    idx += [idx[0]] * (min(len(pairs), PAIR_CHUNK) - len(idx))  # fixed shape: pad, then drop
    left = jnp.asarray([p[0] for p in idx])
    right = jnp.asarray([p[1] for p in idx])
    if method == "xfeat":
      match, _ = xfeat_match.match_pairs(features, left, right, settings.min_cossim)
    else:
      match, _ = lighterglue.match_pairs(features, left, right, image_size,
                                         lighterglue.LighterGlueSettings())
    match = np.asarray(match)
    for row in range(len(chunk)):
      first = np.flatnonzero(match[row] >= 0)
      out.append(np.stack([first, match[row, first]], axis=1).astype(np.int64))
  return out


def xfeat_match_views(images, intrinsics: np.ndarray,
                      matcher: MatcherSettings = MatcherSettings(),
                      xfeat: xfeat_match.XFeatSettings = xfeat_match.XFeatSettings(),
                      method: str = "xfeat",
                      ) -> tuple[list[np.ndarray], dict[tuple[int, int], np.ndarray]]:
  """XFeat keypoints of v same-size images and verified matches of the pairs `matcher.window`
  selects (the XFeat counterpart of `matcher.match_views`).

  Args:
    images: (v, h, w, 3) RGB or (v, h, w) grey, uint8 or float in [0, 1].
    intrinsics: (v, 3, 3) K per view, pixels.
    matcher: RANSAC and pair settings (ransac_*, window, seed; min_inliers comes from `xfeat`;
      the SIFT-only max_features, ratio and mutual are unused).
    xfeat: `XFeatSettings`.
    method: 'xfeat' or 'xfeat_lighterglue'.
  Returns:
    (keypoints, matches): v arrays (n_i, 2) float32 pixel (u, v), best score first; dict
    (i, j) -> (m, 2) int64 verified index pairs for every pair that passed verification.
  """
  images = np.asarray(images)
  intrinsics = np.asarray(intrinsics, np.float64)
  if images.ndim not in (3, 4):
    raise ValueError(f"images must be (v, h, w[, c]) of one size, got shape {images.shape}")
  if intrinsics.shape != (len(images), 3, 3):
    raise ValueError(f"intrinsics must be ({len(images)}, 3, 3), got {intrinsics.shape}")
  features = extract_scene(images, xfeat)
  counts = np.asarray(features.valid).sum(axis=1)  # valid rows are a prefix (sorted by score)
  points = np.asarray(features.keypoints)
  keypoints = [points[i, :counts[i]] for i in range(len(images))]
  pairs = view_pairs(len(images), matcher.window)
  candidates = candidate_matches(features, pairs, xfeat, method, images.shape[1:3])
  matcher = dataclasses.replace(matcher, min_inliers=xfeat.min_inliers)
  matches = {}
  for (i, j), pair in zip(pairs, candidates):
    verified = verify_matches(keypoints[i], keypoints[j], pair, intrinsics[i], intrinsics[j],
                              matcher)
    if len(verified):
      matches[(i, j)] = verified
  return keypoints, matches
