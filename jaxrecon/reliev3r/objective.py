"""Reliev3R training objectives: the weak one (relative depth + registration) and the fully
supervised sibling, composed from `jaxrecon.losses` for a batch of model outputs.

Model outputs (b batch, v views): depth (b, v, h, w) > 0, confidence (b, v, h, w) in (0, 2),
world_from_cam (b, v, 4, 4). Batch (see `jaxrecon.reliev3r.pipeline`): images, intrinsics, tracks,
visibility, mono_depth, and for synthetic data the ground truth depth and cam_from_world, which
only the supervised sibling reads.

Gauge (7 degrees of freedom): every weak loss is blind to a global similarity of the predicted
cameras and depths, so the prediction is put in a canonical frame before the losses
(`canonical_frame`): the origin at the mean camera centre, the axes those of the chordal mean of
the camera rotations, the unit the mean predicted depth. The losses then see a scene that no
global similarity can change (tested: terms unchanged, derivatives along the 7 gauge directions 0),
so the scene cannot drift towards a degenerate scale (depth -> 0 or infinity under an exp head) and
no loss term depends on the network's arbitrary world frame.

The network's raw frame is still its own; a loss that cannot see it gives the gauge parameters
(e.g. the camera head's translation bias, a pure global translation) a gradient of pure float
rounding, which Adam's normalisation turns into +-lr steps and a random walk of the frame (and a
1-vs-8-device disagreement). The separate `gauge` term, weight `gauge_weight`, pins the raw frame
to the canonical one (mean centre 0, mean rotation I, mean depth 1): it depends only on the 7 gauge
coordinates, which no other term sees, so it changes no optimum of the losses, only which member of
the equivalence class the network outputs (so exported cameras are already in the mean-camera
frame).
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from jaxrecon.geometry.cameras import invert_pose, make_pose
from jaxrecon.geometry.rotations import rotation_from_9d
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
    penalty in units of robust_scale^2 (so a residual at the robust scale costs ~0.35); the same
    for every form, whose residuals are all dimensionless (see `configs/reliev3r.py`).
  robust_scale: radians where the registration penalty turns robust (for "l2_3d": the same
    number as a fraction of the mean scene depth, which `canonical_frame` makes 1).
  gauge_weight: weight of the gauge-anchor term (see the module docstring); 0 turns it off.
  supervised: train the fully supervised sibling instead (ground-truth depth and poses).
  supervised_alpha: alpha of the supervised confidence term.
  """
  depth_loss: str = "ambiguity"
  alpha: float = 1.0
  registration: str = "angular"
  reg_weight: float = 0.5
  robust_scale: float = float(np.deg2rad(1.0))
  gauge_weight: float = 0.1
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


def canonical_frame(depth, world_from_cam):
  """Each sample's prediction in its canonical frame: all 7 gauge degrees of freedom fixed.

  Per sample: s = mean depth (all views and pixels), c_bar = mean camera centre, R_bar = chordal
  mean of the camera rotations (the rotation closest to sum_i R_i, `rotation_from_9d`, whose
  analytic backward pass stays finite where singular values repeat, e.g. all R_i equal). Then
    depth' = depth / s,   R_i' = R_bar^T R_i,   c_i' = R_bar^T (c_i - c_bar) / s.
  A global similarity x -> a Q x + t of the world (and depth -> a depth) maps s -> a s,
  c_bar -> a Q c_bar + t, R_bar -> Q R_bar, so the canonical prediction is unchanged: exactly
  invariant, and every loss computed from it has zero derivative along the gauge.
  Why the mean camera and not the first view: it is symmetric in the views (the views are
  permutation-equivariant in the backbone, and no view's pose output is left without gradient).
  It needs sum_i R_i of rank >= 2 (views not spread evenly over a full circle); the demo
  orbits span 90 degrees, real videos far less.

  Args:
    depth: (b, v, h, w) > 0 predicted depth (network units).
    world_from_cam: (b, v, 4, 4) predicted camera-to-world poses, OpenCV axes.
  Returns:
    (depth' (b, v, h, w), world_from_cam' (b, v, 4, 4), gauge) with gauge a dict of the removed
    gauge coordinates: scale (b,), centre (b, 3) world units, rotation (b, 3, 3).
  """
  scale = jnp.mean(depth, axis=(1, 2, 3))                           # (b,)
  rot, centre = world_from_cam[..., :3, :3], world_from_cam[..., :3, 3]
  mean_rot = rotation_from_9d(jnp.sum(rot, axis=1))                 # (b, 3, 3)
  mean_centre = jnp.mean(centre, axis=1)                            # (b, 3)
  inv = jnp.swapaxes(mean_rot, -1, -2)[:, None]                     # (b, 1, 3, 3)
  new_rot = inv @ rot
  new_centre = jnp.einsum("bvij,bvj->bvi", inv, centre - mean_centre[:, None])
  new_centre = new_centre / scale[:, None, None]
  gauge = {"scale": scale, "centre": mean_centre, "rotation": mean_rot}
  return (depth / scale[:, None, None, None], make_pose(new_rot, new_centre), gauge)


def gauge_anchor(gauge):
  """Mean over the batch of |c_bar / s|^2 + |R_bar - I|_F^2 / 2 + (log s)^2 (dimensionless):
  zero, with zero gradient, when the raw prediction already is in its canonical frame.

  gauge: the dict of `canonical_frame`. Returns a scalar.
  """
  scale = gauge["scale"]
  centre = gauge["centre"] / scale[:, None]
  rot_err = gauge["rotation"] - jnp.eye(3, dtype=scale.dtype)
  return jnp.mean(jnp.sum(centre**2, -1) + 0.5 * jnp.sum(rot_err**2, (-1, -2))
                  + jnp.log(scale) ** 2)


def objective(outputs, batch, config: ObjectiveConfig):
  """Scalar loss and a dict of named terms (each a scalar) for one batch."""
  if config.supervised:
    gt_world_from_cam = invert_pose(batch["cam_from_world"])
    loss, diag = supervised_loss(outputs["depth"], outputs["confidence"],
                                 outputs["world_from_cam"], batch["depth"], gt_world_from_cam,
                                 batch["depth"] > 0, alpha=config.supervised_alpha)
    return loss, {"supervised": loss, **{f"supervised/{k}": v for k, v in diag.items()}}
  depth, world_from_cam, gauge = canonical_frame(outputs["depth"], outputs["world_from_cam"])
  terms = {}
  if config.gauge_weight:
    terms["gauge"] = config.gauge_weight * gauge_anchor(gauge)
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
    # Robust penalties are ~ r^2 / 2 for small dimensionless residuals r (radians, or fractions
    # of the unit mean depth for "l2_3d"): ~1e-4 at the 1 degree scale, which would be swamped
    # by the O(1) depth term in the shared network weights. In units of the robust scale
    # (divided by its square) a residual at the scale costs ~0.35, whatever the form.
    terms["registration"] = config.reg_weight * reg / config.robust_scale ** 2
  else:
    reg_diag = {}
  loss = sum(terms.values())
  metrics = dict(terms)
  metrics.update({f"depth/{k}": v for k, v in depth_diag.items()})
  metrics.update({f"registration/{k}": v for k, v in reg_diag.items()})
  return loss, metrics
