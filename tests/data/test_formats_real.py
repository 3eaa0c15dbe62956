"""Acceptance tests of the Scene readers on the real data in ../shared/data.

Each test checks the geometry a reader returns against the images themselves, so a convention
error (axes, half-pixel offsets, pose direction, focal sign) fails:

* templeRing (Middlebury): SIFT matches between neighbouring views lie near the epipolar lines of
  the ground-truth cameras (README: 0.08-0.13 px median; bound 0.5 px).
* icl_livingroom (ICL-NUIM, fy = -480): frame N's depth warped by the ground-truth poses into frame
  N + 1 matches N + 1's depth (README: 0.2-1.9 % median relative error; bound 3 %), and does not
  without the focal-sign handling.
* lego (NeRF, OpenGL): after conversion every camera looks at the origin.
* camvid: 11 classes + void, void mapped to 255.

Measured numbers are printed (pytest -rA shows them). Skipped when ../shared/data is absent.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from jaxrecon.data import formats
from jaxrecon.data.formats import tum
from jaxrecon.data.scene import IGNORE_LABEL

ICL_K = np.array([[481.2, 0.0, 319.5], [0.0, -480.0, 239.5], [0.0, 0.0, 1.0]])


def _fundamental(k1, cam1_from_world, k2, cam2_from_world):
  """F (3, 3) with x2^T F x1 = 0 for homogeneous pixels x1 of view 1, x2 of view 2."""
  rel = cam2_from_world @ np.linalg.inv(cam1_from_world)
  t = rel[:3, 3]
  t_cross = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
  return np.linalg.inv(k2).T @ t_cross @ rel[:3, :3] @ np.linalg.inv(k1)


def _sift_matches(image1, image2, ratio=0.75):
  """(n, 2) pixel pairs of SIFT matches passing Lowe's ratio test (cv2: centre of pixel 0 = 0)."""
  sift = cv2.SIFT_create()
  k1, d1 = sift.detectAndCompute(cv2.cvtColor(image1, cv2.COLOR_RGB2GRAY), None)
  k2, d2 = sift.detectAndCompute(cv2.cvtColor(image2, cv2.COLOR_RGB2GRAY), None)
  pairs = [m for m, n in cv2.BFMatcher().knnMatch(d1, d2, k=2) if m.distance < ratio * n.distance]
  return (np.array([k1[m.queryIdx].pt for m in pairs]),
          np.array([k2[m.trainIdx].pt for m in pairs]))


def test_temple_ring_matches_lie_on_epipolar_lines(shared_data):
  scene = formats.read_middlebury(shared_data / "templeRing")
  assert scene.num_views == 19 and scene.image_size == (480, 640)
  assert scene.names[0] == "templeR0013" and scene.name == "templeRing"
  medians = []
  for i in (0, 6, 12):  # three neighbouring pairs spread over the ring: enough, and fast
    p1, p2 = _sift_matches(scene.images[i], scene.images[i + 1])
    assert len(p1) > 200
    f = _fundamental(scene.intrinsics[i], scene.cam_from_world[i], scene.intrinsics[i + 1],
                     scene.cam_from_world[i + 1])
    lines = np.c_[p1, np.ones(len(p1))] @ f.T
    dist = np.abs(np.sum(lines * np.c_[p2, np.ones(len(p2))], 1)) / np.hypot(*lines[:, :2].T)
    medians.append(float(np.median(dist)))
  print(f"templeRing epipolar distance medians (px): {np.round(medians, 3).tolist()}")
  assert max(medians) < 0.5, medians


def _warp_depth(scene, n, m):
  """Median relative error of view n's depth warped into view m, and the number of pixels.

  Compared on pixels valid in both whose warp lands inside view m; occluded pixels are rare
  outliers the median ignores.
  """
  k = scene.intrinsics[n]
  v, u = np.nonzero(scene.depth[n] > 0)
  z = scene.depth[n][v, u].astype(np.float64)
  cam_n = np.stack([(u - k[0, 2]) / k[0, 0] * z, (v - k[1, 2]) / k[1, 1] * z, z, np.ones_like(z)])
  cam_m = scene.cam_from_world[m] @ np.linalg.inv(scene.cam_from_world[n]) @ cam_n
  km = scene.intrinsics[m]
  front = cam_m[2] > 1e-6
  zm = np.where(front, cam_m[2], 1.0)
  col = np.rint(km[0, 0] * cam_m[0] / zm + km[0, 2])
  row = np.rint(km[1, 1] * cam_m[1] / zm + km[1, 2])
  h, w = scene.image_size
  inside = front & (col >= 0) & (col < w) & (row >= 0) & (row < h)
  target = scene.depth[m][row[inside].astype(int), col[inside].astype(int)]
  valid = target > 0
  rel = np.abs(cam_m[2][inside][valid] - target[valid]) / target[valid]
  return (float(np.median(rel)) if valid.any() else np.inf), int(valid.sum())


