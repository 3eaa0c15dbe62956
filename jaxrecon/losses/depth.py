"""Relative (shape-only) depth losses against monocular pseudo-labels.

Depth maps are (..., h, w): one map per view behind any leading axes (usually (b, v)); every
statistic (median, deviation, scale and shift) is computed per map. Losses are means over all valid
pixels of the whole input at once (every leading axis and every pixel pooled), and come back with a
dict of scalar diagnostics, including the pixel count so that a caller can recombine exact global
means. Inputs are upcast to at least float32.

Both losses are blind to a positive scale and a shift of either depth map: the monocular expert
knows neither, so only the shape of the predicted depth is supervised.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrecon.geometry.safe import as_float, masked_mean
from jaxrecon.geometry.shapes import check_shape
from jaxrecon.geometry.alignment import weighted_mad, weighted_median

# A deviation below this fraction of the map's magnitude is rounding noise of a constant map: the
# normalised map is then 0 instead of amplified noise.
_REL_FLAT = 1e-6


def _prepare(pred_depth, mono_depth, mask, confidence=None):
  """Checks shapes; returns pred (float), mono (same dtype) and valid (bool), all broadcast."""
  dims = check_shape(pred_depth, "... h w", "pred_depth")
  check_shape(mono_depth, "... h w", "mono_depth", dims)
  if confidence is not None:
    check_shape(confidence, "... h w", "confidence", dims)
  check_shape(mask, "... h w", "mask", dims)
  shape = dims["..."] + (dims["h"], dims["w"])
  pred = jnp.broadcast_to(as_float(pred_depth), shape)
  mono = jnp.broadcast_to(jnp.asarray(mono_depth, pred.dtype), shape)
  return pred, mono, jnp.broadcast_to(jnp.asarray(mask) > 0, shape)


def _flat(x):
  """(..., h, w) -> (..., h * w)."""
  return jnp.reshape(x, x.shape[:-2] + (-1,))


def median_mad_normalize(depth, weights):
  """Per-map normalisation G(D, w) = (D - median_w(D)) / mad_w(D).

  Args:
    depth: (..., h, w) depth maps (any units).
    weights: (..., h, w) non-negative pixel weights (e.g. mask * confidence). The median ignores
      their gradient; pass them through stop_gradient to remove it from the deviation too.
  Returns:
    (..., h, w) dimensionless normalised depth, invariant to depth -> a depth + b (a > 0).
    A map with (numerically) no weighted deviation, or no weight at all, normalises to 0 (finite
    value and gradient).
  """
  dims = check_shape(depth, "... h w", "depth")
  check_shape(weights, "... h w", "weights", dims)
  depth = as_float(depth)
  batch = dims["..."]
  depth = jnp.broadcast_to(depth, batch + depth.shape[-2:])
  weights = jnp.broadcast_to(jnp.asarray(weights, depth.dtype), depth.shape)
  d, w = _flat(depth), _flat(weights)
  med = weighted_median(d, w)
  mad = weighted_mad(d, w, med)
  ok = mad > _REL_FLAT * jnp.abs(med) + jnp.finfo(depth.dtype).tiny
  inv = jnp.where(ok, 1.0 / jnp.where(ok, mad, 1.0), 0.0)
  centred = jnp.where(w > 0, d - med[..., None], 0.0)  # masked pixels may hold NaN / inf
  return jnp.reshape(centred * inv[..., None], depth.shape)


def relative_depth_loss(pred_depth, mono_depth, confidence, mask, *, alpha=1.0, ambiguity=True):
  """Reliev3R ambiguity-aware relative depth loss.

  Per map, with W the predicted confidence (ambiguity=True) or 1 (ambiguity=False) and pixel
  weights w = mask * stop_gradient(W):

      l = W |G(pred, w) - G(mono, w)| - alpha log W,   G = `median_mad_normalize`,

  and the loss is the mean of l over all pixels with mask > 0 (all maps pooled). A low W switches a
  pixel off where the monocular expert is wrong (sky, reflections), at the price alpha log(1 / W);
  for a residual r the optimal W is alpha / r.

  Args:
    pred_depth: (..., h, w) predicted depth (world units; > 0 where valid).
    mono_depth: (..., h, w) monocular pseudo-label (relative depth, any scale and shift).
    confidence: (..., h, w) W in (0, 2) (e.g. 2 sigmoid(x)); ignored when ambiguity=False.
    mask: (..., h, w) bool or {0, 1} validity of pixels (e.g. finite pseudo-label).
    alpha: weight of the -log W regulariser.
    ambiguity: use the confidence (the ambiguity-aware form); False gives the plain L1 between
      normalised maps.
  Returns:
    loss: scalar (dimensionless); 0 when no pixel is valid (finite gradients).
    diagnostics: data_term (mean |G(pred) - G(mono)|), weighted_data_term (mean W |...|),
      mean_confidence, low_confidence_fraction (fraction of valid pixels with W < 1), num_valid.
  """
  pred, mono, valid = _prepare(pred_depth, mono_depth, mask, confidence=confidence)
  shape, dtype = pred.shape, pred.dtype
  m = valid.astype(dtype)
  if ambiguity:
    conf = jnp.broadcast_to(jnp.asarray(confidence, dtype), shape)
    conf = jnp.where(valid, conf, 1.0)  # masked pixels may hold anything, even NaN
  else:
    conf = jnp.ones(shape, dtype)
  w = m * jax.lax.stop_gradient(conf)
  resid = jnp.abs(median_mad_normalize(pred, w) - median_mad_normalize(mono, w))
  weighted = conf * resid
  if ambiguity:
    # W in (0, 2) can underflow to 0 in float32; the floor keeps log W and its gradient finite.
    log_conf = jnp.log(jnp.maximum(conf, jnp.finfo(dtype).tiny))
    per_pixel = weighted - alpha * log_conf
  else:
    per_pixel = weighted
  loss = masked_mean(per_pixel, m)
  diag = {
      "data_term": masked_mean(resid, m),
      "weighted_data_term": masked_mean(weighted, m),
      "mean_confidence": masked_mean(conf, m),
      "low_confidence_fraction": masked_mean((conf < 1).astype(dtype), m),
      "num_valid": jnp.sum(m),
  }
  return loss, diag


def ssi_depth_loss(pred_depth, mono_depth, mask):
  """MiDaS-style scale-and-shift-invariant L1 loss.

  Per map: the pseudo-label is normalised, y = G(mono, mask) (median / mean absolute deviation);
  the scale s and shift t minimising sum_mask (s pred + t - y)^2 are solved in closed form (the 2x2
  normal equations, written with centred moments: s = cov(pred, y) / var(pred),
  t = mean(y) - s mean(pred), which avoids their ill-conditioning when depths are far from 0);
  the loss is the mean |s pred + t - y| over all masked pixels (all maps pooled). Gradients flow
  through s and t.

  Args:
    pred_depth: (..., h, w) predicted depth (any units).
    mono_depth: (..., h, w) monocular pseudo-label (relative depth, any scale and shift).
    mask: (..., h, w) bool or {0, 1} validity of pixels.
  Returns:
    loss: scalar (in units of the normalised pseudo-label); 0 when no pixel is valid.
    diagnostics: mean_scale, mean_shift (over maps with a valid pixel), num_valid.
    A map whose prediction has no spread gets s = 0, t = mean(y) (finite).
  """
  pred, mono, valid = _prepare(pred_depth, mono_depth, mask)
  dtype = pred.dtype
  m = _flat(valid.astype(dtype))
  y = _flat(median_mad_normalize(mono, jax.lax.stop_gradient(valid.astype(dtype))))
  p = jnp.where(m > 0, _flat(pred), 0.0)

  mean_p = masked_mean(p, m, axis=-1, keepdims=True)
  mean_y = masked_mean(y, m, axis=-1, keepdims=True)
  dp = jnp.where(m > 0, p - mean_p, 0.0)
  dy = jnp.where(m > 0, y - mean_y, 0.0)
  var_p = masked_mean(dp * dp, m, axis=-1, keepdims=True)
  cov = masked_mean(dp * dy, m, axis=-1, keepdims=True)
  flat = var_p <= jnp.square(_REL_FLAT * jnp.abs(mean_p)) + jnp.finfo(dtype).tiny
  scale = jnp.where(flat, 0.0, cov / jnp.where(flat, 1.0, var_p))
  shift = mean_y - scale * mean_p
  resid = jnp.abs(scale * p + shift - y)
  loss = masked_mean(resid, m)
  has_valid = (jnp.sum(m, axis=-1) > 0).astype(dtype)
  diag = {
      "mean_scale": masked_mean(scale[..., 0], has_valid),
      "mean_shift": masked_mean(shift[..., 0], has_valid),
      "num_valid": jnp.sum(m),
  }
  return loss, diag

