"""Evaluation reports: per-scene metric tables (JSON + Markdown) and a per-scene figure.

Host-side numpy / matplotlib only. Figures are drawn on a `matplotlib.figure.Figure` with the Agg
canvas directly (no pyplot, so no global backend or figure state is touched).
"""
from __future__ import annotations

import json
import math
import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jaxrecon.evaluate.metrics import align_cameras_sim3, camera_centers_np, scene_scale

MEAN_ROW = "mean"
VALID_ROW = "valid scenes"


# ------------------------------------------------------------------------------------- tables


def _as_number(x):
  """Python float (nan allowed) of a scalar metric, or None when it is not numeric."""
  try:
    arr = np.asarray(x)
  except Exception:  # pylint: disable=broad-except
    return None
  if arr.shape != () or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
    return None
  return float(arr)


def _columns(results):
  """Metric names in first-seen order over all scenes."""
  cols = []
  for metrics in results.values():
    for k in metrics:
      if k not in cols:
        cols.append(k)
  return cols


def _finite_values(results, key):
  vals = [_as_number(m.get(key)) for m in results.values()]
  return [v for v in vals if v is not None and math.isfinite(v)]


def summarize(results):
  """Mean of every numeric metric over scenes, ignoring nan / missing entries (how many were
  used: `count_valid`; every table that shows these means shows the counts too).

  Args:
    results: dict scene name -> dict metric name -> scalar.
  Returns:
    dict metric name -> float mean over the scenes where it is a finite number (nan when none).
  """
  out = {}
  for k in _columns(results):
    vals = _finite_values(results, k)
    out[k] = float(np.mean(vals)) if vals else float("nan")
  return out


def count_valid(results):
  """dict metric name -> number of scenes where it is a finite number (the scenes its
  `summarize` mean is over; a scene whose metric is nan, e.g. depth rel without a valid pixel,
  is left out of the mean and so must be counted)."""
  return {k: len(_finite_values(results, k)) for k in _columns(results)}


def _json_value(x):
  v = _as_number(x)
  if v is None:
    return x if isinstance(x, (str, int, bool)) or x is None else str(x)
  return v if math.isfinite(v) else None  # strict JSON has no nan / inf


def _md_value(x):
  v = _as_number(x)
  if v is None:
    return "" if x is None else str(x)
  if not math.isfinite(v):
    return "nan" if math.isnan(v) else str(v)
  return f"{v:.4g}"


