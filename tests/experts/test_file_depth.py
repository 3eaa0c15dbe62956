"""Tests of jaxrecon.experts.file_depth and pfm: round trips per format, disparity, errors."""
import cv2
import numpy as np
import pytest

from jaxrecon.experts import file_depth
from jaxrecon.io import pfm


def _depth(h=6, w=5, seed=0):
  return np.random.default_rng(seed).uniform(0.5, 9.0, size=(h, w)).astype(np.float32)


@pytest.mark.parametrize("little_endian", [True, False])
def test_pfm_round_trip_and_row_order(tmp_path, little_endian):
  image = _depth()
  path = tmp_path / "a.pfm"
  pfm.write_pfm(path, image, little_endian=little_endian)
  np.testing.assert_array_equal(pfm.read_pfm(path), image)
  # The file stores the bottom row first, in the announced byte order.
  data = path.read_bytes()
  header = b"Pf\n5 6\n" + (b"-1.0\n" if little_endian else b"1.0\n")
  assert data.startswith(header)
  first = np.frombuffer(data[len(header):len(header) + 20], "<f4" if little_endian else ">f4")
  np.testing.assert_array_equal(first, image[-1])
  colour = np.stack([image, 2 * image, 3 * image], axis=-1)
  pfm.write_pfm(tmp_path / "c.pfm", colour, little_endian=little_endian)
  np.testing.assert_array_equal(pfm.read_pfm(tmp_path / "c.pfm"), colour)


def test_pfm_reads_foreign_header_layout(tmp_path):
  # Some writers put width, height and scale on one line; the header is whitespace-separated.
  image = _depth(2, 3)
  path = tmp_path / "b.pfm"
  path.write_bytes(b"Pf 3 2 -1\n" + image[::-1].astype("<f4").tobytes())
  np.testing.assert_array_equal(pfm.read_pfm(path), image)


def test_pfm_errors_name_the_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.pfm"):
    pfm.read_pfm(tmp_path / "nope.pfm")
  bad = tmp_path / "bad.pfm"
  bad.write_bytes(b"P6\n3 2\n255\n" + bytes(18))
  with pytest.raises(ValueError, match="bad.pfm.*magic"):
    pfm.read_pfm(bad)
  short = tmp_path / "short.pfm"
  pfm.write_pfm(short, _depth())
  short.write_bytes(short.read_bytes()[:-4])
  with pytest.raises(ValueError, match="short.pfm.*data bytes"):
    pfm.read_pfm(short)


def test_npy_round_trip_and_invalid_pixels(tmp_path):
  depth = _depth()
  stored = depth.copy()
  stored[0, 0], stored[1, 1], stored[2, 2] = np.nan, 0.0, -3.0
  np.save(tmp_path / "img_0001.npy", stored[None])  # a leading singleton channel is squeezed
  expert = file_depth.FileDepthExpert(tmp_path)
  labels = expert(["some/where/img_0001.jpg"])
  assert labels.depth.shape == (1, 6, 5) and labels.depth.dtype == np.float32
  expected_valid = np.ones((6, 5), bool)
  expected_valid[[0, 1, 2], [0, 1, 2]] = False
  np.testing.assert_array_equal(labels.valid[0], expected_valid)
  np.testing.assert_array_equal(labels.depth[0], np.where(expected_valid, depth, 0))


def test_pfm_expert_round_trip(tmp_path):
  depth = _depth()
  pfm.write_pfm(tmp_path / "x.pfm", depth, little_endian=False)
  labels = file_depth.FileDepthExpert(tmp_path)(["x.png"])
  np.testing.assert_array_equal(labels.depth[0], depth)
  assert labels.valid.all()


def test_png16_round_trip_with_scale(tmp_path):
  millimetres = np.random.default_rng(1).integers(0, 60000, size=(6, 5)).astype(np.uint16)
  millimetres[0, 0] = 0
  assert cv2.imwrite(str(tmp_path / "y.png"), millimetres)
  labels = file_depth.FileDepthExpert(tmp_path, png_scale=0.001)(["y.jpg"])
  valid = millimetres > 0
  np.testing.assert_array_equal(labels.valid[0], valid)
  np.testing.assert_allclose(labels.depth[0], np.where(valid, millimetres * 0.001, 0), rtol=1e-6)


def test_disparity_is_inverted_and_nonpositive_is_invalid(tmp_path):
  disparity = np.array([[2.0, 0.5], [0.0, -1.0]], np.float32)
  np.save(tmp_path / "d.npy", disparity)
  labels = file_depth.FileDepthExpert(tmp_path, disparity=True)(["d"])
  np.testing.assert_array_equal(labels.valid[0], [[True, True], [False, False]])
  np.testing.assert_allclose(labels.depth[0], [[0.5, 2.0], [0.0, 0.0]])


def test_stacks_several_views_in_order(tmp_path):
  a, b = _depth(seed=1), _depth(seed=2)
  np.save(tmp_path / "a.npy", a)
  pfm.write_pfm(tmp_path / "b.pfm", b)
  labels = file_depth.FileDepthExpert(tmp_path)(["b.png", "a.png"])
  np.testing.assert_array_equal(labels.depth, np.stack([b, a]))


def test_errors_name_missing_ambiguous_corrupt_and_mismatched_files(tmp_path):
  expert = file_depth.FileDepthExpert(tmp_path)
  with pytest.raises(FileNotFoundError, match="missing.*missing.npy"):
    expert(["missing.png"])
  np.save(tmp_path / "twice.npy", _depth())
  pfm.write_pfm(tmp_path / "twice.pfm", _depth())
  with pytest.raises(ValueError, match="ambiguous.*twice.npy.*twice.pfm"):
    expert(["twice.png"])
  (tmp_path / "broken.npy").write_bytes(b"not an npy file")
  with pytest.raises(ValueError, match="broken.npy"):
    expert(["broken.png"])
  (tmp_path / "broken2.png").write_bytes(b"\x89PNG garbage")
  with pytest.raises(ValueError, match="broken2.png"):
    expert(["broken2.jpg"])
  assert cv2.imwrite(str(tmp_path / "eight.png"), np.zeros((4, 4), np.uint8))
  with pytest.raises(ValueError, match="eight.png.*16-bit"):
    expert(["eight.jpg"])
  pfm.write_pfm(tmp_path / "rgb.pfm", np.ones((4, 4, 3)))
  with pytest.raises(ValueError, match="rgb.pfm.*single-channel"):
    expert(["rgb.jpg"])
  np.save(tmp_path / "big.npy", np.ones((7, 7)))
  np.save(tmp_path / "small.npy", np.ones((6, 6)))
  with pytest.raises(ValueError, match="big.npy.*small.npy"):
    expert(["small", "big"])
  with pytest.raises(ValueError, match="png_scale"):
    file_depth.FileDepthExpert(tmp_path, png_scale=0.0)
