"""Tests of jaxrecon.data.synthetic: determinism, ground truth consistent with the pixels
(geometric and photometric, across views), labels vs depth, mirrors, camera paths, SIFT texture.

The cross-view checks are written in plain numpy (float64), independent of the renderer's code.
"""
import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrecon.data.synthetic import (CLASSES, GROUND, MIRROR, SKY, forward_walk,
                                     intrinsics_from_fov, look_at, make_scene, orbit,
                                     random_look_at, random_world, render)
from jaxrecon.data.synthetic import intersect
from jaxrecon.data.synthetic.world import OBJECT_RADIUS, WALL_DISTANCE

_H = _W = 128


@pytest.fixture(scope="module")
def orbit_scene():
  return make_scene(3, num_views=4, height=_H, width=_W, path="orbit")


def _points(depth, k, cam_from_world):
  """(h, w, 3) world points of a depth map (numpy, float64)."""
  h, w = depth.shape
  v, u = np.mgrid[:h, :w].astype(np.float64)
  rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(k).T
  cam = rays * depth[..., None]
  rot, t = cam_from_world[:3, :3], cam_from_world[:3, 3]
  return (cam - t) @ rot                                     # R^T (x - t)


def _project(points, k, cam_from_world):
  """World points (..., 3) -> pixels (..., 2) and camera z (...)."""
  cam = points @ cam_from_world[:3, :3].T + cam_from_world[:3, 3]
  z = cam[..., 2]
  pix = cam @ k.T
  return pix[..., :2] / np.where(np.abs(z) < 1e-9, 1e-9, z)[..., None], z


def _warp(scene, a, b):
  """Pixels of view b looked up in view a through b's depth and both poses.

  Returns (mask, colour_b, colour_a, point_b, point_a): mask (h, w) marks b pixels whose surface
  point is visible in a (in the image, depth agrees within 1 %, not sky, not mirror in either
  view); colours (h, w, 3) float; points (h, w, 3) world points from b's and from a's depth.
  """
  k, poses, depth = scene.intrinsics, scene.cam_from_world, scene.depth.astype(np.float64)
  pb = _points(depth[b], k[b], poses[b])
  pix, z = _project(pb, k[a], poses[a])
  h, w = depth.shape[1:]
  col = np.clip(np.round(pix[..., 0]).astype(int), 0, w - 1)
  row = np.clip(np.round(pix[..., 1]).astype(int), 0, h - 1)
  inside = (pix[..., 0] > 0) & (pix[..., 0] < w - 1) & (pix[..., 1] > 0) & (pix[..., 1] < h - 1)
  da = depth[a][row, col]
  pa = _points(depth[a], k[a], poses[a])[row, col]
  lab_a, lab_b = scene.labels[a][row, col], scene.labels[b]
  mask = (inside & (depth[b] > 0) & (z > 0) & (np.abs(da - z) < 0.01 * z)
          & (lab_a != MIRROR) & (lab_b != MIRROR) & (lab_a != SKY))
  # Bilinear colour of a at the exact projected position (the depth test used the nearest pixel).
  img_a = scene.images[a].astype(np.float32)
  mx = cv2.remap(img_a, pix[..., 0].astype(np.float32), pix[..., 1].astype(np.float32),
                 cv2.INTER_LINEAR)
  return mask, scene.images[b].astype(np.float32), mx, pb, pa


def test_deterministic_and_seed_dependent():
  a = make_scene(7, num_views=2, height=_H, width=_W, path="random")
  b = make_scene(7, num_views=2, height=_H, width=_W, path="random")
  c = make_scene(8, num_views=2, height=_H, width=_W, path="random")
  for field in ("images", "intrinsics", "cam_from_world", "depth", "labels"):
    np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
  assert not np.array_equal(a.images, c.images)
  assert not np.array_equal(a.cam_from_world, c.cam_from_world)


def test_fields_types_and_ranges(orbit_scene):
  s = orbit_scene
  assert s.images.shape == (4, _H, _W, 3) and s.images.dtype == np.uint8
  assert s.intrinsics.dtype == np.float64 and s.cam_from_world.dtype == np.float64
  assert s.depth.dtype == np.float32 and s.labels.dtype == np.uint8
  assert np.all(np.isfinite(s.depth)) and np.all(s.depth >= 0)
  assert s.labels.max() < len(CLASSES)
  # Sky exactly where depth is invalid.
  np.testing.assert_array_equal(s.labels == SKY, s.depth == 0)
  rot = s.cam_from_world[:, :3, :3]
  np.testing.assert_allclose(rot @ np.swapaxes(rot, 1, 2), np.broadcast_to(np.eye(3), rot.shape),
                             atol=1e-12)
  np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-12)
  np.testing.assert_array_equal(s.cam_from_world[:, 3], np.tile([0, 0, 0, 1.0], (4, 1)))


def test_orbit_cameras_see_the_scene():
  for seed in range(3):
    s = make_scene(seed, num_views=4, height=_H, width=_W, path="orbit")
    non_sky = np.mean(s.labels != SKY, axis=(1, 2))
    assert np.all(non_sky > 0.6), (seed, non_sky)
    # Objects (not only ground) are in every view.
    assert np.all(np.mean(s.labels > GROUND, axis=(1, 2)) > 0.05), seed


