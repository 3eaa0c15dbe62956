"""Tests of jaxrecon.data.formats.folder: the writer round trip and errors (tmp_path)."""
import json
import re

import cv2
import numpy as np
import pytest

from jaxrecon.data.formats import folder as folder_format
from jaxrecon.data.scene import Scene

_K = [[50.0, 0.0, 3.5], [0.0, 52.0, 2.25], [0.0, 0.0, 1.0]]


def _mentions(*parts):
  return ".*".join(re.escape(str(p)) for p in parts)


def _scene(v=3, h=5, w=8, seed=0):
  rng = np.random.default_rng(seed)
  poses = np.tile(np.eye(4), (v, 1, 1))
  for i in range(v):
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    poses[i, :3, :3] = q * np.sign(np.linalg.det(q))
    poses[i, :3, 3] = rng.normal(size=3) / 3  # thirds: not exactly representable in binary
  depth = rng.uniform(0.5, 9.0, (v, h, w)).astype(np.float32)
  depth[:, 0, 0] = 0.0
  labels = rng.integers(0, 12, (v, h, w)).astype(np.uint8)
  labels[labels == 11] = 255
  intrinsics = np.array([_K] * v) + rng.uniform(0, 1, (v, 1, 1)) * np.eye(3)[None] * [1, 1, 0]
  return Scene(images=rng.integers(0, 256, (v, h, w, 3)).astype(np.uint8), intrinsics=intrinsics,
               cam_from_world=poses, depth=depth, labels=labels,
               names=tuple(f"view_{i:02d}" for i in range(v)), name="anything")


def test_round_trip_is_exact(tmp_path):
  scene = _scene()
  back = folder_format.read_folder(folder_format.write_folder(scene, tmp_path / "out"))
  assert back.names == scene.names and back.name == "out"
  for field in ("images", "intrinsics", "cam_from_world", "depth", "labels"):
    original, read = getattr(scene, field), getattr(back, field)
    assert read.dtype == original.dtype, field
    np.testing.assert_array_equal(read, original, err_msg=field)


def test_round_trip_of_images_only(tmp_path):
  scene = Scene(images=_scene().images, names=("b", "a", "c"))
  back = folder_format.read_folder(folder_format.write_folder(scene, tmp_path / "out"))
  assert back.names == ("a", "b", "c")  # views come back sorted by name
  np.testing.assert_array_equal(back.images, scene.images[[1, 0, 2]])
  assert back.intrinsics is None and back.cam_from_world is None
  assert back.depth is None and back.labels is None


def test_writer_refuses_a_non_empty_folder(tmp_path):
  (tmp_path / "keep.txt").write_text("x")
  with pytest.raises(FileExistsError, match=_mentions(tmp_path)):
    folder_format.write_folder(_scene(), tmp_path)


@pytest.mark.parametrize("name", ["sub/view", ".hidden", ""])
def test_writer_refuses_names_that_are_not_file_names(tmp_path, name):
  scene = Scene(images=_scene(v=1).images, names=(name,))
  with pytest.raises(ValueError, match="not a plain file name"):
    folder_format.write_folder(scene, tmp_path / "out")


def _images_only(tmp_path, names=("a", "b")):
  (tmp_path / "images").mkdir(parents=True)
  for name in names:
    assert cv2.imwrite(str(tmp_path / "images" / f"{name}.png"), np.zeros((5, 8, 3), np.uint8))
  return tmp_path


@pytest.mark.parametrize("text", [
    "50 0 3.5\n0 52 2.25\n0 0 1\n",
    "# per view\na 50 0 3.5 0 52 2.25 0 0 1\nb 50 0 3.5 0 52 2.25 0 0 1\n",
], ids=["shared", "per-view"])
def test_intrinsics_txt_forms(tmp_path, text):
  folder = _images_only(tmp_path)
  (folder / "intrinsics.txt").write_text(text)
  np.testing.assert_array_equal(folder_format.read_folder(folder).intrinsics, [_K, _K])


@pytest.mark.parametrize("value", [_K, {"a": _K, "b": _K}], ids=["shared", "per-view"])
def test_intrinsics_json_forms(tmp_path, value):
  folder = _images_only(tmp_path)
  (folder / "intrinsics.json").write_text(json.dumps(value))
  np.testing.assert_array_equal(folder_format.read_folder(folder).intrinsics, [_K, _K])


