"""Prediction heads: dense depth + confidence, and per-view camera pose.

Both heads act on each view independently (same weights for all views), so they preserve the
backbone's permutation equivariance.
"""
from __future__ import annotations

import einops
import jax
import jax.numpy as jnp
from flax import nnx

from jaxrecon.geometry.cameras import make_pose
from jaxrecon.geometry.rotations import rotation_from_9d
from jaxrecon.models.initializers import conv, linear, normal, variance_scaling

# Row-major flattened 3x3 identity: the camera head's initial 9D output.
_IDENTITY_9D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


class DenseHead(nnx.Module):
  """Per-pixel depth and confidence at full resolution.

  Patch tokens -> per-patch MLP to p * p * c features -> pixel shuffle to (h, w, c) -> concatenated
  with the (normalised) input image -> 3x3 conv + GELU -> 1x1 conv -> 2 channels. The pixel shuffle
  is the cheap upsampler; the small full-resolution conv with the image removes the patch-grid
  blockiness and lets depth edges follow image edges.
  """

  def __init__(self, dim, patch_size, hidden, channels, *, dtype=jnp.float32, rngs: nnx.Rngs):
    self.patch_size = patch_size
    self.channels = channels
    self.norm = nnx.LayerNorm(dim, dtype=dtype, rngs=rngs)
    self.fc1 = linear(dim, hidden, dtype=dtype, rngs=rngs)
    self.fc2 = linear(hidden, patch_size * patch_size * channels, dtype=dtype, rngs=rngs)
    self.refine = conv(channels + 3, channels, (3, 3), dtype=dtype, rngs=rngs)
    # The last layer runs in float32 (its outputs go through exp / sigmoid) and starts with small
    # weights (0.1x the usual std): initial depth ~1 and confidence ~1 everywhere, not random maps
    # spanning decades that the first steps would have to undo.
    self.out = conv(channels, 2, (1, 1), dtype=jnp.float32,
                    kernel_init=variance_scaling(0.01, "fan_in", "normal"),
                    rngs=rngs)

  def __call__(self, patch_tokens, images_norm, grid_hw):
    """Args:
      patch_tokens: (B, gh * gw, d) patch tokens (registers removed), row-major.
      images_norm: (B, h, w, 3) normalised images, h = gh * p, w = gw * p.
      grid_hw: (gh, gw) static ints.
    Returns:
      (B, h, w, 2) float32 raw outputs (log-depth pre-activation, confidence logit).
    """
    gh, gw = grid_hw
    p = self.patch_size
    f = self.fc2(jax.nn.gelu(self.fc1(self.norm(patch_tokens))))
    f = einops.rearrange(f, "b (gh gw) (ph pw c) -> b (gh ph) (gw pw) c",
                         gh=gh, gw=gw, ph=p, pw=p, c=self.channels)
    f = jnp.concatenate([f, images_norm.astype(f.dtype)], -1)
    f = jax.nn.gelu(self.refine(f))
    return self.out(f.astype(jnp.float32))


class CameraHead(nnx.Module):
  """Per-view camera: [mean of patch tokens, mean of register tokens] -> MLP -> 9D rotation + 3D t.

  Runs in float32 (small; the SVD orthogonalisation wants the precision). The last layer is
  initialised with tiny weights and bias (identity, 0), so initial rotations are within ~0.01 rad
  of the identity and translations ~0.01, while still differing slightly between views.
  """

  def __init__(self, dim, hidden, *, rngs: nnx.Rngs):
    self.norm = nnx.LayerNorm(2 * dim, rngs=rngs)
    self.fc1 = linear(2 * dim, hidden, rngs=rngs)
    self.fc2 = linear(hidden, hidden, rngs=rngs)
    bias = jnp.asarray(_IDENTITY_9D + (0.0, 0.0, 0.0), jnp.float32)
    self.out = linear(hidden, 12, kernel_init=normal(1e-3),
                      bias_init=lambda key, shape, dtype=jnp.float32: bias.astype(dtype),
                      rngs=rngs)

  def __call__(self, register_tokens, patch_tokens):
    """Args:
      register_tokens: (B, r, d); patch_tokens: (B, m, d).
    Returns:
      (B, 12) float32: row-major 9D rotation output, then translation.
    """
    pooled = jnp.concatenate([patch_tokens.astype(jnp.float32).mean(1),
                              register_tokens.astype(jnp.float32).mean(1)], -1)
    hdn = jax.nn.gelu(self.fc1(self.norm(pooled)))
    hdn = jax.nn.gelu(self.fc2(hdn))
    return self.out(hdn)


def depth_from_raw(raw, bound):
  """depth = exp(B tanh(raw / B)): positive, in (e^-B, e^B), gradients never exactly zero.

  raw: (...) float32; bound: B > 0. Returns (depth, log_depth), each (...).
  """
  log_depth = bound * jnp.tanh(raw / bound)
  return jnp.exp(log_depth), log_depth


def confidence_from_raw(raw):
  """W = 2 sigmoid(raw), in (0, 2); W = 1 at raw = 0. raw: (...) -> (...)."""
  return 2.0 * jax.nn.sigmoid(raw)


def pose_from_raw(raw):
  """raw: (..., 12) = 9D rotation + translation -> (..., 4, 4) world_from_cam (rotation by SVD)."""
  return make_pose(rotation_from_9d(raw[..., :9]), raw[..., 9:])
