"""Tests of jaxrecon.evaluate.report: metrics.json / metrics.md and the per-scene PNG figure."""
import json
import math
import os

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from jaxrecon.evaluate.report import plot_scene, summarize, write_report


def test_write_report_json_and_markdown(tmp_path):
  results = {
      "scene_a": {"ate": 0.5, "auc30": 80.0, "depth_rel": np.float32(0.25)},
      "scene_b": {"ate": 1.5, "auc30": float("nan"), "depth_rel": 0.75, "note": "x"},
      "scene_c": {"ate": np.float64(1.0)},
  }
  paths = write_report(results, str(tmp_path / "out"))
  assert os.path.isfile(paths["json"]) and os.path.isfile(paths["md"])
  with open(paths["json"]) as f:
    data = json.load(f)  # strict JSON: nan became null
  assert data["num_scenes"] == 3
  assert data["scenes"]["scene_b"]["auc30"] is None
  assert data["scenes"]["scene_a"]["depth_rel"] == pytest.approx(0.25)
  assert data["mean"]["ate"] == pytest.approx(1.0)
  assert data["mean"]["auc30"] == pytest.approx(80.0)  # nan and missing ignored
  assert data["mean"]["depth_rel"] == pytest.approx(0.5)
  assert data["mean"]["note"] is None  # non-numeric column: no mean
  lines = open(paths["md"]).read().strip().splitlines()
  assert lines[0] == "| scene | ate | auc30 | depth_rel | note |"
  assert len(lines) == 2 + 3 + 2
  assert lines[3].startswith("| scene_b | 1.5 | nan | 0.75 | x |")
  assert lines[4] == "| scene_c | 1 |  |  |  |"
  assert lines[-2] == "| **mean** | 1 | 80 | 0.5 | nan |"
  # #11: the mean skips nan / missing scenes, so every table says over how many it is.
  assert data["num_valid"] == {"ate": 3, "auc30": 1, "depth_rel": 2, "note": 0}
  assert lines[-1] == "| valid scenes | 3/3 | 1/3 | 2/3 | 0/3 |"


def test_summarize_empty_and_all_nan():
  assert summarize({}) == {}
  out = summarize({"a": {"m": float("nan")}})
  assert math.isnan(out["m"])


def _scene(rng, v=3, h=24, w=32):
  images = rng.uniform(size=(v, h, w, 3)).astype(np.float32)
  gt = 2.0 + rng.uniform(size=(v, h, w))
  valid = rng.uniform(size=(v, h, w)) > 0.3
  cams = []
  for i in range(v):
    R = Rotation.from_euler("yx", [-25.0 * i, 5.0 * i], degrees=True).as_matrix()
    c = np.array([np.cos(i), 0.3 * np.sin(2 * i), np.sin(i)])
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, -R @ c
    cams.append(T)
  gt_cams = np.stack(cams)
  pred_cams = gt_cams.copy()
  pred_cams[:, :3, 3] *= 0.5
  return images, gt, valid, gt_cams, pred_cams


def _check_png(path, min_bytes=20_000):
  assert os.path.isfile(path)
  assert os.path.getsize(path) > min_bytes
  img = cv2.imread(str(path), cv2.IMREAD_COLOR)
  assert img is not None and img.ndim == 3 and min(img.shape[:2]) > 300
  assert img.std() > 10  # not a blank canvas
  return img


def test_plot_scene_with_ground_truth(tmp_path):
  images, gt, valid, gt_cams, pred_cams = _scene(np.random.default_rng(0))
  pred = 0.4 * gt
  pred[0, :3, :3] = np.nan  # invalid predictions are drawn blank
  path = tmp_path / "figs" / "scene.png"
  out = plot_scene(images, pred, gt, pred_cams, gt_cams, str(path), gt_valid=valid, title="t")
  assert out == str(path)
  _check_png(path)


def test_plot_scene_prediction_only_uint8_and_intrinsics(tmp_path):
  images, gt, _, _, pred_cams = _scene(np.random.default_rng(1), v=2)
  images = (255 * images).astype(np.uint8)
  K = np.array([[30.0, 0, 15.5], [0, 30.0, 11.5], [0, 0, 1]])
  path = tmp_path / "pred_only.png"
  plot_scene(images, gt, None, pred_cams[:, :3], None, str(path), intrinsics=K)
  _check_png(path)


def test_plot_scene_degenerate_inputs(tmp_path):
  # One view, all depth invalid, images in [-1, 1]: still writes a readable figure.
  rng = np.random.default_rng(2)
  images = rng.uniform(-1, 1, size=(1, 16, 16, 3))
  depth = np.full((1, 16, 16), np.nan)
  cams = np.eye(4)[None]
  path = tmp_path / "degenerate.png"
  plot_scene(images, depth, np.zeros((1, 16, 16)), cams, cams, str(path))
  _check_png(path, min_bytes=5_000)
