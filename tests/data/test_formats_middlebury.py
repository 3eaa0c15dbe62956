"""Tests of read_middlebury (the Scene face of jaxrecon.data.formats.middlebury) on tmp_path."""
import re

import cv2
import numpy as np
import pytest

from jaxrecon.data.formats import middlebury

_K = "100 0 2 0 110 1.5 0 0 1"


def _folder(tmp_path, sizes=((4, 5), (4, 5))):
  lines = [str(len(sizes))] + [f"v{i}.png {_K} 1 0 0 0 1 0 0 0 1 0 0 {i + 1}"
                               for i in range(len(sizes))]
  (tmp_path / "set_par.txt").write_text("\n".join(lines) + "\n")
  for i, size in enumerate(sizes):
    assert cv2.imwrite(str(tmp_path / f"v{i}.png"), np.full(size + (3,), 10 * i, np.uint8))
  return tmp_path


def test_scene_has_stems_cameras_and_images(tmp_path):
  scene = middlebury.read_middlebury(_folder(tmp_path))
  assert scene.names == ("v0", "v1") and scene.name == tmp_path.name
  assert scene.images.shape == (2, 4, 5, 3) and scene.images[1, 0, 0, 0] == 10
  np.testing.assert_array_equal(scene.cam_from_world[:, 2, 3], [1.0, 2.0])
  np.testing.assert_array_equal(scene.intrinsics[0], [[100, 0, 2], [0, 110, 1.5], [0, 0, 1]])
  assert scene.depth is None and scene.labels is None


def test_mixed_image_sizes_name_the_file(tmp_path):
  folder = _folder(tmp_path, sizes=((4, 5), (6, 5)))
  with pytest.raises(ValueError, match=re.escape(str(folder / "v1.png")) + ".*differs"):
    middlebury.read_middlebury(folder)