def write_report(results, out_dir):
  """Writes metrics.json and metrics.md for a set of scenes.

  Args:
    results: dict scene name -> dict metric name -> scalar (Python / numpy numbers; nan allowed
      and written as JSON null / "nan"). Scenes may lack some metrics.
    out_dir: directory (created if needed).
  Returns:
    dict(json=path, md=path).
  metrics.json: {"scenes": {scene: {metric: value}}, "mean": {metric: mean over scenes of the
  finite values}, "num_valid": {metric: how many scenes that mean is over}, "num_scenes": int}.
  metrics.md: a table with one row per scene (insertion order), a "mean" row and a "valid
  scenes" row (n/N per metric); columns are the metrics in first-seen order.
  """
  os.makedirs(out_dir, exist_ok=True)
  mean = summarize(results)
  valid = count_valid(results)
  cols = _columns(results)
  payload = {
      "scenes": {str(s): {k: _json_value(v) for k, v in m.items()} for s, m in results.items()},
      "mean": {k: _json_value(v) for k, v in mean.items()},
      "num_valid": valid,
      "num_scenes": len(results),
  }
  json_path = os.path.join(out_dir, "metrics.json")
  with open(json_path, "w") as f:
    json.dump(payload, f, indent=2, allow_nan=False)
    f.write("\n")

  lines = ["| scene | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
  for scene, m in results.items():
    lines.append(f"| {scene} | " + " | ".join(_md_value(m.get(k)) for k in cols) + " |")
  lines.append(f"| **{MEAN_ROW}** | " + " | ".join(_md_value(mean[k]) for k in cols) + " |")
  lines.append(f"| {VALID_ROW} | " + " | ".join(f"{valid[k]}/{len(results)}" for k in cols)
               + " |")
  md_path = os.path.join(out_dir, "metrics.md")
  with open(md_path, "w") as f:
    f.write("\n".join(lines) + "\n")
  return dict(json=json_path, md=md_path)


# ------------------------------------------------------------------------------------- figure


def _display_image(img):
  """(h, w, 3) uint8 or float image -> float in [0, 1]: uint8 / 255; floats with negative values
  are taken to be in [-1, 1]; floats above 1 to be in [0, 255]; then clipped."""
  img = np.asarray(img)
  if img.dtype == np.uint8:
    return img.astype(np.float64) / 255.0
  img = np.asarray(img, np.float64)
  finite = img[np.isfinite(img)]
  if finite.size and finite.min() < 0:
    img = 0.5 * (img + 1.0)
  elif finite.size and finite.max() > 1.0 + 1e-6:
    img = img / 255.0
  return np.clip(np.nan_to_num(img), 0.0, 1.0)


def _default_intrinsics(h, w):
  """Pinhole with a 60 degree horizontal field of view, centred (only for drawing frusta)."""
  f = 0.5 * w / math.tan(math.radians(30.0))
  return np.array([[f, 0, 0.5 * (w - 1)], [0, f, 0.5 * (h - 1)], [0, 0, 1.0]])


def _frustum_world(cam_from_world, K, h, w, size):
  """(5, 3) world points: the centre and the 4 image corners (tl, tr, br, bl) at depth `size`."""
  R, t = cam_from_world[:3, :3], cam_from_world[:3, 3]
  us = np.array([-0.5, w - 0.5, w - 0.5, -0.5])
  vs = np.array([-0.5, -0.5, h - 0.5, h - 0.5])
  x = (us - K[0, 2]) / K[0, 0] * size
  y = (vs - K[1, 2]) / K[1, 1] * size
  cam = np.concatenate([np.zeros((1, 3)), np.stack([x, y, np.full(4, size)], -1)])
  return (cam - t) @ R  # R^T (X_c - t)


def _plot_frustum(ax, pts, color, label, lw=1.0):
  """Draws a frustum given by `_frustum_world` points; the image's top edge is drawn thicker.
  Plots (x, z, -y) so that with OpenCV-like worlds (y down) up is up."""
  def xyz(p):
    p = np.atleast_2d(p)
    return p[:, 0], p[:, 2], -p[:, 1]

  c = pts[0]
  for k in range(1, 5):
    ax.plot(*xyz(np.stack([c, pts[k]])), color=color, lw=lw)
  ring = pts[[1, 2, 3, 4, 1]]
  ax.plot(*xyz(ring), color=color, lw=lw)
  ax.plot(*xyz(pts[[1, 2]]), color=color, lw=2.5 * lw)
  if label is not None:
    ax.text(*[v[0] for v in xyz(c)], label, color=color, fontsize=7)


def _set_equal_3d(ax, pts):
  """Equal-scale cube limits around (n, 3) world points (in the plotted (x, z, -y) order)."""
  p = np.stack([pts[:, 0], pts[:, 2], -pts[:, 1]], -1)
  lo, hi = p.min(0), p.max(0)
  mid, half = 0.5 * (lo + hi), 0.5 * max(float(np.max(hi - lo)), 1e-6) * 1.1
  ax.set_xlim(mid[0] - half, mid[0] + half)
  ax.set_ylim(mid[1] - half, mid[1] + half)
  ax.set_zlim(mid[2] - half, mid[2] + half)
  ax.set_box_aspect((1, 1, 1))
  ax.set_xlabel("x")
  ax.set_ylabel("z")
  ax.set_zlabel("-y")


def _masked_depth(depth, valid=None):
  d = np.asarray(depth, np.float64).copy()
  ok = np.isfinite(d) & (d > 0)
  if valid is not None:
    ok &= np.asarray(valid, bool)
  d[~ok] = np.nan
  return d


def plot_scene(images, pred_depth, gt_depth, pred_cam_from_world, gt_cam_from_world, path, *,
               gt_valid=None, intrinsics=None, max_views=6, title=None, dpi=100):
  """Saves a PNG: input views, predicted (and ground-truth) depth, camera frusta in 3D.

  Args:
    images: (v, h, w, 3) RGB, uint8 or float ([0, 1]; [-1, 1] or [0, 255] also recognised).
    pred_depth: (v, h, w) predicted depth (any scale; non-finite / <= 0 drawn blank).
    gt_depth: optional (v, h, w) ground-truth depth (None: no GT column); <= 0 / non-finite /
      outside `gt_valid` drawn blank.
    pred_cam_from_world: (v, 4, 4) or (v, 3, 4) predicted extrinsics.
    gt_cam_from_world: optional (v, 4, 4) / (v, 3, 4) ground-truth extrinsics. When given, the
      predicted cameras are moved into the GT frame by the sim(3) of their centres
      (`align_cameras_sim3`) and both are drawn (GT black, prediction red).
    path: output PNG path (its directory is created).
    gt_valid: optional (v, h, w) bool mask of the GT depth.
    intrinsics: optional (v, 3, 3) or (3, 3) pixel intrinsics used for the frustum shapes only
      (default: 60 degree horizontal field of view).
    max_views: at most this many views (the first ones) get image / depth rows.
    title: optional figure title.
    dpi: resolution of the PNG.
  With GT depth, the predicted depth is shown after the per-scene median scale of
  `depth_metrics` (so both columns are in GT units) and each row shares one colour scale (2nd-98th
  percentile of the valid GT depth of that view). Returns the path.
  """
  images = np.asarray(images)
  v, h, w = images.shape[:3]
  pred_d = _masked_depth(pred_depth)
  gt_d = None if gt_depth is None else _masked_depth(gt_depth, gt_valid)
  depth_note = "pred depth"
  if gt_d is not None:
    both = np.isfinite(pred_d) & np.isfinite(gt_d)
    s = scene_scale(np.where(both, pred_d, 1.0), np.where(both, gt_d, 1.0), both)
    if np.isfinite(s):
      pred_d = s * pred_d
      depth_note = f"pred depth x{s:.3g} (median scale)"

  rows = min(v, max_views)
  ncols = 2 + (gt_d is not None)
  cell = 2.2
  aspect = h / max(w, 1)
  fig = Figure(figsize=(cell * ncols + 6.0, max(cell * aspect * rows, 5.0) + 0.6), dpi=dpi)
  FigureCanvasAgg(fig)
  gs = fig.add_gridspec(rows, ncols + 3)
  for i in range(rows):
    ax = fig.add_subplot(gs[i, 0])
    ax.imshow(_display_image(images[i]))
    ax.set_ylabel(f"view {i}", fontsize=8)
    ref = gt_d[i] if gt_d is not None else pred_d[i]
    ok = np.isfinite(ref)
    if not ok.any():
      ref, ok = pred_d[i], np.isfinite(pred_d[i])
    vmin, vmax = (np.percentile(ref[ok], [2, 98]) if ok.any() else (0.0, 1.0))
    vmax = vmax if vmax > vmin else vmin + 1e-6
    panels = [(pred_d[i], depth_note)] + ([(gt_d[i], "GT depth")] if gt_d is not None else [])
    for j, (d, name) in enumerate(panels):
      axd = fig.add_subplot(gs[i, 1 + j])
      im = axd.imshow(np.ma.masked_invalid(d), cmap="turbo", vmin=vmin, vmax=vmax,
                      interpolation="nearest")
      axd.set_facecolor("white")
      if i == 0:
        axd.set_title(name, fontsize=8)
    fig.colorbar(im, ax=axd, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
    for a in fig.axes[-(ncols + 1):]:
      if a.get_label() != "<colorbar>":
        a.set_xticks([])
        a.set_yticks([])
  fig.axes[0].set_title("input", fontsize=8)

  ax3 = fig.add_subplot(gs[:, ncols:], projection="3d")
  Ks = np.broadcast_to(np.asarray(intrinsics, np.float64) if intrinsics is not None
                       else _default_intrinsics(h, w), (v, 3, 3))
  pred_T = np.asarray(pred_cam_from_world, np.float64)
  if gt_cam_from_world is not None:
    gt_T = np.asarray(gt_cam_from_world, np.float64)
    pred_T = align_cameras_sim3(pred_T, gt_T)
    sets = [(gt_T, "black", "GT"), (pred_T, "tab:red", "pred (sim3-aligned)")]
  else:
    sets = [(pred_T, "tab:red", "pred")]
  centres = np.concatenate([camera_centers_np(T) for T, _, _ in sets])
  extent = float(np.max(np.ptp(centres, axis=0))) if len(centres) > 1 else 0.0
  size = 0.2 * extent if extent > 0 else 0.2
  all_pts = [centres]
  for T, color, name in sets:
    for i in range(v):
      pts = _frustum_world(T[i], Ks[i], h, w, size)
      all_pts.append(pts)
      _plot_frustum(ax3, pts, color, str(i) if color != "black" or len(sets) == 1 else None)
    ax3.plot([], [], color=color, label=name)
  _set_equal_3d(ax3, np.concatenate(all_pts))
  ax3.legend(fontsize=7, loc="upper left")
  ax3.set_title("cameras", fontsize=9)
  ax3.tick_params(labelsize=6)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.subplots_adjust(left=0.04, right=0.98, bottom=0.04, top=0.9 if title else 0.94,
                      wspace=0.3, hspace=0.2)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=dpi)
  return path
