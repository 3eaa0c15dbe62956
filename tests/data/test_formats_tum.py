"""Tests of jaxrecon.data.formats.tum on small synthetic folders (tmp_path)."""
import re

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from jaxrecon.data.formats import tum
from jaxrecon.errors import UserError

K_ICL = np.array([[481.2, 0.0, 319.5], [0.0, -480.0, 239.5], [0.0, 0.0, 1.0]])
_LINE = "0.1 -0.2 0.3 0.0 0.0 0.0 1.0"


def _mentions(*parts):
  return ".*".join(re.escape(str(p)) for p in parts)


def _folder(tmp_path, lines=(_LINE, _LINE), depth=True, h=4, w=5):
  (tmp_path / "pose.txt").write_text("\n".join(lines) + "\n")
  (tmp_path / "color").mkdir()
  if depth:
    (tmp_path / "depth").mkdir()
  for n in range(1, len(lines) + 1):
    assert cv2.imwrite(str(tmp_path / "color" / f"{n}.png"), np.full((h, w, 3), n, np.uint8))
    if depth:
      raw = np.full((h, w), 5000 * n, np.uint16)
      raw[0, 0] = 0
      assert cv2.imwrite(str(tmp_path / "depth" / f"{n}.png"), raw)
  return tmp_path


def test_quaternion_pose_matches_scipy():
  rng = np.random.default_rng(0)
  for _ in range(5):
    q, t = rng.normal(size=4), rng.normal(size=3)
    pose = tum.quaternion_pose(np.r_[t, q])
    np.testing.assert_allclose(pose[:3, :3], Rotation.from_quat(q).as_matrix(), atol=1e-12)
    np.testing.assert_array_equal(pose[:3, 3], t)


def test_negative_focal_keeps_every_pixel_and_depth():
  rng = np.random.default_rng(1)
  rot = Rotation.random(random_state=2).as_matrix()
  cam_from_world = np.eye(4)
  cam_from_world[:3, :3], cam_from_world[:3, 3] = rot, [0.1, 0.2, 3.0]
  k, pose = tum.make_focal_positive(K_ICL, cam_from_world[None])
  assert k[1, 1] == 480.0 and k[0, 0] == 481.2 and np.all(k[:2, 2] == [319.5, 239.5])
  np.testing.assert_allclose(np.linalg.det(pose[0, :3, :3]), 1.0)  # still a rotation
  points = np.c_[rng.normal(size=(20, 3)), np.ones(20)]
  before = (cam_from_world @ points.T)[:3]
  after = (pose[0] @ np.diag([1, -1, 1, 1]) @ points.T)[:3]  # the world mirrored in y
  np.testing.assert_allclose(after[2], before[2])  # depth unchanged
  pix_before = (K_ICL @ before)[:2] / before[2]
  pix_after = (k @ after)[:2] / after[2]
  np.testing.assert_allclose(pix_after, pix_before, atol=1e-9)


def test_reads_frames_depth_and_poses(tmp_path):
  scene = tum.read_tum(_folder(tmp_path), K_ICL, depth_scale=tum.DEPTH_SCALE)
  assert scene.names == ("1", "2") and scene.name == tmp_path.name
  assert scene.images.shape == (2, 4, 5, 3) and scene.images[1, 0, 0, 0] == 2
  assert scene.depth.dtype == np.float32
  np.testing.assert_allclose(scene.depth[:, 1, 1], [1.0, 2.0])
  assert scene.depth[0, 0, 0] == 0  # raw 0 stays unknown
  assert np.all(scene.intrinsics[:, 1, 1] == 480.0)
  # Camera-to-world translation (0.1, -0.2, 0.3) with identity rotation, y mirrored: the centre
  # is (0.1, 0.2, 0.3) in the returned world.
  centre = -scene.cam_from_world[0, :3, :3].T @ scene.cam_from_world[0, :3, 3]
  np.testing.assert_allclose(centre, [0.1, 0.2, 0.3])


