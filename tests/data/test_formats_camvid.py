"""Tests of jaxrecon.data.formats.camvid on small synthetic folders (tmp_path)."""
import re

import cv2
import numpy as np
import pytest

from jaxrecon.data.formats import camvid
from jaxrecon.data.scene import IGNORE_LABEL


def _mentions(*parts):
  return ".*".join(re.escape(str(p)) for p in parts)


def _folder(tmp_path, labels=None):
  (tmp_path / "images").mkdir()
  (tmp_path / "labels").mkdir()
  labels = np.arange(12, dtype=np.uint8).reshape(3, 4) if labels is None else labels
  for name in ("f1", "f0"):
    assert cv2.imwrite(str(tmp_path / "images" / f"{name}.png"), np.zeros((3, 4, 3), np.uint8))
    assert cv2.imwrite(str(tmp_path / "labels" / f"{name}.png"), labels)
  return tmp_path


def test_void_becomes_ignore(tmp_path):
  scene = camvid.read_camvid(_folder(tmp_path))
  assert scene.names == ("f0", "f1") and scene.labels.dtype == np.uint8
  expected = np.arange(12).reshape(3, 4)
  expected[expected == 11] = IGNORE_LABEL
  np.testing.assert_array_equal(scene.labels[0], expected)
  assert scene.intrinsics is None and scene.cam_from_world is None
  assert len(camvid.CLASSES) == 11


def test_errors_name_the_file(tmp_path):
  folder = _folder(tmp_path, labels=np.full((3, 4), 12, np.uint8))
  with pytest.raises(ValueError, match=_mentions(folder / "labels" / "f0.png", "value 12")):
    camvid.read_camvid(folder)
  assert cv2.imwrite(str(folder / "labels" / "f0.png"), np.zeros((2, 4), np.uint8))
  with pytest.raises(ValueError, match=_mentions(folder / "labels" / "f0.png", "size")):
    camvid.read_camvid(folder)
  (folder / "labels" / "f0.png").unlink()
  with pytest.raises(FileNotFoundError, match=_mentions(folder / "labels" / "f0.png")):
    camvid.read_camvid(folder)
  with pytest.raises(FileNotFoundError, match=_mentions(tmp_path / "none")):
    camvid.read_camvid(tmp_path / "none")