def test_ground_pixels_lie_on_the_ground_plane(orbit_scene):
  """Depth + intrinsics + pose of every ground pixel give a world point with z = 0."""
  s = orbit_scene
  for i in range(s.num_views):
    pts = _points(s.depth[i].astype(np.float64), s.intrinsics[i], s.cam_from_world[i])
    ground = s.labels[i] == GROUND
    assert ground.mean() > 0.2
    # float32 rendering: |z| error ~ 1e-6 relative to depth.
    assert np.max(np.abs(pts[ground, 2]) / s.depth[i][ground]) < 2e-5


# Least fraction of b's surface seen again in a: random look-at views come from any side, so
# they overlap little (a few % for seed 3); orbit and walk neighbours overlap by 55-80 %.
@pytest.mark.parametrize("path,min_overlap", [("orbit", 0.3), ("walk", 0.3), ("random", 0.005)])
def test_cross_view_geometric_consistency(path, min_overlap, orbit_scene):
  s = orbit_scene if path == "orbit" else make_scene(3, num_views=4, height=_H, width=_W,
                                                     path=path)
  for a, b in [(0, 1), (1, 0), (2, 3)]:
    mask, _, _, pb, pa = _warp(s, a, b)
    # A wrong pose or depth convention gives almost no agreement.
    assert mask.sum() > min_overlap * (s.depth[b] > 0).sum(), (path, a, b, mask.mean())
    assert mask.sum() > 100
    # The nearest pixel of a is up to half a pixel (per axis) from the projection, so its 3D point
    # is within about a pixel footprint (depth / f, larger at grazing angles) of b's point.
    err = np.linalg.norm(pb - pa, axis=-1)[mask] / s.depth[b][mask] * s.intrinsics[a, 0, 0]
    assert np.median(err) < 1.0, (path, np.median(err))
    assert np.percentile(err, 90) < 4.0, (path, np.percentile(err, 90))


def test_cross_view_photometric_consistency(orbit_scene):
  """Warping view a into view b with b's depth and the poses reproduces b's colours."""
  s = orbit_scene
  for a, b in [(0, 1), (1, 0), (1, 2), (3, 2)]:
    mask, colour_b, colour_a, _, _ = _warp(s, a, b)
    diff = np.abs(colour_a - colour_b).mean(-1)[mask]
    # Measured: median 3-4 (of 255), unrelated pixels (b against itself shifted by 7 pixels) 20.
    shifted = np.abs(np.roll(colour_b, 7, axis=1) - colour_b).mean(-1)[mask]
    assert np.median(diff) < 6.0, (a, b, np.median(diff))
    assert np.median(diff) < 0.4 * np.median(shifted), (np.median(diff), np.median(shifted))


def test_sift_finds_enough_keypoints():
  sift = cv2.SIFT_create()
  for seed in range(2):
    s = make_scene(seed, num_views=3, height=_H, width=_W, path="orbit")
    counts = [len(sift.detect(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), None)) for im in s.images]
    assert min(counts) >= 200, (seed, counts)


def test_mirror_shows_the_reflection_but_keeps_its_depth():
  """The same world with and without mirror flags: identical depth, labels differ only on mirror
  pixels (class MIRROR), colours differ there (the reflected scene) and nowhere else."""
  world = random_world(11, mirror_prob=0.0)
  mirrored = world.mirror.copy()
  mirrored[1:] = True                                          # every object but the ground
  world_m = world._replace(mirror=mirrored, label=np.where(mirrored, MIRROR, world.label))
  k = intrinsics_from_fov(48, 64, 60.0)[None]     # (a size shared with the next test: one compile)
  pose = orbit(1, radius=6.0, height=2.5)
  img, depth, lab = render(world, k, pose, 48, 64, supersample=1)
  img_m, depth_m, lab_m = render(world_m, k, pose, 48, 64, supersample=1)
  np.testing.assert_array_equal(depth, depth_m)
  is_mirror = lab_m == MIRROR
  assert is_mirror.mean() > 0.05
  np.testing.assert_array_equal(lab[~is_mirror], lab_m[~is_mirror])
  np.testing.assert_array_equal(img[~is_mirror], img_m[~is_mirror])
  changed = np.abs(img.astype(int) - img_m.astype(int)).max(-1)[is_mirror] > 8
  assert changed.mean() > 0.5


def test_supersampling_changes_rgb_only():
  world = random_world(2)
  k = intrinsics_from_fov(48, 64, 70.0)[None]
  pose = random_look_at(1, 5)
  img1, depth1, lab1 = render(world, k, pose, 48, 64, supersample=1)
  img2, depth2, lab2 = render(world, k, pose, 48, 64, supersample=2)
  assert img1.shape == (1, 48, 64, 3)
  np.testing.assert_array_equal(depth1, depth2)
  np.testing.assert_array_equal(lab1, lab2)
  assert not np.array_equal(img1, img2)
  # Anti-aliasing averages: the mean colour barely moves.
  assert abs(img1.astype(float).mean() - img2.astype(float).mean()) < 3.0


