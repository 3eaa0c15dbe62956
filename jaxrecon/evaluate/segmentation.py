"""Semantic segmentation evaluation: confusion matrix, IoU / mIoU, sliding-window inference, figures.

Host-side numpy (not jitted, not differentiated). Label maps are integer arrays (h, w) (or any
shape, flattened together) of class ids in [0, k); `ignore_label` (255 by default, the Cityscapes /
ADE20K convention) marks pixels that are not scored. Confusion matrices have rows = ground truth and
columns = prediction, counts in int64.

matplotlib is imported only inside `plot_segmentation`, so importing this module stays light.
"""
from __future__ import annotations

import math

import numpy as np

from jaxrecon.data.scene import IGNORE_LABEL  # the one definition (numpy only: stays light)


def confusion_matrix(pred, target, num_classes: int, *, ignore_label: int = IGNORE_LABEL):
  """Pixel confusion matrix of one or many label maps.

  Args:
    pred: (...) integer predicted class ids, each in [0, num_classes) (e.g. argmax of logits).
    target: (...) integer ground-truth ids, same shape as pred. Pixels equal to `ignore_label` or
      outside [0, num_classes) are not counted.
    num_classes: k.
    ignore_label: ground-truth id of unlabelled pixels.

  Returns:
    (k, k) int64 counts, conf[t, p] = number of scored pixels of true class t predicted as p.

  Raises ValueError on shape mismatch, non-integer inputs, or a scored pixel whose prediction is
  outside [0, k) (a bad prediction must not silently drop out of the score).
  """
  pred = np.asarray(pred)
  target = np.asarray(target)
  if num_classes < 1:
    raise ValueError(f"num_classes must be >= 1, got {num_classes}")
  if pred.shape != target.shape:
    raise ValueError(f"pred shape {pred.shape} != target shape {target.shape}")
  for name, a in (("pred", pred), ("target", target)):
    if a.size and not np.issubdtype(a.dtype, np.integer):
      raise ValueError(f"{name} must hold integer class ids, got dtype {a.dtype}")
  pred = pred.reshape(-1).astype(np.int64)
  target = target.reshape(-1).astype(np.int64)
  valid = (target != ignore_label) & (target >= 0) & (target < num_classes)
  pred, target = pred[valid], target[valid]
  if pred.size and (pred.min() < 0 or pred.max() >= num_classes):
    raise ValueError(f"pred has ids outside [0, {num_classes}) at scored pixels: "
                     f"min {pred.min()}, max {pred.max()}")
  counts = np.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
  return counts.reshape(num_classes, num_classes).astype(np.int64)


def iou_from_confusion(conf):
  """Per-class intersection over union, (k,) float64: tp / (tp + fp + fn).

  A class absent from both ground truth and prediction has 0 / 0 and gets nan (it is excluded
  from the mean rather than counted as 0 or 1).
  """
  conf = _square(conf)
  tp = np.diag(conf)
  union = conf.sum(axis=0) + conf.sum(axis=1) - tp
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def mean_iou(conf) -> float:
  """nanmean of `iou_from_confusion(conf)`; nan when no class occurs at all."""
  iou = iou_from_confusion(conf)
  return float(np.mean(iou[~np.isnan(iou)])) if np.any(~np.isnan(iou)) else math.nan


def pixel_accuracy(conf) -> float:
  """Fraction of scored pixels predicted correctly; nan when there are none."""
  conf = _square(conf)
  total = conf.sum()
  return float(np.trace(conf) / total) if total > 0 else math.nan


def segmentation_report(conf, class_names=None) -> dict:
  """Summary of a confusion matrix.

  Args:
    conf: (k, k) confusion matrix (rows = target).
    class_names: k names; default "0".."k-1".

  Returns:
    dict with "miou" (float, nanmean IoU over present classes, in [0, 1]), "pixel_accuracy"
    (float in [0, 1]), "iou" ({name: float or nan}), "num_pixels" (int, scored pixels).
  """
  conf = _square(conf)
  k = conf.shape[0]
  if class_names is None:
    class_names = [str(i) for i in range(k)]
  class_names = list(class_names)
  if len(class_names) != k:
    raise ValueError(f"class_names has {len(class_names)} names for {k} classes")
  iou = iou_from_confusion(conf)
  return dict(miou=mean_iou(conf), pixel_accuracy=pixel_accuracy(conf),
              iou={name: float(v) for name, v in zip(class_names, iou)},
              num_pixels=int(conf.sum()))


