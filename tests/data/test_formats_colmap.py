"""Tests of jaxrecon.data.formats.colmap on small synthetic text models (tmp_path)."""
import re

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from jaxrecon.data.formats import colmap
from jaxrecon.io import colmap_read

_CAMERAS = ["# Camera list", "1 PINHOLE 5 4 100 110 2.5 2.0", "2 SIMPLE_PINHOLE 5 4 90 2.5 2.0"]
_QUAT_XYZW = Rotation.from_euler("xyz", [0.1, -0.2, 0.3]).as_quat()
_IMAGES = ["# Image list", "",
           f"1 {_QUAT_XYZW[3]} {' '.join(map(str, _QUAT_XYZW[:3]))} 0.5 -1 2 1 b.png",
           "1.0 2.0 -1",
           "2 1 0 0 0 0 0 0 2 a.png",
           ""]


def _mentions(*parts):
  return ".*".join(re.escape(str(p)) for p in parts)


def _model(tmp_path, cameras=_CAMERAS, images=_IMAGES, size=(4, 5)):
  model, image_dir = tmp_path / "sparse", tmp_path / "images"
  model.mkdir()
  image_dir.mkdir()
  (model / "cameras.txt").write_text("\n".join(cameras) + "\n")
  (model / "images.txt").write_text("\n".join(images) + "\n")
  for name in ("a.png", "b.png"):
    assert cv2.imwrite(str(image_dir / name), np.zeros(size + (3,), np.uint8))
  return model, image_dir


def test_reads_pinhole_models_in_our_pixel_convention(tmp_path):
  scene = colmap.read_colmap(*_model(tmp_path))
  assert scene.names == ("a", "b")  # sorted by name
  # COLMAP's (0.5, 0.5) pixel centre convention -> ours: principal point - 0.5.
  np.testing.assert_allclose(scene.intrinsics[0], [[90, 0, 2], [0, 90, 1.5], [0, 0, 1]])
  np.testing.assert_allclose(scene.intrinsics[1], [[100, 0, 2], [0, 110, 1.5], [0, 0, 1]])
  np.testing.assert_allclose(scene.cam_from_world[0], np.eye(4))
  # qw qx qy qz, world -> camera.
  np.testing.assert_allclose(scene.cam_from_world[1, :3, :3],
                             Rotation.from_quat(_QUAT_XYZW).as_matrix(), atol=1e-12)
  np.testing.assert_allclose(scene.cam_from_world[1, :3, 3], [0.5, -1, 2])


def test_other_camera_models_are_rejected_by_name(tmp_path):
  cameras = ["1 OPENCV 5 4 100 110 2.5 2.0 0.1 0 0 0"]
  model, image_dir = _model(tmp_path, cameras=cameras)
  with pytest.raises(ValueError, match=_mentions(model / "cameras.txt", "line 1", "'OPENCV'",
                                                 "not supported")):
    colmap.read_colmap(model, image_dir)


@pytest.mark.parametrize("cameras, expected", [
    (["1 PINHOLE 5 4 100 110 2.5"], ("line 1", "8 fields", "got 7")),
    (["1 PINHOLE 5 4 100 x 2.5 2.0"], ("line 1", "field 6", "'x'")),
    (["1 PINHOLE 5 four 100 110 2.5 2.0"], ("line 1", "integers")),
    (["1 PINHOLE 5 4 -100 110 2.5 2.0"], ("line 1", "positive")),
    (["1 PINHOLE 5 4 1 1 2 2", "1 PINHOLE 5 4 1 1 2 2"], ("line 2", "twice")),
    (["# nothing"], ("no cameras",)),
], ids=["fields", "letter", "size", "focal", "duplicate", "empty"])
def test_bad_cameras_name_file_and_line(tmp_path, cameras, expected):
  path = tmp_path / "cameras.txt"
  path.write_text("\n".join(cameras) + "\n")
  with pytest.raises(ValueError, match=_mentions(path, *expected)):
    colmap_read.read_cameras_txt(path)


@pytest.mark.parametrize("images, expected", [
    (["1 1 0 0 0 0 0 0 1", ""], ("line 1", "10 fields", "got 9")),
    (["1 1 0 0 0 0 0 0 1 a.png", "", "2 1 0 0 y 0 0 0 1 b.png", ""], ("line 3", "field 5", "'y'")),
    (["1 0 0 0 0 0 0 0 1 a.png", ""], ("line 1", "zero quaternion")),
    (["1 1 0 0 0 0 0 0 1 a.png", "", "2 1 0 0 0 0 0 0 1 a.png", ""], ("line 3", "twice")),
], ids=["fields", "letter", "zero-quaternion", "duplicate"])
def test_bad_images_name_file_and_line(tmp_path, images, expected):
  path = tmp_path / "images.txt"
  path.write_text("\n".join(images) + "\n")
  with pytest.raises(ValueError, match=_mentions(path, *expected)):
    colmap_read.read_images_txt(path)


def test_unknown_camera_missing_image_and_size_mismatch(tmp_path):
  model, image_dir = _model(tmp_path, images=["1 1 0 0 0 0 0 0 9 a.png", ""])
  with pytest.raises(ValueError, match=_mentions(model / "images.txt", "camera 9")):
    colmap.read_colmap(model, image_dir)
  (model / "images.txt").write_text("1 1 0 0 0 0 0 0 1 c.png\n\n")
  with pytest.raises(FileNotFoundError, match=_mentions(image_dir / "c.png")):
    colmap.read_colmap(model, image_dir)
  assert cv2.imwrite(str(image_dir / "c.png"), np.zeros((7, 5, 3), np.uint8))
  with pytest.raises(ValueError, match=_mentions(image_dir / "c.png", "5x7", "5x4")):
    colmap.read_colmap(model, image_dir)
  (model / "cameras.txt").unlink()
  with pytest.raises(FileNotFoundError, match=_mentions(model / "cameras.txt")):
    colmap.read_colmap(model, image_dir)
