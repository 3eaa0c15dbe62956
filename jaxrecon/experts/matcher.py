"""Pairwise SIFT matching with geometric verification under known intrinsics (numpy + OpenCV).

Pipeline per image: grey conversion, OpenCV SIFT keypoints and descriptors. Per view pair (i, j):
two-nearest-neighbour search in both directions (exhaustive, a matmul each), Lowe's ratio
test, a mutual (cross) check, then an essential-matrix RANSAC on K-normalised coordinates; only
RANSAC inliers are kept.

Pixels follow `jaxrecon.geometry`: (u, v) = (column, row), centre of the top-left pixel at (0, 0)
(OpenCV's keypoint convention). Everything here is host-side numpy; nothing is jit-compiled.
Determinism: cv2's RANSAC is seeded with `cv2.setRNGSeed(settings.seed)` before every pair, so the
same images and settings give the same matches whatever the pair order or the process.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import os
from typing import NamedTuple, Sequence

import cv2
import numpy as np

from jaxrecon import ransac


@dataclasses.dataclass(frozen=True)
class MatcherSettings:
  """Settings of `detect_features` / `match_pair` / `match_views`.

  max_features: SIFT keypoints kept per image (the strongest); 0 keeps all.
  ratio: Lowe's ratio test: keep a match when best distance < ratio * second best.
  mutual: keep only matches that are each other's nearest neighbour in both directions.
  ransac_threshold_px: RANSAC inlier threshold, pixels (converted to normalised image
    coordinates with the mean focal length of the pair).
  ransac_confidence: RANSAC confidence in (0, 1).
  min_inliers: pairs with fewer verified matches are discarded entirely (their geometry is not
    trustworthy).
  window: match view i with views j in (i, i + window]; None matches all pairs (v (v - 1) / 2).
    Use a window for ordered sequences where far views barely overlap.
  seed: seed of cv2's RANSAC random generator.
  precise_upscale: OpenCV's `enable_precise_upscale`. Its default upsampling of the first octave
    maps pixel x to 2x + 0.5 instead of 2x, which moves every keypoint by +0.25 px in u and v
    (measured: flipped images detect at the mirrored positions only with it on). A constant shift
    is a principal-point error, i.e. a rotation bias of 0.25 / f rad (0.05 deg at f = 277 px).
  """
  max_features: int = 4000
  ratio: float = 0.8
  mutual: bool = True
  ransac_threshold_px: float = 1.0
  ransac_confidence: float = 0.999
  min_inliers: int = 15
  window: int | None = None
  seed: int = 0
  precise_upscale: bool = True

  def __post_init__(self):
    if not 0.0 < self.ratio <= 1.0:
      raise ValueError(f"ratio must lie in (0, 1], got {self.ratio}")
    if self.ransac_threshold_px <= 0:
      raise ValueError(f"ransac_threshold_px must be positive, got {self.ransac_threshold_px}")
    if not 0.0 < self.ransac_confidence < 1.0:
      raise ValueError(f"ransac_confidence must lie in (0, 1), got {self.ransac_confidence}")
    if self.window is not None and self.window < 1:
      raise ValueError(f"window must be >= 1 or None, got {self.window}")
    if self.max_features < 0 or self.min_inliers < 5:
      raise ValueError("max_features must be >= 0 and min_inliers >= 5 (the 5-point minimum)")


class Features(NamedTuple):
  """SIFT features of one image.

  keypoints: (n, 2) float32 pixel positions (u, v).
  descriptors: (n, 128) float32 SIFT descriptors.
  """
  keypoints: np.ndarray
  descriptors: np.ndarray


def _grey(image: np.ndarray) -> np.ndarray:
  image = np.asarray(image)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  if image.ndim == 3:
    # RGB in (the jaxrecon image layout); the grey weights barely matter for SIFT.
    image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
  if image.ndim != 2:
    raise ValueError(f"expected an (h, w) or (h, w, c) image, got shape {image.shape}")
  if image.dtype != np.uint8:
    # Float images in [0, 1] are the other common layout; SIFT wants 8-bit.
    image = np.clip(np.asarray(image, np.float64) * 255.0 + 0.5, 0, 255).astype(np.uint8)
  return image


def detect_features(image: np.ndarray, settings: MatcherSettings = MatcherSettings()) -> Features:
  """SIFT keypoints and descriptors of one image ((h, w, 3) RGB or (h, w) grey; uint8 or float
  in [0, 1]). Returns `Features` (possibly with n = 0)."""
  sift = cv2.SIFT_create(nfeatures=settings.max_features,
                         enable_precise_upscale=settings.precise_upscale)
  keypoints, descriptors = sift.detectAndCompute(_grey(image), None)
  if descriptors is None or not keypoints:
    return Features(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32))
  points = np.asarray([kp.pt for kp in keypoints], dtype=np.float32).reshape(-1, 2)
  return Features(points, np.asarray(descriptors, np.float32))


def _nearest_two(query: np.ndarray, train: np.ndarray, ratio: float,
                 rows_per_block: int) -> np.ndarray:
  """(n,) index into train of each query row's nearest descriptor if it passes the ratio test,
  else -1 (query (n, d), train (m, d) float32, m >= 1; ties go to the lower index)."""
  out = np.full(len(query), -1, np.int64)
  # Squared distances |q|^2 + |t|^2 - 2 q.t from one float32 matmul per block of query rows,
  # the norms folded in as two extra columns ([q, |q|^2, 1] . [-2 t, 1, |t|^2]) so that no pass
  # over the matrix adds them. SIFT descriptors have norm ~512 and nearest distances ~100-300:
  # float32's cancellation error (~0.03) is far below them.
  q_aug = np.concatenate([query, (query * query).sum(1, keepdims=True),
                          np.ones((len(query), 1), np.float32)], 1)
  t_aug = np.concatenate([-2.0 * train, np.ones((len(train), 1), np.float32),
                          (train * train).sum(1, keepdims=True)], 1).T
  for start in range(0, len(query), rows_per_block):
    distances = q_aug[start:start + rows_per_block] @ t_aug
    rows = np.arange(len(distances))
    nearest = np.argmin(distances, axis=1)
    best = distances[rows, nearest]
    distances[rows, nearest] = np.inf                 # in place: the block is ours
    second = distances.min(axis=1)
    # d1 < ratio * d2  <=>  d1^2 < ratio^2 d2^2 (clamped: the expansion can go slightly negative
    # for identical descriptors).
    keep = np.maximum(best, 0.0) < ratio * ratio * np.maximum(second, 0.0)
    out[start:start + len(distances)] = np.where(keep, nearest, -1)
  return out


def _ratio_matches(query: np.ndarray, train: np.ndarray, ratio: float,
                   rows_per_block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
  """Lowe's ratio test by exhaustive L2 search, in both directions.

  Args:
    query, train: (n, d), (m, d) float descriptors.
    ratio: keep a match when its distance < ratio * the second nearest's.
    rows_per_block: query rows per distance block (memory: rows_per_block x m float32).
  Returns:
    (forward, backward): (n,) int index into train of the query -> train survivors, -1
    elsewhere; (m,) int index into query of the train -> query survivors, -1 elsewhere.
  """
  # Each direction is its own matmul with row-wise reductions: a reduction down the columns of
  # the same matrix (np.argmin(axis=0)) is 50x slower than along its rows, more than the second
  # matmul costs (lego, 3k x 3k: 96 ms vs 4 ms). 5x faster than OpenCV's brute-force knnMatch
  # per direction, with the same matches (test against cv2.BFMatcher on real images).
  query = np.asarray(query, np.float32)
  train = np.asarray(train, np.float32)
  n, m = len(query), len(train)
  # Without a second neighbour there is no ratio test (OpenCV's 2-NN returns one): no match.
  forward = _nearest_two(query, train, ratio, rows_per_block) if m >= 2 else np.full(n, -1)
  backward = _nearest_two(train, query, ratio, rows_per_block) if n >= 2 else np.full(m, -1)
  return forward.astype(np.int64), backward.astype(np.int64)


def _normalise(points: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
  """(n, 2) pixels -> (n, 2) normalised image coordinates K^-1 [u v 1] (float64)."""
  homogeneous = np.concatenate([points.astype(np.float64), np.ones((len(points), 1))], axis=1)
  rays = homogeneous @ np.linalg.inv(intrinsics).T
  return rays[:, :2] / rays[:, 2:3]


def match_pair(features_i: Features, features_j: Features, intrinsics_i: np.ndarray,
               intrinsics_j: np.ndarray, settings: MatcherSettings = MatcherSettings(),
               ) -> np.ndarray:
  """Verified matches between two images.

  Args:
    features_i, features_j: `Features` of the two images.
    intrinsics_i, intrinsics_j: (3, 3) K of each view, pixels.
    settings: `MatcherSettings`.
  Returns:
    (m, 2) int64 keypoint index pairs (index into features_i, index into features_j), sorted by
    the first column; m = 0 when the pair fails the ratio/mutual test or has fewer than
    `settings.min_inliers` RANSAC inliers.
  """
  pairs = candidate_matches(features_i, features_j, settings)
  return verify_matches(features_i.keypoints, features_j.keypoints, pairs, intrinsics_i,
                        intrinsics_j, settings)


def candidate_matches(features_i: Features, features_j: Features,
                      settings: MatcherSettings = MatcherSettings()) -> np.ndarray:
  """(m, 2) int64 keypoint index pairs that pass the ratio test (and the mutual check if
  `settings.mutual`), before geometric verification; sorted by the first column."""
  forward, backward = _ratio_matches(features_i.descriptors, features_j.descriptors,
                                     settings.ratio)
  candidates = np.flatnonzero(forward >= 0)
  if settings.mutual and len(candidates):
    candidates = candidates[backward[forward[candidates]] == candidates]
  return np.stack([candidates, forward[candidates]], axis=1)


def verify_matches(keypoints_i: np.ndarray, keypoints_j: np.ndarray, pairs: np.ndarray,
                   intrinsics_i: np.ndarray, intrinsics_j: np.ndarray,
                   settings: MatcherSettings = MatcherSettings()) -> np.ndarray:
  """Geometric verification of candidate matches: essential-matrix RANSAC with known K.

  Shared by every correspondence expert (SIFT here, XFeat in `xfeat_tracker`).
  Args:
    keypoints_i, keypoints_j: (n_i, 2), (n_j, 2) pixel (u, v) of the two views' keypoints.
    pairs: (m, 2) int candidate index pairs (into keypoints_i, into keypoints_j).
    intrinsics_i, intrinsics_j: (3, 3) K of each view, pixels.
    settings: uses ransac_threshold_px, ransac_confidence, min_inliers and seed.
  Returns:
    (m', 2) int64 the RANSAC inliers among `pairs` (same order); empty when fewer than
    `settings.min_inliers` survive.
  """
  empty = np.zeros((0, 2), np.int64)
  pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
  if len(pairs) < settings.min_inliers:
    return empty
  x_i = _normalise(np.asarray(keypoints_i)[pairs[:, 0]], intrinsics_i)
  x_j = _normalise(np.asarray(keypoints_j)[pairs[:, 1]], intrinsics_j)
  # RANSAC on normalised coordinates works for two different K; the threshold is converted from
  # pixels with the pair's mean focal length.
  focal = 0.25 * (intrinsics_i[0, 0] + intrinsics_i[1, 1] + intrinsics_j[0, 0] + intrinsics_j[1, 1])
  threshold = settings.ransac_threshold_px / abs(focal)
  cv2.setRNGSeed(settings.seed)
  try:
    essential, inliers = cv2.findEssentialMat(
        x_i, x_j, np.eye(3), method=cv2.RANSAC, prob=settings.ransac_confidence,
        threshold=threshold,
        # Only a pair with min_inliers matters: RANSAC stops when none can have been missed
        # (templeRing: 81 of 171 pairs fail, and at OpenCV's 1000 iterations they took 1.5 of
        # RANSAC's 1.8 s; the matches stay the same).
        maxIters=ransac.iterations(settings.min_inliers / len(pairs), 5,
                                   settings.ransac_confidence))
  except cv2.error:
    # The five-point solver fails on correspondences without a baseline (the same image twice:
    # every match has zero displacement). Their matches are right all the same: verified by a
    # homography instead, which a zero baseline obeys exactly.
    essential = inliers = None
  if essential is None or inliers is None:
    _, inliers = cv2.findHomography(x_i, x_j, cv2.RANSAC, threshold)
    if inliers is None:
      return empty
  inliers = inliers.reshape(-1).astype(bool)
  if inliers.sum() < settings.min_inliers:
    return empty
  return pairs[inliers]


def view_pairs(num_views: int, window: int | None) -> list[tuple[int, int]]:
  """The (i, j), i < j, pairs that `match_views` matches: all, or j - i <= window."""
  reach = num_views if window is None else window
  return [(i, j) for i in range(num_views) for j in range(i + 1, min(num_views, i + reach + 1))]


def match_views(images: Sequence[np.ndarray], intrinsics: np.ndarray,
                settings: MatcherSettings = MatcherSettings(),
                ) -> tuple[list[Features], dict[tuple[int, int], np.ndarray]]:
  """Detects features in v images and matches the view pairs `settings.window` selects.

  Args:
    images: v images, each (h, w, 3) RGB or (h, w) grey.
    intrinsics: (v, 3, 3) K per view, pixels.
    settings: `MatcherSettings`.
  Returns:
    (features, matches): a list of v `Features`, and a dict (i, j) -> (m, 2) int64 verified
    keypoint index pairs (see `match_pair`) for every matched pair with i < j (pairs that failed
    verification are absent).
  """
  intrinsics = np.asarray(intrinsics, np.float64)
  if intrinsics.shape != (len(images), 3, 3):
    raise ValueError(f"intrinsics must be ({len(images)}, 3, 3), got {intrinsics.shape}")
  pairs = view_pairs(len(images), settings.window)
  # Images and pairs are independent and OpenCV releases the GIL: SIFT and the RANSACs run in
  # threads (on a scene whose pairs mostly fail, each RANSAC runs to its iteration limit; lego,
  # 20 views: 40 s -> see the commit). The ratio tests do not: each is a BLAS matmul that
  # already uses every core, and threads over pairs on top of it oversubscribe them (templeRing
  # 2.06 -> 1.58 s and lego 9.65 -> 6.97 s without). Each RANSAC has its own fixed seed, so the
  # result does not depend on the order the threads run in.
  with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
    features = list(pool.map(lambda image: detect_features(image, settings), images))
    candidates = [candidate_matches(features[i], features[j], settings) for i, j in pairs]
    verified = list(pool.map(
        lambda a: verify_matches(features[a[0][0]].keypoints, features[a[0][1]].keypoints, a[1],
                                 intrinsics[a[0][0]], intrinsics[a[0][1]], settings),
        zip(pairs, candidates)))
  matches = {ij: pair for ij, pair in zip(pairs, verified) if len(pair)}
  return features, matches