def _square(conf):
  conf = np.asarray(conf)
  if conf.ndim != 2 or conf.shape[0] != conf.shape[1]:
    raise ValueError(f"conf: expected a square (k, k) matrix, got shape {conf.shape}")
  return conf


def _tile_starts(size, window, stride):
  """Start offsets of windows of `window` pixels every `stride` pixels covering [0, size); the last
  window is aligned to the border. size <= window -> a single window at 0."""
  if size <= window:
    return [0]
  starts = list(range(0, size - window, stride))
  starts.append(size - window)
  return starts


def sliding_window_logits(predict_fn, image, *, window, stride, num_classes: int,
                          batch_size: int | None = None):
  """Logits of an image of any size from a network trained on `window` crops.

  Overlapping tiles of `window` pixels every `stride` pixels cover the image (the last row/column
  of tiles is aligned to the bottom/right border, so no pixel is missed); logits of pixels covered
  by several tiles are averaged. An image smaller than the window is zero-padded at the bottom /
  right to the window and the padding is cropped off the result.

  Args:
    predict_fn: maps (n, wh, ww, 3) images to (n, wh, ww, k) logits (numpy or jax arrays).
    image: (H, W, 3) image, any dtype, passed to predict_fn as is (same dtype).
    window: (wh, ww) tile size in pixels (e.g. the training crop).
    stride: (sh, sw) tile step in pixels, 1 <= stride <= window (larger would leave gaps).
    num_classes: k.
    batch_size: tiles per predict_fn call; None (default) sends all tiles in one call.

  Returns:
    (H, W, k) float32 averaged logits.
  """
  image = np.asarray(image)
  if image.ndim != 3:
    raise ValueError(f"image: expected shape (H, W, C), got {image.shape}")
  wh, ww = (int(v) for v in window)
  sh, sw = (int(v) for v in stride)
  if wh < 1 or ww < 1:
    raise ValueError(f"window must be positive, got {window}")
  if not (1 <= sh <= wh and 1 <= sw <= ww):
    raise ValueError(f"stride {stride} must be in [1, window] per axis (window {window})")
  if batch_size is not None and batch_size < 1:
    raise ValueError(f"batch_size must be >= 1 or None, got {batch_size}")
  H, W = image.shape[:2]
  ph, pw = max(wh - H, 0), max(ww - W, 0)
  padded = np.pad(image, ((0, ph), (0, pw), (0, 0))) if ph or pw else image
  PH, PW = padded.shape[:2]

  corners = [(y, x) for y in _tile_starts(PH, wh, sh) for x in _tile_starts(PW, ww, sw)]
  tiles = np.stack([padded[y:y + wh, x:x + ww] for y, x in corners])
  n = len(corners)
  step = n if batch_size is None else batch_size
  outs = []
  for i in range(0, n, step):
    out = np.asarray(predict_fn(tiles[i:i + step]))
    expected = (min(step, n - i), wh, ww, num_classes)
    if out.shape != expected:
      raise ValueError(f"predict_fn returned shape {out.shape}, expected {expected}")
    outs.append(out)
  logits = np.concatenate(outs) if len(outs) > 1 else outs[0]

  # float64 accumulation: averaging k copies of one float32 value then gives it back exactly.
  total = np.zeros((PH, PW, num_classes), np.float64)
  count = np.zeros((PH, PW, 1), np.float64)
  for (y, x), tile in zip(corners, logits):
    total[y:y + wh, x:x + ww] += tile
    count[y:y + wh, x:x + ww] += 1.0
  return (total / count)[:H, :W].astype(np.float32)


