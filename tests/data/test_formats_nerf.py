"""Tests of jaxrecon.data.formats.nerf on small synthetic files (tmp_path)."""
import json
import re

import cv2
import numpy as np
import pytest

from jaxrecon.data.formats import nerf

_ANGLE = 2 * np.arctan(0.5)  # tan(angle / 2) = 0.5: fx = w


def _gl_pose(centre):
  """OpenGL camera-to-world at `centre` looking at the origin, world z up."""
  forward = -np.asarray(centre, float) / np.linalg.norm(centre)  # OpenGL looks down -z
  right = np.cross(forward, [0.0, 0.0, 1.0])
  right /= np.linalg.norm(right)
  up = np.cross(right, forward)
  pose = np.eye(4)
  pose[:3, :3] = np.stack([right, up, -forward], axis=1)
  pose[:3, 3] = centre
  return pose


def _write(tmp_path, frames=None, angle=_ANGLE, h=6, w=8, alpha=255):
  (tmp_path / "train").mkdir(exist_ok=True)
  rgba = np.zeros((h, w, 4), np.uint8)
  rgba[..., 0], rgba[..., 3] = 100, alpha
  assert cv2.imwrite(str(tmp_path / "train" / "r_0.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
  if frames is None:
    frames = [{"file_path": "./train/r_0", "transform_matrix": _gl_pose([0, -4, 1]).tolist()}]
  path = tmp_path / "transforms_train.json"
  path.write_text(json.dumps({"camera_angle_x": angle, "frames": frames}))
  return path


def test_intrinsics_use_the_pixel_centre_convention():
  k = nerf.nerf_intrinsics(_ANGLE, 6, 8)
  np.testing.assert_allclose(k, [[8, 0, 3.5], [0, 8, 2.5], [0, 0, 1]])


def test_pose_conversion_looks_at_the_target(tmp_path):
  scene = nerf.read_nerf(_write(tmp_path))
  assert scene.names == ("r_0",) and scene.images.shape == (1, 6, 8, 3)
  origin = scene.cam_from_world[0] @ [0, 0, 0, 1]
  assert origin[2] > 0 and np.allclose(origin[:2], 0, atol=1e-12)  # on the +z axis, in front
  # World "up" (+z) must appear above the centre: smaller row (OpenCV y down).
  up = scene.cam_from_world[0] @ [0, 0, 0.1, 1]
  assert (scene.intrinsics[0] @ up[:3])[1] / up[2] < scene.intrinsics[0, 1, 2]
  np.testing.assert_allclose(np.linalg.det(scene.cam_from_world[0, :3, :3]), 1.0)


@pytest.mark.parametrize("background, expected", [((255, 255, 255), [178, 128, 128]),
                                                  ((0, 0, 0), [50, 0, 0])])
def test_alpha_is_composited(tmp_path, background, expected):
  scene = nerf.read_nerf(_write(tmp_path, alpha=128), background=background)
  # 100 * a + bg * (1 - a) with a = 128 / 255, rounded.
  np.testing.assert_allclose(scene.images[0, 0, 0], expected, atol=1)


def _mentions(*parts):
  return ".*".join(re.escape(str(p)) for p in parts)


@pytest.mark.parametrize("mutate, expected", [
    (lambda meta: meta.pop("camera_angle_x"), ("camera_angle_x",)),
    (lambda meta: meta.update(camera_angle_x=-1), ("camera_angle_x",)),
    (lambda meta: meta.update(frames=[]), ("frames",)),
    (lambda meta: meta["frames"][0].pop("transform_matrix"), ("frames[0]", "transform_matrix")),
    (lambda meta: meta["frames"][0].update(transform_matrix=[[1, 0], [0, 1]]),
     ("frames[0]", "4x4")),
    (lambda meta: meta["frames"][0].update(transform_matrix=(2 * np.eye(4)).tolist()),
     ("frames[0]", "not a proper rotation")),
], ids=["no-angle", "bad-angle", "no-frames", "no-matrix", "matrix-shape", "not-rigid"])
def test_bad_content_names_the_file(tmp_path, mutate, expected):
  path = _write(tmp_path)
  meta = json.loads(path.read_text())
  mutate(meta)
  path.write_text(json.dumps(meta))
  with pytest.raises(ValueError, match=_mentions(path, *expected)):
    nerf.read_nerf(path)


def test_invalid_json_names_file_and_line(tmp_path):
  path = tmp_path / "transforms.json"
  path.write_text('{\n "camera_angle_x": 0.5,\n "frames": [,]\n}')
  with pytest.raises(ValueError, match=_mentions(path, "line 3", "invalid JSON")):
    nerf.read_nerf(path)


def test_missing_files_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match=_mentions(tmp_path / "absent.json")):
    nerf.read_nerf(tmp_path / "absent.json")
  path = _write(tmp_path)
  # A scene folder instead of its transforms file: say so and list the candidates (issue #10).
  with pytest.raises(ValueError, match=_mentions(tmp_path, "is a folder", path.name)):
    nerf.read_nerf(tmp_path)
  (tmp_path / "train" / "r_0.png").unlink()
  with pytest.raises(FileNotFoundError, match=_mentions(tmp_path / "train" / "r_0.png")):
    nerf.read_nerf(path)
  (tmp_path / "train" / "r_0.png").write_bytes(b"garbage")
  with pytest.raises(ValueError, match=_mentions(tmp_path / "train" / "r_0.png")):
    nerf.read_nerf(path)