@pytest.mark.parametrize("file_name, text, expected", [
    ("intrinsics.txt", "50 0 3.5\n0 52 2.25\n", ("3 lines", "got 2")),
    ("intrinsics.txt", "a 50 0 3.5 0 52 2.25 0 0 1\nb 50 0 3.5 0 52\n", ("line 2", "10 fields")),
    ("intrinsics.txt", "a 50 0 3.5 0 52 2.25 0 0 1\n", ("no line", "'b'")),
    ("intrinsics.txt", "50 0 3.5\n0 fy 2.25\n0 0 1\n", ("line 2", "field 2", "'fy'")),
    ("intrinsics.txt", "50 0 3.5\n0 52 2.25\n0 1\n", ("line 3", "3 numbers", "got 2 fields")),
    ("intrinsics.txt", "-50 0 3.5\n0 52 2.25\n0 0 1\n", ("fx, fy > 0",)),
    ("intrinsics.json", json.dumps({"a": _K}), ("no entry", "'b'")),
    ("intrinsics.json", json.dumps([[1, 2], [3, 4]]), ("3x3",)),
    ("intrinsics.json", "[[1, 2, 3],\n [4, 5, 6]\n", ("line 3", "invalid JSON")),
    ("poses.json", json.dumps({"a": np.eye(4).tolist(), "b": (2 * np.eye(4)).tolist()}),
     ("'b'", "not a proper rotation")),
    ("poses.json", json.dumps([np.eye(4).tolist()]), ("image name",)),
], ids=["shared-short", "per-view-short", "per-view-missing", "letter", "third-line-short",
        "negative-focal",
        "json-missing", "json-shape", "json-syntax", "pose-not-rigid", "poses-not-object"])
def test_bad_camera_files_name_the_file(tmp_path, file_name, text, expected):
  folder = _images_only(tmp_path)
  (folder / file_name).write_text(text)
  with pytest.raises(ValueError, match=_mentions(folder / file_name, *expected)):
    folder_format.read_folder(folder)


def test_bad_depth_and_labels_name_the_file(tmp_path):
  folder = _images_only(tmp_path)
  (folder / "depth").mkdir()
  np.save(folder / "depth" / "a.npy", np.ones((5, 8), np.float32))
  with pytest.raises(FileNotFoundError, match=_mentions(folder / "depth" / "b.npy")):
    folder_format.read_folder(folder)
  np.save(folder / "depth" / "b.npy", np.ones((5, 7), np.float32))
  with pytest.raises(ValueError, match=_mentions(folder / "depth" / "b.npy", "(5, 7)")):
    folder_format.read_folder(folder)
  (folder / "depth" / "b.npy").write_bytes(b"not numpy")
  with pytest.raises(ValueError, match=_mentions(folder / "depth" / "b.npy", "not a valid")):
    folder_format.read_folder(folder)
  np.save(folder / "depth" / "b.npy", -np.ones((5, 8), np.float32))
  with pytest.raises(ValueError, match=_mentions(folder / "depth" / "b.npy", ">= 0")):
    folder_format.read_folder(folder)
  np.save(folder / "depth" / "b.npy", np.ones((5, 8), np.float32))
  (folder / "labels").mkdir()
  assert cv2.imwrite(str(folder / "labels" / "a.png"), np.zeros((5, 8), np.uint8))
  assert cv2.imwrite(str(folder / "labels" / "b.png"), np.zeros((5, 8), np.uint16))
  with pytest.raises(ValueError, match=_mentions(folder / "labels" / "b.png", "uint8")):
    folder_format.read_folder(folder)


def test_missing_folders_and_mixed_sizes(tmp_path):
  with pytest.raises(FileNotFoundError, match=_mentions(tmp_path / "images")):
    folder_format.read_folder(tmp_path)
  (tmp_path / "images").mkdir()
  with pytest.raises(FileNotFoundError, match=_mentions("no image files", tmp_path / "images")):
    folder_format.read_folder(tmp_path)
  _images_only(tmp_path / "x", names=("a",))
  assert cv2.imwrite(str(tmp_path / "x" / "images" / "b.png"), np.zeros((6, 8, 3), np.uint8))
  with pytest.raises(ValueError, match=_mentions(tmp_path / "x" / "images" / "b.png", "differs")):
    folder_format.read_folder(tmp_path / "x")