def palette(num_classes: int):
  """(k, 3) uint8 fixed, pairwise distinct, non-black colours (black is kept for ignored pixels).

  Colour of class i: the bits of i + 1 spread over the high bits of R, G, B in turn (the PASCAL
  VOC construction, shifted by one so that no class is black). Distinct for k < 2^24.
  """
  if not 1 <= num_classes < 2 ** 24:
    raise ValueError(f"num_classes must be in [1, 2^24), got {num_classes}")
  ids = np.arange(1, num_classes + 1, dtype=np.int64)
  colours = np.zeros((num_classes, 3), np.int64)
  for bit in range(8):                     # bit j of each channel comes from bits 3j.. of the id
    for c in range(3):
      colours[:, c] |= ((ids >> (3 * bit + c)) & 1) << (7 - bit)
  return colours.astype(np.uint8)


# `plot_segmentation` takes a `palette` argument that shadows the function.
_default_palette = palette


def colorize(labels, palette, *, ignore_label: int = IGNORE_LABEL):
  """labels: (...) integer ids; palette: (k, 3) uint8. Returns (..., 3) uint8 colours; ignored or
  out-of-range ids are black."""
  labels = np.asarray(labels)
  palette = np.asarray(palette, np.uint8)
  k = palette.shape[0]
  valid = (labels != ignore_label) & (labels >= 0) & (labels < k)
  rgb = palette[np.where(valid, labels, 0)]
  rgb[~valid] = 0
  return rgb


def plot_segmentation(image, pred, target, path, *, class_names=None, palette=None,
                      ignore_label: int = IGNORE_LABEL, dpi: int = 100):
  """Write a PNG with image / prediction / ground truth side by side and a legend of the classes
  that occur.

  Args:
    image: (h, w, 3) RGB, uint8 or float in [0, 255].
    pred: (h, w) integer predicted ids.
    target: (h, w) integer ground-truth ids, or None (then only image and prediction are drawn).
    path: output file (PNG).
    class_names: k names (default "0".."k-1"; k then = max id + 1).
    palette: (k, 3) uint8 colours (default `palette(k)`).
    ignore_label: drawn black.
    dpi: resolution of the figure.
  """
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  from matplotlib.patches import Patch

  image = np.asarray(image)
  pred = np.asarray(pred)
  if image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f"image: expected shape (h, w, 3), got {image.shape}")
  if pred.shape != image.shape[:2]:
    raise ValueError(f"pred shape {pred.shape} != image size {image.shape[:2]}")
  if target is not None:
    target = np.asarray(target)
    if target.shape != image.shape[:2]:
      raise ValueError(f"target shape {target.shape} != image size {image.shape[:2]}")
  if class_names is None:
    maps = [pred] if target is None else [pred, np.where(target == ignore_label, 0, target)]
    k = int(max(int(m.max()) for m in maps)) + 1 if pred.size else 1
    class_names = [str(i) for i in range(k)]
  k = len(class_names)
  colours = _default_palette(k) if palette is None else np.asarray(palette, np.uint8)
  if colours.shape[0] < k:
    raise ValueError(f"palette has {colours.shape[0]} colours for {k} classes")

  panels = [("image", np.clip(image.astype(np.float64), 0, 255).astype(np.uint8)),
            ("prediction", colorize(pred, colours, ignore_label=ignore_label))]
  if target is not None:
    panels.append(("ground truth", colorize(target, colours, ignore_label=ignore_label)))

  h, w = image.shape[:2]
  # Panels 4 inches wide at the image's aspect, plus room for titles and the legend row;
  # constrained layout keeps both inside the canvas.
  panel_h = 4.0 * h / w
  fig = Figure(figsize=(4.0 * len(panels), panel_h + 1.0), dpi=dpi, layout="constrained")
  FigureCanvasAgg(fig)
  axes = fig.subplots(1, len(panels), squeeze=False)[0]
  for ax, (title, rgb) in zip(axes, panels):
    ax.imshow(rgb, interpolation="nearest")
    ax.set_title(title)
    ax.set_axis_off()
  shown = [pred] if target is None else [pred, target]
  present = np.unique(np.concatenate([m.reshape(-1) for m in shown]))
  handles = [Patch(color=colours[i] / 255.0, label=class_names[i])
             for i in present.tolist() if 0 <= i < k]
  if handles:
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 8),
               fontsize=8, frameon=False)
  fig.savefig(path, dpi=dpi)
