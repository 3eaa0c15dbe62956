"""Reliev3R training objectives: the weak one (relative depth + registration) and the fully
supervised sibling, composed from `jaxrecon.losses` for a batch of model outputs.

Model outputs (b batch, v views): depth (b, v, h, w) > 0, confidence (b, v, h, w) in (0, 2),
world_from_cam (b, v, 4, 4). Batch (see `jaxrecon.reliev3r.pipeline`): images, intrinsics, tracks,
visibility, mono_depth, and for synthetic data the ground truth depth and cam_from_world, which
only the supervised sibling reads.

Gauge: every weak loss is blind to a global similarity, so the prediction is normalised before
the losses: depths and camera translations are divided by the mean predicted depth of the sample
(world origin kept). The losses then see a scene of unit mean depth, so the network cannot drift
towards a degenerate scale (depth -> 0 or infinity under an exp head) while the optimum is
unchanged.
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from jaxrecon.geometry.cameras import invert_pose
from jaxrecon.losses.depth import relative_depth_loss, ssi_depth_loss
from jaxrecon.losses.registration import FORMS, registration_loss
from jaxrecon.losses.supervised import supervised_loss

DEPTH_LOSSES = ("ambiguity", "plain", "ssi", "off")


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
  """Which terms, with which weights (hashable: a static argument of the jitted step).

  depth_loss: "ambiguity" (the paper's), "plain" (W = 1: the ablation), "ssi" (MiDaS-style
    least-squares scale and shift) or "off".
  alpha: weight of -log W in the ambiguity-aware loss (paper 1.0; ablated 0.2 / 0.5 / 2.0).
  registration: a form of `losses.registration.FORMS` or "off".
  reg_weight: lambda, weight of the registration loss (paper 0.5), applied to the robust
    penalty in units of robust_scale^2 (so a residual at the robust scale costs ~0.35).
  robust_scale: radians where the registration penalty turns robust.
  supervised: train the fully supervised sibling instead (ground-truth depth and poses).
  supervised_alpha: alpha of the supervised confidence term.
  """
  depth_loss: str = "ambiguity"
  alpha: float = 1.0
  registration: str = "angular"
  reg_weight: float = 0.5
  robust_scale: float = float(np.deg2rad(1.0))
  supervised: bool = False
  supervised_alpha: float = 0.2

  def __post_init__(self):
    if self.depth_loss not in DEPTH_LOSSES:
      raise ValueError(f"depth_loss: expected one of {DEPTH_LOSSES}, got {self.depth_loss!r}")
    if self.registration not in FORMS + ("off",):
      raise ValueError(f"registration: expected one of {FORMS + ('off',)}, "
                       f"got {self.registration!r}")
    if not self.supervised and self.depth_loss == "off" and self.registration == "off":
      raise ValueError("objective: every term is off")


def fix_scale_gauge(depth, world_from_cam):
  """Fixes the scale gauge: divides depths and camera translations by each sample's mean depth
  (rotation and world origin are left to the network: the weak losses are blind to them).

  depth (b, v, h, w) > 0, world_from_cam (b, v, 4, 4) -> the same, scene of unit mean depth.
  """
  scale = jnp.mean(depth, axis=(1, 2, 3))                           # (b,)
  translation = world_from_cam[..., :3, 3] / scale[:, None, None]
  return depth / scale[:, None, None, None], world_from_cam.at[..., :3, 3].set(translation)


def objective(outputs, batch, config: ObjectiveConfig):
  """Scalar loss and a dict of named terms (each a scalar) for one batch."""
  if config.supervised:
    gt_world_from_cam = invert_pose(batch["cam_from_world"])
    loss, diag = supervised_loss(outputs["depth"], outputs["confidence"],
                                 outputs["world_from_cam"], batch["depth"], gt_world_from_cam,
                                 batch["depth"] > 0, alpha=config.supervised_alpha)
    return loss, {"supervised": loss, **{f"supervised/{k}": v for k, v in diag.items()}}
  depth, world_from_cam = fix_scale_gauge(outputs["depth"], outputs["world_from_cam"])
  terms = {}
  mono_mask = batch["mono_depth"] > 0
  if config.depth_loss in ("ambiguity", "plain"):
    terms["depth"], depth_diag = relative_depth_loss(
        depth, batch["mono_depth"], outputs["confidence"], mono_mask, alpha=config.alpha,
        ambiguity=config.depth_loss == "ambiguity")
  elif config.depth_loss == "ssi":
    terms["depth"], depth_diag = ssi_depth_loss(depth, batch["mono_depth"], mono_mask)
  else:
    depth_diag = {}
  if config.registration != "off":
    reg, reg_diag = registration_loss(batch["tracks"], batch["visibility"], depth, world_from_cam,
                                      batch["intrinsics"], form=config.registration,
                                      robust_scale=config.robust_scale)
    # Robust penalties are ~ r^2 / 2 for small residuals r (radians): ~1e-4 at the 1 degree
    # scale, which would be swamped by the O(1) depth term in the shared network weights. In
    # units of the robust scale (divided by its square) a residual at the scale costs ~0.35.
    units = 1.0 if config.registration == "l2_3d" else config.robust_scale ** 2
    terms["registration"] = config.reg_weight * reg / units
  else:
    reg_diag = {}
  loss = sum(terms.values())
  metrics = dict(terms)
  metrics.update({f"depth/{k}": v for k, v in depth_diag.items()})
  metrics.update({f"registration/{k}": v for k, v in reg_diag.items()})
  return loss, metrics
