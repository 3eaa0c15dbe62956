"""A simulated monocular depth expert: ground-truth depth degraded the way real models fail.

For synthetic scenes (where ground truth exists) this produces pseudo-labels with the error
structure Reliev3R's relative depth loss must cope with, per view, in this order:

1. Sky (ground truth 0) gets a plausible but wrong finite depth: `sky_factor` times the view's
   95th-percentile depth, growing towards the top of the image by `sky_gradient` (models paint sky
   as a far wall). Pixels of the optional `wrong_mask` (mirrors, glass) get the depth of a plausible
   surface instead of the true one: the surrounding depth, Gaussian-blurred with
   `wrong_blur_sigma_px` without looking at the masked pixels.
2. A mild monotone distortion d -> m (d / m)^gamma (m: the view's median), gamma uniform in
   `gamma_range`.
3. A low-frequency multiplicative error exp(`lowfreq_sigma` * f), f a smooth unit-variance random
   field (bicubic upsampling of a `lowfreq_cells` x `lowfreq_cells` Gaussian grid).
4. Blurred depth edges: a Gaussian blur with `edge_blur_sigma_px` (cv2).
5. An unknown affine map d -> s d + b s m, with log s uniform in `log_scale_range` and b uniform in
   `shift_range` (so the shift is relative to the view's median depth and never negative).

The output is positive and finite everywhere (including sky): relative depth, *not* metric.
Randomness comes from `numpy.random.default_rng(seed)`, so a call is reproducible.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import cv2
import numpy as np

# Floor of the output: keeps it strictly positive even for degenerate (all-zero) input.
_TINY = 1e-6


class SimulatedDepth(NamedTuple):
  """Output of `SimulatedDepthExpert`.

  depth: (v, h, w) float32 pseudo-label, positive and finite everywhere (relative units).
  scale: (v,) float64 the per-view scale s that was applied.
  shift: (v,) float64 the per-view shift b s m that was added (world units of the input times s).
  gamma: (v,) float64 the per-view exponent of the monotone distortion.
  """
  depth: np.ndarray
  scale: np.ndarray
  shift: np.ndarray
  gamma: np.ndarray


@dataclasses.dataclass(frozen=True)
class SimulatedDepthExpert:
  """Degrades ground-truth depth into monocular pseudo-labels (see the module docstring).

  log_scale_range: (low, high) of the natural log of the per-view scale s.
  shift_range: (low, high) of the per-view shift, as a fraction of the view's median depth
    (before scaling); low >= 0 keeps the output positive.
  gamma_range: (low, high) of the exponent of the monotone distortion (1 = none).
  lowfreq_sigma: standard deviation of the log of the low-frequency multiplicative error.
  lowfreq_cells: resolution of the random grid behind that error (small = smoother).
  edge_blur_sigma_px: Gaussian blur of depth edges, pixels (0 = none).
  sky_factor: sky depth as a multiple of the view's 95th-percentile valid depth.
  sky_gradient: relative growth of the sky depth from the bottom to the top image row.
  wrong_blur_sigma_px: Gaussian sigma, pixels, of the surrounding depth painted into `wrong_mask`.
  seed: seed of the numpy Generator (a call with the same input gives the same output).
  """
  log_scale_range: tuple[float, float] = (-1.5, 1.5)
  shift_range: tuple[float, float] = (0.0, 0.5)
  gamma_range: tuple[float, float] = (0.9, 1.1)
  lowfreq_sigma: float = 0.05
  lowfreq_cells: int = 4
  edge_blur_sigma_px: float = 1.5
  sky_factor: float = 3.0
  sky_gradient: float = 0.5
  wrong_blur_sigma_px: float = 15.0
  seed: int = 0

  def __post_init__(self):
    for name in ("log_scale_range", "shift_range", "gamma_range"):
      low, high = getattr(self, name)
      if not low <= high:
        raise ValueError(f"{name} must be (low, high) with low <= high, got {(low, high)}")
    if self.shift_range[0] < 0 or self.gamma_range[0] <= 0:
      raise ValueError("shift_range must be >= 0 and gamma_range > 0 (the output must stay "
                       "positive and monotone)")
    if (self.lowfreq_sigma < 0 or self.lowfreq_cells < 2 or self.edge_blur_sigma_px < 0
        or self.sky_factor <= 0 or self.sky_gradient < 0 or self.wrong_blur_sigma_px <= 0):
      raise ValueError(f"invalid settings {self}")

  def __call__(self, depth: np.ndarray, wrong_mask: np.ndarray | None = None) -> SimulatedDepth:
    """Pseudo-labels of v views.

    Args:
      depth: (v, h, w) ground-truth depth (camera z, world units); 0 (or any value <= 0 or
        non-finite) marks invalid pixels such as sky.
      wrong_mask: optional (v, h, w) bool, pixels where the expert is confidently wrong (mirrors).
    Returns:
      `SimulatedDepth`.
    """
    depth = np.asarray(depth, np.float64)
    if depth.ndim != 3:
      raise ValueError(f"depth must be (v, h, w), got shape {depth.shape}")
    if wrong_mask is None:
      wrong_mask = np.zeros(depth.shape, bool)
    wrong_mask = np.asarray(wrong_mask, bool)
    if wrong_mask.shape != depth.shape:
      raise ValueError(f"wrong_mask must be {depth.shape}, got {wrong_mask.shape}")
    rng = np.random.default_rng(self.seed)
    outputs, scales, shifts, gammas = [], [], [], []
    for truth, wrong in zip(depth, wrong_mask):
      # Draw every parameter of the view up front, in a fixed order, for reproducibility.
      scale = float(np.exp(rng.uniform(*self.log_scale_range)))
      shift_fraction = float(rng.uniform(*self.shift_range))
      gamma = float(rng.uniform(*self.gamma_range))
      grid = rng.standard_normal((self.lowfreq_cells, self.lowfreq_cells))
      out, median = self._degrade(truth, wrong, gamma, grid)
      shift = shift_fraction * median * scale
      outputs.append(np.maximum(scale * out + shift, _TINY))
      scales.append(scale)
      shifts.append(shift)
      gammas.append(gamma)
    return SimulatedDepth(np.stack(outputs).astype(np.float32), np.asarray(scales),
                          np.asarray(shifts), np.asarray(gammas))

  def _degrade(self, truth, wrong, gamma, grid):
    """Steps 1-4 for one (h, w) view -> ((h, w) float64 positive map, the median used)."""
    height, width = truth.shape
    valid = np.isfinite(truth) & (truth > 0)
    truth = np.where(valid, truth, 0.0)
    # An all-sky view has no scale at all; 1 is as plausible as anything.
    far = float(np.percentile(truth[valid], 95)) if valid.any() else 1.0
    rows = np.arange(height, dtype=np.float64)[:, None] / max(height - 1, 1)
    sky = self.sky_factor * far * (1.0 + self.sky_gradient * (1.0 - rows))
    filled = np.where(valid, truth, np.broadcast_to(sky, truth.shape))
    if wrong.any():
      # Normalised convolution: blur only the depth outside the mask, so the painted surface is
      # interpolated from the surroundings and knows nothing of the true depth behind the mirror.
      keep = (~wrong).astype(np.float64)
      blur = lambda image: cv2.GaussianBlur(image, (0, 0), self.wrong_blur_sigma_px,
                                            borderType=cv2.BORDER_REFLECT)
      weight = blur(keep)
      surround = blur(filled * keep) / np.maximum(weight, 1e-12)
      fallback = float(np.median(filled[~wrong])) if (~wrong).any() else far
      filled = np.where(wrong, np.where(weight > 1e-6, surround, fallback), filled)
    median = float(np.median(filled))
    out = median * (filled / median) ** gamma
    field = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    field = (field - field.mean()) / max(float(field.std()), 1e-12)
    out = out * np.exp(self.lowfreq_sigma * field)
    if self.edge_blur_sigma_px > 0:
      out = cv2.GaussianBlur(out, (0, 0), self.edge_blur_sigma_px, borderType=cv2.BORDER_REFLECT)
    return np.maximum(out, _TINY), median
