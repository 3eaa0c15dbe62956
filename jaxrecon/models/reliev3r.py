"""Reliev3R feed-forward reconstruction model: images of a scene -> per-view depth, confidence, pose.

Poses are `world_from_cam` (camera-to-world, OpenCV axes; see `jaxrecon.geometry`) in a world frame
the network chooses: there is no reference view, so the frame and the global scale are a gauge that
the (scale- and rigid-motion-invariant) training losses must fix or ignore.
"""
from __future__ import annotations

import math

import jax
from flax import nnx

from jaxrecon.models.backbone import Backbone, normalize_images
from jaxrecon.models.config import ModelConfig
from jaxrecon.models.heads import (CameraHead, DenseHead, confidence_from_raw, depth_from_raw,
                                   pose_from_raw)


class Reliev3R(nnx.Module):
  """Permutation-equivariant multi-view transformer with depth/confidence and camera heads.

  Usage:
    model = Reliev3R(ModelConfig.tiny(), rngs=nnx.Rngs(0))
    out = model(images)              # images (b, v, h, w, 3) in [0, 1]
  """

  def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
    self.config = config
    dt = config.compute_dtype
    self.backbone = Backbone(config, rngs=rngs)
    self.dense_head = DenseHead(config.embed_dim, config.patch_size, config.dense_hidden,
                                config.dense_channels, dtype=dt, rngs=rngs)
    self.camera_head = CameraHead(config.embed_dim, config.camera_hidden, rngs=rngs)

  def __call__(self, images):
    """Predicts geometry for every view.

    Args:
      images: (b, v, h, w, 3) RGB in [0, 1] (any float dtype); h, w multiples of patch_size.
    Returns:
      dict of float32 arrays:
        depth: (b, v, h, w) camera-frame z (> 0; network units, scale is a gauge),
          = exp(log_depth).
        log_depth: (b, v, h, w) = B tanh(raw / B), B = config.log_depth_bound.
        confidence: (b, v, h, w) W = 2 sigmoid(raw) in (0, 2).
        world_from_cam: (b, v, 4, 4) camera-to-world poses; rotation = rotation_from_9d of the 9D
          output (det +1), last row [0, 0, 0, 1].
        rotation_9d: (b, v, 9) raw 9D rotation output (row-major 3x3 before orthogonalisation).
        translation: (b, v, 3) camera centres in world coordinates.
    """
    cfg = self.config
    b, v, h, w, _ = images.shape
    p = cfg.patch_size
    gh, gw = h // p, w // p
    r = cfg.num_registers

    tokens = self.backbone(images)                                  # (b, v, r + gh*gw, d)
    tokens = tokens.reshape(b * v, r + gh * gw, -1)
    registers, patches = tokens[:, :r], tokens[:, r:]

    images_norm = normalize_images(images.reshape(b * v, h, w, 3), cfg.compute_dtype)
    dense = self.dense_head(patches, images_norm, (gh, gw)).reshape(b, v, h, w, 2)
    depth, log_depth = depth_from_raw(dense[..., 0], cfg.log_depth_bound)
    confidence = confidence_from_raw(dense[..., 1])

    cam = self.camera_head(registers, patches).reshape(b, v, 12)
    return dict(depth=depth, log_depth=log_depth, confidence=confidence,
                world_from_cam=pose_from_raw(cam), rotation_9d=cam[..., :9],
                translation=cam[..., 9:])


def count_params(model) -> int:
  """Number of scalar parameters (nnx.Param) of a module; works on abstract (eval_shape) modules,
  whose leaves are jax.ShapeDtypeStruct."""
  return int(sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


def abstract_model(config: ModelConfig, seed: int = 0):
  """The model with abstract (shape/dtype only) parameters, built by nnx.eval_shape: no memory is
  allocated, so this is how to inspect or count a paper-scale model on a laptop."""
  return nnx.eval_shape(lambda: Reliev3R(config, rngs=nnx.Rngs(seed)))
