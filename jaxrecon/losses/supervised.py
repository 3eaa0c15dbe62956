"""Fully supervised "sibling" objective (DUSt3R / VGGT style): confidence-weighted depth error plus
a gauge-free relative camera loss, both after normalising each reconstruction by its own scale.

Shapes: (..., v, h, w) depth maps and (..., v, 4, 4) `world_from_cam` poses of v views of one scene
behind any leading axes (usually (b,)). The scene scale of a reconstruction is its mean depth over
the ground-truth-valid pixels of all its views, so the objective is blind to scaling a prediction
(depths and camera translations together) and to moving its cameras rigidly.
"""
from __future__ import annotations

import jax.numpy as jnp

from jaxrecon.geometry.safe import as_float, masked_mean, safe_div, safe_norm
from jaxrecon.geometry.shapes import check_shape
from jaxrecon.geometry.cameras import compose_poses, invert_pose
from jaxrecon.geometry.rotations import rotation_angle


def _relative_poses(world_from_cam):
  """(..., v, 4, 4) -> (..., v, v, 4, 4) with [i, j] = cam_i_from_cam_j."""
  cam_from_world = invert_pose(world_from_cam)
  return compose_poses(cam_from_world[..., :, None, :, :], world_from_cam[..., None, :, :, :])


def supervised_loss(pred_depth, pred_confidence, pred_world_from_cam, gt_depth, gt_world_from_cam,
                    gt_mask, *, alpha=0.2, pose_weight=1.0):
  """Scale-aligned supervised depth + camera loss.

  With s_pred, s_gt the masked mean depths of each sample (all views, gt_mask), C the confidence:

    depth term  = mean over valid pixels of C |pred / s_pred - gt / s_gt| - alpha log C
    camera term = mean over ordered view pairs i != j of
                  angle(R_ij^pred, R_ij^gt) + |t_ij^pred / s_pred - t_ij^gt / s_gt|
    loss        = depth term + pose_weight * camera term

  where (R_ij, t_ij) = cam_i_from_cam_j, a relative pose, so no reference frame (gauge) is needed.

  Args:
    pred_depth: (..., v, h, w) predicted depth (prediction units).
    pred_confidence: (..., v, h, w) confidence C > 0.
    pred_world_from_cam: (..., v, 4, 4) or (..., v, 3, 4) predicted camera-to-world poses.
    gt_depth: (..., v, h, w) ground-truth depth (world units).
    gt_world_from_cam: (..., v, 4, 4) or (..., v, 3, 4) ground-truth camera-to-world poses.
    gt_mask: (..., v, h, w) bool or {0, 1}: pixels with valid ground truth.
    alpha: weight of the -log C regulariser.
    pose_weight: weight of the camera term.
  Returns:
    loss: scalar (radians and scene-scale units, dimensionless); finite with finite gradients when
      the mask is empty (the depth term is then 0) or v = 1 (the camera term is then 0).
    diagnostics: depth_term, depth_error (mean |.| without confidence), camera_term,
      rotation_error (mean radians), translation_error (mean, scene-scale units),
      mean_confidence, num_valid.
  """
  dims = check_shape(pred_depth, "... v h w", "pred_depth")
  for x, name in ((pred_confidence, "pred_confidence"), (gt_depth, "gt_depth"),
                  (gt_mask, "gt_mask")):
    check_shape(x, "... v h w", name, dims)
  for x, name in ((pred_world_from_cam, "pred_world_from_cam"),
                  (gt_world_from_cam, "gt_world_from_cam")):
    if tuple(jnp.shape(x)[-2:]) not in ((4, 4), (3, 4)):
      raise ValueError(f"{name}: expected shape (..., v, 4, 4) or (..., v, 3, 4), got "
                       f"{tuple(jnp.shape(x))}")
    check_shape(jnp.asarray(x)[..., :3, :], "... v 3 4", name, dims)
  shape = dims["..."] + (dims["v"], dims["h"], dims["w"])
  pred = jnp.broadcast_to(as_float(pred_depth), shape)
  dtype = pred.dtype
  conf = jnp.broadcast_to(jnp.asarray(pred_confidence, dtype), shape)
  gt = jnp.broadcast_to(jnp.asarray(gt_depth, dtype), shape)
  valid = jnp.broadcast_to(jnp.asarray(gt_mask) > 0, shape)
  m = valid.astype(dtype)
  # Masked pixels may hold anything (NaN ground truth, garbage confidence): neutralise them first.
  pred = jnp.where(valid, pred, 0.0)
  gt = jnp.where(valid, gt, 0.0)
  conf = jnp.where(valid, conf, 1.0)

  pred_scale = masked_mean(pred, m, axis=(-3, -2, -1))
  gt_scale = masked_mean(gt, m, axis=(-3, -2, -1))
  pred_n = safe_div(pred, pred_scale[..., None, None, None])
  gt_n = safe_div(gt, gt_scale[..., None, None, None])
  err = jnp.abs(pred_n - gt_n)
  log_conf = jnp.log(jnp.maximum(conf, jnp.finfo(dtype).tiny))
  depth_term = masked_mean(conf * err - alpha * log_conf, m)

  rel_pred = _relative_poses(jnp.asarray(pred_world_from_cam, dtype))
  rel_gt = _relative_poses(jnp.asarray(gt_world_from_cam, dtype))
  rot_err = rotation_angle(rel_pred[..., :3, :3], rel_gt[..., :3, :3])
  t_pred = safe_div(rel_pred[..., :3, 3], pred_scale[..., None, None, None])
  t_gt = safe_div(rel_gt[..., :3, 3], gt_scale[..., None, None, None])
  trans_err = safe_norm(t_pred - t_gt)
  v = dims["v"]
  pairs = jnp.broadcast_to(1.0 - jnp.eye(v, dtype=dtype), rot_err.shape)
  rotation_error = masked_mean(rot_err, pairs)
  translation_error = masked_mean(trans_err, pairs)
  camera_term = rotation_error + translation_error

  loss = depth_term + pose_weight * camera_term
  diag = {
      "depth_term": depth_term,
      "depth_error": masked_mean(err, m),
      "camera_term": camera_term,
      "rotation_error": rotation_error,
      "translation_error": translation_error,
      "mean_confidence": masked_mean(conf, m),
      "num_valid": jnp.sum(m),
  }
  return loss, diag
