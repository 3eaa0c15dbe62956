"""Tests of jaxrecon.data.transforms: resize and crop keep image content and intrinsics in step."""
import numpy as np
import pytest

from jaxrecon.data import transforms
from jaxrecon.data.scene import Scene

H, W = 24, 32


def _scene():
  """One view whose red / green channels encode the pixel column / row (8 * u, 8 * v), whose
  labels are 4x4 blocks, depth = 1 + block id, and a camera 5 units in front of the origin."""
  v, u = np.mgrid[0:H, 0:W]
  images = np.stack([8 * u, 8 * v, np.zeros_like(u)], -1).astype(np.uint8)[None]
  blocks = (v // 4) * (W // 4) + u // 4
  pose = np.eye(4)
  pose[2, 3] = 5.0
  k = np.array([[40.0, 0.0, 15.5], [0.0, 42.0, 11.5], [0.0, 0.0, 1.0]])
  return Scene(images=images, intrinsics=k[None], cam_from_world=pose[None],
               depth=(1.0 + blocks[None]).astype(np.float32), labels=blocks[None].astype(np.uint8))


def _project(scene, point):
  cam = scene.cam_from_world[0] @ np.append(point, 1.0)
  pix = scene.intrinsics[0] @ cam[:3]
  return pix[:2] / pix[2]


# Points that project onto block centres of the original (pixel (13.5, 9.5) is the centre of the
# block of columns 12-15, rows 8-11), and elsewhere.
_POINTS = [np.array([(13.5 - 15.5) / 40 * 5, (9.5 - 11.5) / 42 * 5, 0.0]),
           np.array([0.3, -0.2, 1.0])]


@pytest.mark.parametrize("size", [(12, 16), (48, 64), (18, 40)], ids=["half", "double", "odd"])
def test_resize_keeps_points_on_the_scaled_pixel(size):
  scene = _scene()
  out = transforms.resize(scene, size)
  assert out.images.shape == (1,) + size + (3,) and out.depth.shape == (1,) + size
  assert out.depth.dtype == np.float32 and out.labels.dtype == np.uint8
  sx, sy = size[1] / W, size[0] / H
  for point in _POINTS:
    u, v = _project(scene, point)
    np.testing.assert_allclose(_project(out, point), [(u + 0.5) * sx - 0.5, (v + 0.5) * sy - 0.5])
  # Image content follows the same map: the red channel of output column c is 8 * (the input
  # column that K maps there), away from the clamped borders (where the encoding saturates).
  k_in, k_out = scene.intrinsics[0], out.intrinsics[0]
  cols = np.arange(2, size[1] - 2)
  source = (cols - k_out[0, 2]) / k_out[0, 0] * k_in[0, 0] + k_in[0, 2]
  row = size[0] // 2
  np.testing.assert_allclose(out.images[0, row, cols, 0], 8 * source, atol=1.0)
  # Labels and depth are nearest: only values of the input, the block of the first point's pixel.
  assert set(np.unique(out.labels)) <= set(np.unique(scene.labels))
  assert set(np.unique(out.depth)) <= set(np.unique(scene.depth))
  u, v = np.rint(_project(out, _POINTS[0])).astype(int)
  assert out.labels[0, v, u] == scene.labels[0, 9, 13]
  np.testing.assert_array_equal(out.depth[0] - 1, out.labels[0])


def test_downscale_by_two_takes_block_centres_and_averages_images():
  out = transforms.resize(_scene(), (12, 16))
  # Area averaging of columns 2c and 2c + 1: 8 * (2c + 0.5).
  np.testing.assert_allclose(out.images[0, 0, :, 0], 8 * (2 * np.arange(16) + 0.5), atol=0.51)
  # Nearest picks input pixel floor((c + 0.5) * 2) = 2c + 1, whose block is (2c + 1) // 4.
  np.testing.assert_array_equal(out.labels[0, 0], (2 * np.arange(16) + 1) // 4)


def test_crop_keeps_points_on_the_shifted_pixel():
  scene = _scene()
  out = transforms.crop(scene, top=5, left=7, h=10, w=20)
  assert out.images.shape == (1, 10, 20, 3)
  np.testing.assert_array_equal(out.images[0], scene.images[0, 5:15, 7:27])
  np.testing.assert_array_equal(out.depth[0], scene.depth[0, 5:15, 7:27])
  np.testing.assert_array_equal(out.labels[0], scene.labels[0, 5:15, 7:27])
  np.testing.assert_array_equal(out.cam_from_world, scene.cam_from_world)
  for point in _POINTS:
    np.testing.assert_allclose(_project(out, point), _project(scene, point) - [7, 5])
  assert out.intrinsics.dtype == np.float64


def test_fields_that_are_absent_stay_absent():
  scene = Scene(images=_scene().images)
  assert transforms.resize(scene, (5, 7)).intrinsics is None
  assert transforms.crop(scene, 0, 0, 3, 3).depth is None


@pytest.mark.parametrize("window", [(0, 0, 0, 4), (-1, 0, 4, 4), (20, 0, 5, 4), (0, 30, 4, 3)])
def test_crop_outside_the_image_is_rejected(window):
  with pytest.raises(ValueError, match="outside the 24x32 image"):
    transforms.crop(_scene(), *window)


def test_resize_to_nothing_is_rejected():
  with pytest.raises(ValueError, match="positive"):
    transforms.resize(_scene(), (0, 4))


def test_host_camera_update_matches_the_geometry_functions():
  """crop_resize_camera (numpy, for data workers) = geometry's crop_intrinsics + scale_intrinsics."""
  from jaxrecon.data.transforms import crop_resize_camera
  from jaxrecon.geometry.cameras import crop_intrinsics, project, scale_intrinsics
  k = np.array([[500.0, 0.3, 319.5], [0.0, 480.0, 239.5], [0.0, 0.0, 1.0]])
  box, out = (37.0, 51.0, 300.0, 400.0), (120, 200)
  want = scale_intrinsics(crop_intrinsics(k, box[1], box[0]), out[1] / box[3], out[0] / box[2])
  pts = np.array([[0.1, -0.2, 2.0], [0.3, 0.1, 3.0]])
  got_k, got_pix = crop_resize_camera(k, project(pts, k)[0], box, out)
  np.testing.assert_allclose(got_k, np.asarray(want), atol=1e-9)
  np.testing.assert_allclose(got_pix, np.asarray(project(pts, got_k)[0]), atol=1e-9)