@pytest.fixture(scope="module")
def icl(shared_data):
  return formats.read_tum(shared_data / "icl_livingroom", ICL_K, depth_scale=5000.0)


def test_icl_scene_is_opencv(icl):
  assert icl.num_views == 5 and icl.image_size == (480, 640)
  np.testing.assert_allclose(icl.intrinsics[0], np.abs(ICL_K))  # fy = +480, cx, cy unchanged
  np.testing.assert_allclose(np.linalg.det(icl.cam_from_world[:, :3, :3]), 1.0, atol=1e-9)
  assert icl.depth.dtype == np.float32 and 0 < icl.depth.max() < 20  # metres, a living room


def test_icl_depth_warps_into_the_next_frame(icl):
  errors = {}
  for n in range(icl.num_views - 1):
    error, count = _warp_depth(icl, n, n + 1)
    # Frames 2 -> 3 look in directions that do not overlap: nothing to compare there.
    if count > 0.1 * icl.depth[n].size:
      errors[f"{n + 1}->{n + 2}"] = round(error, 4)
  print(f"icl_livingroom depth warp median relative errors: {errors}")
  assert len(errors) >= 2
  assert max(errors.values()) < 0.03, errors


def test_icl_without_focal_sign_handling_fails(shared_data, icl):
  # The raw poses with |fy| (ignoring that the file's camera y points up) must not pass the check
  # above: this is what makes the warp test a test of the sign handling.
  raw = np.linalg.inv(tum.read_pose_list(shared_data / "icl_livingroom" / "pose.txt"))
  wrong = dataclasses.replace(icl, cam_from_world=raw)
  error, _ = _warp_depth(wrong, 0, 1)
  assert error > 0.1, error


def test_lego_cameras_look_at_the_origin(shared_data):
  scene = formats.read_nerf(shared_data / "lego" / "transforms_train.json")
  assert scene.num_views == 20 and scene.image_size == (800, 800)
  rot, t = scene.cam_from_world[:, :3, :3], scene.cam_from_world[:, :3, 3]
  centres = -np.einsum("vji,vj->vi", rot, t)
  axes = rot[:, 2]  # the camera's +z (optical axis) in world coordinates
  to_origin = -centres / np.linalg.norm(centres, axis=1, keepdims=True)
  angles = np.degrees(np.arccos(np.clip(np.sum(axes * to_origin, 1), -1, 1)))
  origin_cam = t  # the world origin in camera coordinates
  uv = np.einsum("vij,vj->vi", scene.intrinsics, origin_cam)
  offsets = np.linalg.norm(uv[:, :2] / uv[:, 2:] - [399.5, 399.5], axis=1)
  print(f"lego look-at angle max {angles.max():.4f} deg, origin pixel offset max "
        f"{offsets.max():.2e} px")
  assert np.all(origin_cam[:, 2] > 0)  # in front: the OpenGL -> OpenCV flip is right
  assert angles.max() < 0.5 and offsets.max() < 2.0
  # White background where the render is transparent (the corners are empty in lego).
  np.testing.assert_array_equal(scene.images[:, 0, 0], 255)


def test_camvid_labels(shared_data):
  scene = formats.read_camvid(shared_data / "camvid_0001TP")
  assert scene.num_views == 24 and scene.image_size == (360, 480)
  assert scene.intrinsics is None and scene.cam_from_world is None and scene.depth is None
  present = set(np.unique(scene.labels).tolist())
  assert present <= set(range(11)) | {IGNORE_LABEL}
  assert IGNORE_LABEL in present and len(present - {IGNORE_LABEL}) >= 10
  raw = cv2.imread(str(shared_data / "camvid_0001TP" / "labels" / f"{scene.names[0]}.png"),
                   cv2.IMREAD_UNCHANGED)
  np.testing.assert_array_equal(scene.labels[0] == IGNORE_LABEL, raw == 11)
