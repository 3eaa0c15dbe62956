"""Tests of jaxrecon.data.formats.middlebury: error messages on corrupt input (tmp_path) and the real
templeRing calibration (../shared/data, skipped when absent)."""
import re

import cv2
import numpy as np
import pytest

from jaxrecon.data.formats import middlebury

# One valid view line body (K, R, t) after the name: K of templeRing, R = identity, t = (0, 0, 0.5).
_K = "1520.4 0 302.32 0 1525.9 246.87 0 0 1"
_R = "1 0 0 0 1 0 0 0 1"
_T = "0 0 0.5"
_BODY = f"{_K} {_R} {_T}"


def _write(path, lines):
  path.write_text("\n".join(lines) + "\n")
  return path


def _par(tmp_path, lines, name="scene_par.txt"):
  return _write(tmp_path / name, lines)


def _mentions(path, *extra):
  """A regex matching a message that names `path` and then each of `extra` (in order)."""
  return ".*".join(re.escape(str(s)) for s in (path,) + extra)


# --- valid files --------------------------------------------------------------------------------


def test_reads_values_in_file_order(tmp_path):
  path = _par(tmp_path, ["2", f"b.png {_BODY}", f"a.png {_K} 0 1 0 -1 0 0 0 0 1 0.1 -0.2 0.3"])
  cams = middlebury.read_cameras(path)
  assert cams.names == ("b.png", "a.png")
  assert cams.intrinsics.shape == (2, 3, 3) and cams.intrinsics.dtype == np.float64
  assert cams.cam_from_world.shape == (2, 4, 4) and cams.cam_from_world.dtype == np.float64
  np.testing.assert_array_equal(cams.intrinsics[1], [[1520.4, 0, 302.32], [0, 1525.9, 246.87],
                                                     [0, 0, 1]])
  # Row-major R and t as the last column; the bottom row of a rigid transform.
  np.testing.assert_array_equal(cams.cam_from_world[1], [[0, 1, 0, 0.1], [-1, 0, 0, -0.2],
                                                         [0, 0, 1, 0.3], [0, 0, 0, 1]])
  np.testing.assert_allclose(cams.projections[1], cams.intrinsics[1] @ cams.cam_from_world[1, :3])


def test_blank_lines_are_ignored_but_numbering_is_kept(tmp_path):
  path = _par(tmp_path, ["2", "", f"a.png {_BODY}", "   ", f"b.png {_BODY} 7", ""])
  # The bad line is the 5th line of the file, whatever the blank lines before it.
  with pytest.raises(ValueError, match=_mentions(path, "line 5", "22 fields", "got 23")):
    middlebury.read_cameras(path)


def test_select_reorders_and_rejects_unknown(tmp_path):
  cams = middlebury.read_cameras(_par(tmp_path, ["2", f"a.png {_BODY}",
                                                 f"b.png {_K} {_R} 0 0 2"]))
  picked = cams.select(["b.png", "a.png"])
  assert picked.names == ("b.png", "a.png")
  assert picked.cam_from_world[0, 2, 3] == 2.0
  with pytest.raises(KeyError, match="c.png"):
    cams.select(["c.png"])


# --- corrupt calibration files ------------------------------------------------------------------


def test_missing_file_names_it(tmp_path):
  path = tmp_path / "absent_par.txt"
  with pytest.raises(FileNotFoundError, match=_mentions(path)):
    middlebury.read_cameras(path)


@pytest.mark.parametrize("lines, expected", [
    ([], ("empty",)),
    (["", "1", f"a.png {_BODY}"], ("line 1", "blank")),
    (["two", f"a.png {_BODY}"], ("line 1", "not an integer", "'two'")),
    (["1 2", f"a.png {_BODY}"], ("line 1", "got 2 fields")),
    (["-1"], ("line 1", "negative")),
    (["2", f"a.png {_BODY}", f"b.png {_K} {_R} 0 0"], ("line 3", "22 fields", "got 21")),
    (["1", "a.png"], ("line 2", "22 fields", "got 1")),
    (["1", f"a.png {_K} {_R} 0 x 0.5"], ("line 2", "field 21", "'x'")),
    (["1", f"a.png {_BODY.replace('1520.4', '1520,4')}"], ("line 2", "field 2", "'1520,4'")),
    (["1", f"a.png {_K} {_R} 0 nan 0.5"], ("line 2", "field 21", "not finite")),
    (["2", f"a.png {_BODY}", f"a.png {_BODY}"], ("line 3", "'a.png'", "twice")),
    (["3", f"a.png {_BODY}", f"b.png {_BODY}"], ("announces 3", "lists 2")),
    (["1", f"a.png {_BODY}", f"b.png {_BODY}"], ("announces 1", "lists 2")),
], ids=["empty", "blank-count", "count-text", "count-fields", "count-negative", "short-line",
        "name-only", "letter", "decimal-comma", "nan", "duplicate", "too-few", "too-many"])
def test_corrupt_calibration_names_file_and_line(tmp_path, lines, expected):
  path = _par(tmp_path, lines)
  with pytest.raises(ValueError, match=_mentions(path, *expected)):
    middlebury.read_cameras(path)


# --- folders of images --------------------------------------------------------------------------