def test_paths_look_at_their_targets_from_free_space():
  target = np.array([0.5, -0.3, 0.2])
  pose = look_at(np.array([[4.0, 3.0, 2.0], [-6.0, 0.5, 1.0]]), target)
  k = intrinsics_from_fov(48, 64, 60.0)
  for p in pose:
    cam = p[:3, :3] @ target + p[:3, 3]
    assert cam[2] > 0
    np.testing.assert_allclose((k @ cam)[:2] / cam[2], [k[0, 2], k[1, 2]], atol=1e-9)
    assert p[:3, :3][0, 2] == pytest.approx(0.0, abs=1e-12)      # camera x is horizontal: no roll
  for poses in (orbit(6, arc_degrees=360), forward_walk(8), random_look_at(16, 3)):
    centres = -np.einsum("vji,vj->vi", poses[:, :3, :3], poses[:, :3, 3])
    radius = np.hypot(centres[:, 0], centres[:, 1])
    assert np.all(radius > OBJECT_RADIUS + 1.0) and np.all(np.abs(centres[:, :2]) < WALL_DISTANCE)
    assert np.all(centres[:, 2] > 0)
  with pytest.raises(ValueError, match="path"):
    make_scene(0, num_views=1, height=8, width=8, path="spiral")


def test_intrinsics_from_fov():
  k = intrinsics_from_fov(30, 40, 90.0)
  # The image's left edge (u = -0.5) is 45 degrees off the optical axis.
  assert (k[0, 2] + 0.5) / k[0, 0] == pytest.approx(1.0)
  assert (k[0, 2], k[1, 2]) == (19.5, 14.5)


def test_intersections_against_hand_computed_hits():
  o = jnp.array([0.0, -5.0, 1.0], jnp.float32)
  d = jnp.array([0.0, 1.0, 0.0], jnp.float32)
  t_min = jnp.float32(1e-4)
  t, n = intersect.box(o, d, jnp.array([0.0, 0.0, 1.0]), jnp.array([1.0, 2.0, 1.0]),
                       jnp.float32(0.0), True, t_min)
  assert float(t) == pytest.approx(3.0) and np.allclose(n, [0, -1, 0])
  # Rotated by 90 degrees the box's long axis points along x: hit at y = -1.
  t, n = intersect.box(o, d, jnp.array([0.0, 0.0, 1.0]), jnp.array([2.0, 1.0, 1.0]),
                       jnp.float32(np.pi / 2), True, t_min)
  assert float(t) == pytest.approx(3.0, abs=1e-5) and np.allclose(n, [0, -1, 0], atol=1e-6)
  t, n = intersect.sphere(o, d, jnp.array([0.0, 0.0, 1.0]), jnp.float32(0.5), True, t_min)
  assert float(t) == pytest.approx(4.5) and np.allclose(n, [0, -1, 0])
  t, n = intersect.cylinder(o, d, jnp.array([0.0, 0.0, 0.0]), jnp.float32(0.5), jnp.float32(2.0),
                            True, t_min)
  assert float(t) == pytest.approx(4.5) and np.allclose(n, [0, -1, 0])
  # Straight down onto the cylinder's top cap, then past a short one onto nothing.
  down = jnp.array([0.0, 0.0, -1.0], jnp.float32)
  t, n = intersect.cylinder(jnp.array([0.1, 0.0, 5.0]), down, jnp.array([0.0, 0.0, 0.0]),
                            jnp.float32(0.5), jnp.float32(2.0), True, t_min)
  assert float(t) == pytest.approx(3.0) and np.allclose(n, [0, 0, 1])
  t, _ = intersect.cylinder(jnp.array([1.0, 0.0, 5.0]), down, jnp.array([0.0, 0.0, 0.0]),
                            jnp.float32(0.5), jnp.float32(2.0), True, t_min)
  assert float(t) == intersect.FAR
  t, n = intersect.ground(o, jnp.array([0.0, 1.0, -1.0]), jnp.float32(30.0), t_min)
  assert float(t) == pytest.approx(1.0) and np.allclose(n, [0, 0, 1])
  # Inactive objects are never hit.
  t, _ = intersect.sphere(o, d, jnp.array([0.0, 0.0, 1.0]), jnp.float32(0.5), False, t_min)
  assert float(t) == intersect.FAR


def test_random_world_seeds_and_fixed_sizes():
  key = jax.random.key(4)
  a, b = random_world(key), random_world(jax.random.key(4))
  c = random_world(jax.random.PRNGKey(5))
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(a.box_centre, c.box_centre)
  np.testing.assert_array_equal(random_world(np.int64(9)).offset, random_world(9).offset)
  # Every world has the same array shapes (the renderer compiles once).
  shapes = lambda w: [np.shape(x) for x in w]
  assert shapes(a) == shapes(random_world(0, num_boxes=(0, 0), num_spheres=(4, 4)))
  assert set(np.unique(a.label)) <= set(range(len(CLASSES))) - {SKY}
