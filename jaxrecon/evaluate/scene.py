"""All protocol metrics of one scene in one dict (the row format of `report.write_report`)."""
from __future__ import annotations

import numpy as np

from jaxrecon.evaluate.metrics import (DEFAULT_POSE_THRESHOLD, DEFAULT_TAU, camera_ate,
                                       depth_metrics, pointmap_metrics, pose_auc,
                                       relative_pose_errors, rra, rta)


def scene_metrics(pred_cam_from_world, gt_cam_from_world, pred_depth=None, gt_depth=None,
                  valid=None, *, pred_points=None, gt_points=None, intrinsics=None,
                  tau=DEFAULT_TAU,
                  pose_threshold=DEFAULT_POSE_THRESHOLD, scale_mode="median"):
  """Pose, depth and point-map metrics of one scene (numpy float64 on host).

  Args:
    pred_cam_from_world: (v, 4, 4) / (v, 3, 4) predicted extrinsics.
    gt_cam_from_world: (v, 4, 4) / (v, 3, 4) ground-truth extrinsics.
    pred_depth, gt_depth: optional (v, h, w) depths (both or neither).
    valid: (v, h, w) bool mask of the ground truth (required with depth or points).
    pred_points, gt_points: optional (v, h, w, 3) world point maps (both or neither), each in the
      world frame of its own extrinsics.
    intrinsics: optional (v, 3, 3) K of the depth maps (pixels, top-left pixel centre (0, 0)).
      With depth and without point maps, both point maps are back-projected from the depths and
      their own extrinsics (`depth_point_map`), so a depth-and-pose predictor (Reliev3R) gets
      the protocol's point-map rel / tau too.
    tau: inlier threshold of the depth / point metrics (1.03).
    pose_threshold: degrees, for RRA / RTA / AUC (30).
    scale_mode: per-scene scale of depth / points ("median" or "mean_norm").
  Returns:
    dict of floats: rra30, rta30, auc30 (percent; the suffix is the threshold), ate (GT units),
    and, when given, depth_rel, depth_tau (percent), points_rel, points_tau (percent).
  """
  rot, trans = relative_pose_errors(pred_cam_from_world, gt_cam_from_world)
  k = f"{pose_threshold:g}"
  out = {f"rra{k}": rra(rot, pose_threshold), f"rta{k}": rta(trans, pose_threshold),
         f"auc{k}": pose_auc(rot, trans, int(pose_threshold)),
         "ate": camera_ate(pred_cam_from_world, gt_cam_from_world)}
  if (pred_depth is None) != (gt_depth is None) or (pred_points is None) != (gt_points is None):
    raise ValueError("give both predicted and ground-truth depth (points), or neither")
  if (pred_depth is not None or pred_points is not None) and valid is None:
    raise ValueError("valid is required with depth or point maps")
  if pred_depth is not None and pred_points is None and intrinsics is not None:
    pred_points = depth_point_map(pred_depth, intrinsics, pred_cam_from_world)
    gt_points = depth_point_map(gt_depth, intrinsics, gt_cam_from_world)
  if pred_depth is not None:
    d = depth_metrics(pred_depth, gt_depth, valid, tau=tau, scale_mode=scale_mode)
    out.update(depth_rel=d["rel"], depth_tau=d["tau"])
  if pred_points is not None:
    p = pointmap_metrics(pred_points, gt_points, valid, pred_cam_from_world, gt_cam_from_world,
                         tau=tau, scale_mode=scale_mode)
    out.update(points_rel=p["rel"], points_tau=p["tau"])
  return out


def depth_point_map(depth, intrinsics, cam_from_world):
  """World point of every pixel, numpy float64: X = R^T (z K^-1 [u, v, 1] - t).

  depth (v, h, w) camera z; intrinsics (v, 3, 3); cam_from_world (v, 4, 4) / (v, 3, 4).
  Returns (v, h, w, 3) float64 (non-finite where the depth is).
  """
  depth = np.asarray(depth, np.float64)
  k = np.asarray(intrinsics, np.float64)
  cams = np.asarray(cam_from_world, np.float64)
  if depth.ndim != 3 or k.shape != (depth.shape[0], 3, 3) or cams.shape[0] != depth.shape[0]:
    raise ValueError(f"expected depth (v, h, w), intrinsics (v, 3, 3), cam_from_world (v, 4, 4);"
                     f" got {depth.shape}, {k.shape}, {cams.shape}")
  h, w = depth.shape[1:]
  rows, cols = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64),
                           indexing="ij")
  pix = np.stack([cols, rows, np.ones_like(cols)], -1)                   # (h, w, 3)
  cam = depth[..., None] * np.einsum("vij,hwj->vhwi", np.linalg.inv(k), pix)
  rot, t = cams[:, :3, :3], cams[:, :3, 3]
  return np.einsum("vji,vhwj->vhwi", rot, cam - t[:, None, None, :])