def _image(h=4, w=5):
  """A small RGB image whose channels differ, so a BGR/RGB swap is visible."""
  rgb = np.zeros((h, w, 3), np.uint8)
  rgb[..., 0] = 200
  rgb[..., 1] = np.arange(w, dtype=np.uint8)[None] * 10
  rgb[..., 2] = 7
  return rgb


def _folder(tmp_path, present=("b.png", "a.png"), listed=("c.png", "b.png", "a.png")):
  _par(tmp_path, [str(len(listed))] + [f"{name} {_K} {_R} 0 0 {i + 1}"
                                      for i, name in enumerate(listed)])
  for name in present:
    assert cv2.imwrite(str(tmp_path / name), cv2.cvtColor(_image(), cv2.COLOR_RGB2BGR))
  return tmp_path


def test_load_views_keeps_present_images_sorted_as_rgb(tmp_path):
  views = middlebury.load_views(_folder(tmp_path))
  assert views.cameras.names == ("a.png", "b.png")
  # The cameras travel with their images: a.png is the 3rd listed view (t_z = 3).
  np.testing.assert_array_equal(views.cameras.cam_from_world[:, 2, 3], [3.0, 2.0])
  assert len(views.images) == 2
  for image in views.images:
    assert image.dtype == np.uint8 and image.shape == (4, 5, 3)
    np.testing.assert_array_equal(image, _image())


def test_load_views_with_explicit_calibration(tmp_path):
  folder = _folder(tmp_path)
  other = _par(tmp_path, ["1", f"b.png {_BODY}"], name="other.txt")
  views = middlebury.load_views(folder, other)
  assert views.cameras.names == ("b.png",)


def test_unreadable_image_names_it(tmp_path):
  folder = _folder(tmp_path)
  (folder / "a.png").write_bytes(b"this is not a png")
  with pytest.raises(ValueError, match=_mentions(folder / "a.png")):
    middlebury.load_views(folder)


def test_missing_folder_or_calibration(tmp_path):
  with pytest.raises(FileNotFoundError, match=_mentions(tmp_path / "nowhere")):
    middlebury.load_views(tmp_path / "nowhere")
  no_calibration = re.escape(f"no *_par.txt calibration file in {tmp_path}")
  with pytest.raises(FileNotFoundError, match=no_calibration):
    middlebury.load_views(tmp_path)
  with pytest.raises(FileNotFoundError, match=_mentions(tmp_path / "x_par.txt")):
    middlebury.load_views(tmp_path, tmp_path / "x_par.txt")


def test_several_calibrations_are_ambiguous(tmp_path):
  folder = _folder(tmp_path)
  _par(tmp_path, ["1", f"a.png {_BODY}"], name="second_par.txt")
  with pytest.raises(ValueError, match="several calibration files"):
    middlebury.load_views(folder)


def test_no_listed_image_present(tmp_path):
  folder = _folder(tmp_path, present=())
  with pytest.raises(FileNotFoundError, match="none of the 3 images"):
    middlebury.load_views(folder)


# --- the real templeRing calibration ------------------------------------------------------------


@pytest.fixture(scope="module")
def temple_folder(shared_data):
  return shared_data / "templeRing"


def test_real_calibration_is_well_formed(temple_folder):
  cams = middlebury.read_cameras(temple_folder / "templeR_par.txt")
  assert len(cams.names) == 47 and len(set(cams.names)) == 47
  k = cams.intrinsics
  np.testing.assert_array_equal(k[:, [1, 2, 2], [0, 0, 1]], 0.0)   # upper triangular
  np.testing.assert_array_equal(k[:, 2, 2], 1.0)
  assert np.all(k[:, 0, 0] > 0) and np.all(k[:, 1, 1] > 0)
  rot = cams.cam_from_world[:, :3, :3]
  np.testing.assert_allclose(rot @ np.swapaxes(rot, -1, -2), np.broadcast_to(np.eye(3), rot.shape),
                             atol=1e-12)
  np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-12)
  np.testing.assert_array_equal(cams.cam_from_world[:, 3], np.broadcast_to([0, 0, 0, 1], (47, 4)))


def test_real_object_projects_into_every_image(temple_folder):
  # The centre of the object's bounding box (README.txt) must be in front of every camera and
  # inside its 640x480 image: this pins the world-to-camera reading of R, t and the axes.
  cams = middlebury.read_cameras(temple_folder / "templeR_par.txt")
  lo, hi = np.array([-0.023121, -0.038009, -0.091940]), np.array([0.078626, 0.121636, -0.017395])
  hom = cams.projections @ np.append((lo + hi) / 2, 1.0)
  assert np.all(hom[:, 2] > 0)
  uv = hom[:, :2] / hom[:, 2:]
  assert np.all((uv >= 0) & (uv <= [639, 479]))


def test_real_views_load(temple_folder):
  views = middlebury.load_views(temple_folder)
  names = views.cameras.names
  assert names == tuple(f"templeR{i:04d}.png" for i in range(13, 32))
  assert len(views.images) == 19
  for image in views.images:
    assert image.dtype == np.uint8 and image.shape == (480, 640, 3)
  bgr = cv2.imread(str(temple_folder / names[0]), cv2.IMREAD_COLOR)
  np.testing.assert_array_equal(views.images[0], bgr[..., ::-1])
