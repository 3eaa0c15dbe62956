"""Tests of segmentation metrics, sliding-window inference and the segmentation figure."""
import math

import numpy as np
import pytest

from jaxrecon.evaluate.segmentation import (colorize, confusion_matrix, iou_from_confusion,
                                            mean_iou, palette, pixel_accuracy, plot_segmentation,
                                            segmentation_report, sliding_window_logits)


def test_confusion_hand_computed_with_ignore():
  target = np.array([[0, 0, 1], [1, 255, 2]])
  pred = np.array([[0, 1, 1], [1, 0, 0]])
  conf = confusion_matrix(pred, target, 3)
  expected = np.array([[1, 1, 0],
                       [0, 2, 0],
                       [1, 0, 0]])
  assert conf.dtype == np.int64
  np.testing.assert_array_equal(conf, expected)
  # class 0: tp 1, fp 1 (the 2 predicted as 0), fn 1 -> 1/3; class 1: 2 / 3; class 2: 0 / 1.
  np.testing.assert_allclose(iou_from_confusion(conf), [1 / 3, 2 / 3, 0.0])
  assert mean_iou(conf) == pytest.approx(1 / 3)
  assert pixel_accuracy(conf) == pytest.approx(3 / 5)


def test_out_of_range_target_ignored_and_bad_pred_raises():
  target = np.array([0, 1, 7, -1, 255])
  pred = np.array([0, 1, 9, 9, 9])       # bad predictions only at unscored pixels: fine
  np.testing.assert_array_equal(confusion_matrix(pred, target, 2), [[1, 0], [0, 1]])
  with pytest.raises(ValueError, match="pred"):
    confusion_matrix(np.array([2]), np.array([0]), 2)
  with pytest.raises(ValueError, match="shape"):
    confusion_matrix(np.zeros(3, int), np.zeros(4, int), 2)
  with pytest.raises(ValueError, match="target"):
    confusion_matrix(np.zeros(3, int), np.zeros(3), 2)


def test_absent_class_is_nan_and_excluded_from_mean():
  target = np.array([0, 0, 1, 1])
  pred = np.array([0, 0, 1, 0])
  conf = confusion_matrix(pred, target, 4)
  iou = iou_from_confusion(conf)
  assert iou[0] == pytest.approx(2 / 3) and iou[1] == pytest.approx(1 / 2)
  assert np.isnan(iou[2]) and np.isnan(iou[3])
  assert mean_iou(conf) == pytest.approx((2 / 3 + 1 / 2) / 2)
  report = segmentation_report(conf, ["road", "car", "sky", "tree"])
  assert report["miou"] == pytest.approx((2 / 3 + 1 / 2) / 2)
  assert report["pixel_accuracy"] == pytest.approx(3 / 4)
  assert report["iou"]["car"] == pytest.approx(0.5) and math.isnan(report["iou"]["sky"])
  assert report["num_pixels"] == 4
  assert math.isnan(mean_iou(np.zeros((3, 3), np.int64)))
  with pytest.raises(ValueError, match="class_names"):
    segmentation_report(conf, ["a", "b"])


def _loop_confusion(pred, target, k, ignore):
  conf = np.zeros((k, k), np.int64)
  for p, t in zip(pred.ravel().tolist(), target.ravel().tolist()):
    if t == ignore or t < 0 or t >= k:
      continue
    conf[t, p] += 1
  return conf


def _loop_iou(conf):
  k = conf.shape[0]
  out = []
  for c in range(k):
    tp = conf[c, c]
    fp = sum(conf[r, c] for r in range(k) if r != c)
    fn = sum(conf[c, r] for r in range(k) if r != c)
    out.append(tp / (tp + fp + fn) if tp + fp + fn else float("nan"))
  return np.array(out)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_loop_reference(seed):
  rng = np.random.default_rng(seed)
  k = 6
  target = rng.integers(0, k, (3, 17, 23))
  target[rng.random(target.shape) < 0.1] = 255
  target[target == 5] = 4           # class 5 absent from the target
  pred = rng.integers(0, k - 1, target.shape)   # ...and from the prediction
  conf = confusion_matrix(pred, target, k)
  ref = _loop_confusion(pred, target, k, 255)
  np.testing.assert_array_equal(conf, ref)
  np.testing.assert_allclose(iou_from_confusion(conf), _loop_iou(ref), equal_nan=True)
  assert np.isnan(iou_from_confusion(conf)[5])
  assert mean_iou(conf) == pytest.approx(np.nanmean(_loop_iou(ref)))