def test_positive_focal_is_unchanged_and_depth_optional(tmp_path):
  scene = tum.read_tum(_folder(tmp_path, depth=False), np.abs(K_ICL), depth_scale=1000.0)
  assert scene.depth is None
  np.testing.assert_allclose(scene.cam_from_world[0, :3, 3], [-0.1, 0.2, -0.3])


@pytest.mark.parametrize("lines, expected", [
    ([_LINE, "0 0 0 0 0 1"], ("line 2", "7 fields", "got 6")),
    (["# comment", "0 0 x 0 0 0 1"], ("line 2", "field 3", "'x'")),
    (["0 0 0 0 0 0 0"], ("line 1", "zero quaternion")),
    (["0 0 0 0 0 0 inf"], ("line 1", "not finite")),
], ids=["fields", "letter", "zero-quaternion", "inf"])
def test_bad_pose_lines_name_file_and_line(tmp_path, lines, expected):
  (tmp_path / "pose.txt").write_text("\n".join(lines) + "\n")
  with pytest.raises(ValueError, match=_mentions(tmp_path / "pose.txt", *expected)):
    tum.read_pose_list(tmp_path / "pose.txt")


def test_missing_and_corrupt_files_are_named(tmp_path):
  folder = _folder(tmp_path)
  (folder / "color" / "2.png").unlink()
  with pytest.raises(FileNotFoundError, match=_mentions(folder / "color" / "2.png")):
    tum.read_tum(folder, K_ICL, depth_scale=tum.DEPTH_SCALE)
  assert cv2.imwrite(str(folder / "color" / "2.png"), np.zeros((4, 5, 3), np.uint8))
  assert cv2.imwrite(str(folder / "depth" / "1.png"), np.zeros((4, 5), np.uint8))
  with pytest.raises(ValueError, match=_mentions(folder / "depth" / "1.png", "uint16")):
    tum.read_tum(folder, K_ICL, depth_scale=tum.DEPTH_SCALE)
  with pytest.raises(FileNotFoundError, match=_mentions(tmp_path / "nowhere")):
    tum.read_tum(tmp_path / "nowhere", K_ICL)
  (folder / "pose.txt").unlink()
  with pytest.raises(FileNotFoundError, match=_mentions(folder / "pose.txt")):
    tum.read_tum(folder, K_ICL, depth_scale=tum.DEPTH_SCALE)


def test_bad_intrinsics_are_rejected(tmp_path):
  with pytest.raises(ValueError, match="3x3 K"):
    tum.read_tum(_folder(tmp_path), np.eye(2))
  with pytest.raises(ValueError, match="non-zero fx, fy"):
    tum.read_tum(tmp_path, np.diag([1.0, 0.0, 1.0]))


def test_depth_scale_is_required_and_pgm_depth_is_read(tmp_path):
  """Issue #10: no silent default scale (5000 would mis-scale Kinect millimetres by 5x); 16-bit
  .pgm depth as well as .png; a missing frame names every suffix tried."""
  folder = _folder(tmp_path)
  with pytest.raises(UserError, match=_mentions(folder / "depth", "depth_scale", "5000", "1000")):
    tum.read_tum(folder, K_ICL)
  for n in (1, 2):
    raw = cv2.imread(str(folder / "depth" / f"{n}.png"), cv2.IMREAD_UNCHANGED)
    (folder / "depth" / f"{n}.png").unlink()
    assert cv2.imwrite(str(folder / "depth" / f"{n}.pgm"), raw)
  scene = tum.read_tum(folder, K_ICL, depth_scale=1000.0)
  np.testing.assert_allclose(scene.depth[:, 1, 1], [5.0, 10.0])
  (folder / "depth" / "2.pgm").unlink()
  with pytest.raises(FileNotFoundError, match=_mentions(folder / "depth" / "2.png",
                                                        folder / "depth" / "2.pgm")):
    tum.read_tum(folder, K_ICL, depth_scale=1000.0)
