"""How many RANSAC iterations a decision needs (Fischler & Bolles, CACM 1981; Hartley & Zisserman,
"Multiple View Geometry", 2nd ed., sec. 4.7.1), shared by the matcher's verification
(`experts.matcher`) and the fit's two-view models (`fit.twoview`).
"""
from __future__ import annotations

import numpy as np


def iterations(min_inlier_ratio: float, sample_size: int, confidence: float, *,
               margin: float = 3.0, floor: int = 100, cap: int = 1000) -> int:
  """Iterations after which a model supported by at least `min_inlier_ratio` of the data has been
  sampled from inliers only with probability `confidence`.

  Where a caller only cares about models with at least that support (a pair is kept only with
  min_inliers inliers; a homography matters only if it holds most of the essential matrix's
  inliers), RANSAC can stop there: its own adaptive rule, applied to the best ratio found so far,
  would run at least as long only while no such model has been found. The count
  N = log(1 - confidence) / log(1 - w^s) assumes every all-inlier sample recovers the whole
  inlier set; with noisy points only some do, so N is multiplied by `margin` (3: at 1x the
  matcher lost one true lego pair, 15 inliers of 38 candidates), and `floor` <= result <= `cap`.

  Args:
    min_inlier_ratio: w in [0, 1]; 0 (nothing known) gives `cap`.
    sample_size: s, points per minimal sample (5: essential matrix, 4: homography).
    confidence: in (0, 1).
  """
  ratio = min(max(float(min_inlier_ratio), 0.0), 1.0)
  miss = 1.0 - ratio ** sample_size
  if miss >= 1.0:
    return cap
  if miss <= 0.0:
    return floor
  needed = margin * np.log(1.0 - confidence) / np.log(miss)
  return int(np.clip(np.ceil(needed), floor, cap))