K = 4


def _pixel_logits(images):
  """A per-pixel 'network': one-hot of a class computed from the pixel's own value (plus a
  constant offset so logits are not all 0/1), so the full-image result is known exactly."""
  images = np.asarray(images, np.float32)
  cls = (images[..., 0] + 2 * images[..., 1] + images[..., 2]).astype(np.int64) % K
  return np.eye(K, dtype=np.float32)[cls] * 3.5 - 0.25 + 0.01 * images[..., :1]


@pytest.mark.parametrize("hw", [(50, 77), (32, 48), (20, 30), (32, 20)])
def test_sliding_window_matches_full_image(hw):
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, hw + (3,)).astype(np.float32)
  calls = []

  def predict(tiles):
    calls.append(tiles.shape)
    assert tiles.shape[1:] == (32, 48, 3)
    return _pixel_logits(tiles)

  out = sliding_window_logits(predict, image, window=(32, 48), stride=(21, 30), num_classes=K)
  assert out.shape == hw + (K,) and out.dtype == np.float32
  np.testing.assert_array_equal(out, _pixel_logits(image))
  assert len(calls) == 1                 # all tiles in one batch


def test_sliding_window_averages_overlaps_and_covers_border():
  # predict_fn returns the tile's index as a constant logit map: the result at a pixel is the mean
  # index of the tiles covering it, which pins down both the tiling and the averaging.
  def predict(tiles):
    n = tiles.shape[0]
    return np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None, None],
                           tiles.shape[:3] + (1,))

  out = sliding_window_logits(predict, np.zeros((1, 10, 3)), window=(1, 4), stride=(1, 3),
                              num_classes=1)[0, :, 0]
  # tiles start at 0, 3, 6 (aligned to the border): [0,4) [3,7) [6,10)
  np.testing.assert_allclose(out, [0, 0, 0, 0.5, 1, 1, 1.5, 2, 2, 2])
  out = sliding_window_logits(predict, np.zeros((1, 10, 3)), window=(1, 4), stride=(1, 3),
                              num_classes=1, batch_size=2)[0, :, 0]
  np.testing.assert_allclose(out, [0, 0, 0, 0.5, 1, 1, 0.5, 0, 0, 0])   # indices restart per batch


def test_sliding_window_validates():
  image = np.zeros((40, 40, 3))
  with pytest.raises(ValueError, match="stride"):
    sliding_window_logits(_pixel_logits, image, window=(32, 32), stride=(40, 16), num_classes=K)
  with pytest.raises(ValueError, match="predict_fn"):
    sliding_window_logits(_pixel_logits, image, window=(32, 32), stride=(16, 16), num_classes=K + 1)
  with pytest.raises(ValueError, match="image"):
    sliding_window_logits(_pixel_logits, np.zeros((40, 40)), window=(32, 32), stride=(16, 16),
                          num_classes=K)


def test_palette_and_colorize():
  pal = palette(300)
  assert pal.shape == (300, 3) and pal.dtype == np.uint8
  assert len({tuple(c) for c in pal.tolist()}) == 300
  assert not np.any(np.all(pal == 0, axis=1))       # black is reserved for ignored pixels
  np.testing.assert_array_equal(palette(5), pal[:5])
  rgb = colorize(np.array([[0, 1], [255, 7]]), palette(3))
  assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
  np.testing.assert_array_equal(rgb[0, 0], pal[0])
  np.testing.assert_array_equal(rgb[0, 1], pal[1])
  np.testing.assert_array_equal(rgb[1], 0)


def test_plot_segmentation_writes_png(tmp_path):
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (32, 48, 3)).astype(np.uint8)
  target = rng.integers(0, 3, (32, 48))
  target[:4] = 255
  pred = rng.integers(0, 3, (32, 48))
  path = tmp_path / "seg.png"
  plot_segmentation(image, pred, target, path, class_names=["road", "car", "sky"],
                    palette=palette(3))
  data = path.read_bytes()
  assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"
  path2 = tmp_path / "seg_pred_only.png"
  plot_segmentation(image.astype(np.float32), pred, None, path2)
  assert path2.stat().st_size > 1000
