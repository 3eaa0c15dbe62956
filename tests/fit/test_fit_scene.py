"""jaxrecon.fit.fit_scene on exact synthetic tracks: recovery, degenerate views flagged, bad input."""
import warnings

import numpy as np
import pytest

from jaxrecon.evaluate.metrics import relative_pose_errors
from jaxrecon.fit import FitSettings, FitWarning, fit_scene


def look_at(centre, target):
  """cam_from_world (4, 4) of a camera at `centre` looking at `target` (OpenCV axes, y down)."""
  z = (target - centre) / np.linalg.norm(target - centre)
  x = np.cross(z, [0.0, 0.0, 1.0])
  x /= np.linalg.norm(x)
  y = np.cross(z, x)
  rot = np.stack([x, y, z])
  pose = np.eye(4)
  pose[:3, :3], pose[:3, 3] = rot, -rot @ centre
  return pose


K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])


def ring(v, radius=4.0, arc=360.0, seed=0, t=400):
  """Exact tracks of a ring of v cameras around random points: (pixels, visible, K, gt)."""
  rng = np.random.default_rng(seed)
  points = rng.uniform(-1.0, 1.0, (t, 3))
  az = np.deg2rad(np.arange(v) * arc / v)
  centres = np.stack([radius * np.cos(az), radius * np.sin(az), 1.5 + 0.2 * np.sin(3 * az)], -1)
  gt = np.stack([look_at(c, np.zeros(3)) for c in centres])
  return project(points, gt, rng) + (gt,)


def project(points, gt, rng, keep=0.85):
  v = len(gt)
  cam = np.einsum("vij,tj->tvi", gt[:, :3, :3], points) + gt[:, :3, 3]
  pixels = np.einsum("ij,tvj->tvi", K, cam / cam[..., 2:])[..., :2]
  # Each point is seen from the cameras on its side (a ring: every view sees a part).
  facing = np.einsum("tvi,tvi->tv", cam, cam) > 0
  visible = facing & (rng.uniform(size=cam.shape[:2]) < keep)
  return pixels, visible, np.tile(K, (v, 1, 1))


def rotation_errors_deg(pred, gt):
  """(v,) rotation error after the best global rotation (Kabsch over the stacked rotations):
  defined for any camera layout, coincident centres too."""
  m = np.einsum("vji,vjk->ik", gt[:, :3, :3], pred[:, :3, :3])
  u, _, vt = np.linalg.svd(m)
  align = u @ np.diag([1, 1, np.linalg.det(u @ vt)]) @ vt          # pred ~ gt @ align
  rel = pred[:, :3, :3] @ align.T @ np.swapaxes(gt[:, :3, :3], -1, -2)
  # |R - I|_F = 2 sqrt(2) sin(angle / 2): accurate for small angles, unlike arccos of the trace.
  chord = np.linalg.norm(rel - np.eye(3), axis=(1, 2))
  return np.degrees(2 * np.arcsin(np.clip(chord / (2 * np.sqrt(2)), 0, 1)))


def fit_quietly(*args, **kwargs):
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    result = fit_scene(*args, **kwargs)
  return result, [str(w.message) for w in caught if issubclass(w.category, FitWarning)]


def test_exact_ring_recovered():
  pixels, visible, intrinsics, gt = ring(10)
  result, caught = fit_quietly(pixels, visible, intrinsics)
  assert result.registered.all() and caught == [] and result.warnings == ()
  assert np.max(rotation_errors_deg(result.cam_from_world, gt)) < 0.01
  _, trans = relative_pose_errors(result.cam_from_world, gt)
  assert np.max(trans) < 0.05
  assert all(s["converged"] for s in result.stages)
  np.testing.assert_allclose(result.cam_from_world[0], np.eye(4), atol=1e-9)
  assert np.isclose(np.nanmedian(result.track_depth[result.inlier]), 1.0)
  assert np.nanmax(result.view_residual_px) < 0.01
  # The fitted points reproject onto the observations.
  cam = np.einsum("vij,tj->tvi", result.cam_from_world[:, :3, :3], result.points) \
      + result.cam_from_world[:, :3, 3]
  proj = np.einsum("ij,tvj->tvi", K, cam / cam[..., 2:])[..., :2]
  err = np.linalg.norm(proj - pixels, axis=-1)[result.inlier]
  assert err.size > 1000 and np.max(err) < 0.05


def test_registration_refiner_angular():
  pixels, visible, intrinsics, gt = ring(8, arc=120.0)
  settings = FitSettings(refine="registration", stages=((1.0, 30), (0.1, 60)))
  result, _ = fit_quietly(pixels, visible, intrinsics, settings=settings)
  assert result.registered.all()
  assert np.max(rotation_errors_deg(result.cam_from_world, gt)) < 0.05
  assert [s["name"] for s in result.stages] == ["registration angular 1 deg",
                                                 "registration angular 0.1 deg"]


def test_duplicate_view_flagged_and_colocated():
  pixels, visible, intrinsics, gt = ring(10)
  # View 10 is view 3 again (the same image under another name).
  pixels = np.concatenate([pixels, pixels[:, 3:4]], 1)
  visible = np.concatenate([visible, visible[:, 3:4]], 1)
  intrinsics = np.concatenate([intrinsics, intrinsics[:1]])
  gt = np.concatenate([gt, gt[3:4]])
  result, caught = fit_quietly(pixels, visible, intrinsics)
  assert result.duplicates == ((3, 10),)
  assert any("views 3 and 10" in w for w in caught)
  assert result.registered.all()
  assert np.max(rotation_errors_deg(result.cam_from_world, gt)) < 0.01
  centre = lambda p: -p[:3, :3].T @ p[:3, 3]
  assert np.linalg.norm(centre(result.cam_from_world[3]) - centre(result.cam_from_world[10])) < 1e-4


def test_view_without_tracks_and_disconnected_group_are_not_registered():
  pixels, visible, intrinsics, gt = ring(10)
  # A second, separate scene (its own points) seen by 3 more views: no shared track with the ring.
  rng = np.random.default_rng(1)
  far = rng.uniform(-1.0, 1.0, (200, 3)) + np.array([50.0, 0, 0])
  cams = np.stack([look_at(np.array([50.0 + 4 * np.cos(a), 4 * np.sin(a), 1.0]),
                           np.array([50.0, 0, 0])) for a in (0.0, 0.4, 0.8)])
  pix2, vis2, _ = project(far, cams, rng)
  t1, t2 = len(pixels), len(pix2)
  pixels = np.concatenate([np.concatenate([pixels, np.zeros((t1, 3, 2))], 1),
                           np.concatenate([np.zeros((t2, 10, 2)), pix2], 1)])
  visible = np.concatenate([np.concatenate([visible, np.zeros((t1, 3), bool)], 1),
                            np.concatenate([np.zeros((t2, 10), bool), vis2], 1)])
  # ... and view 13 sees nothing (a blank image).
  pixels = np.concatenate([pixels, np.full((t1 + t2, 1, 2), np.nan)], 1)
  visible = np.concatenate([visible, np.zeros((t1 + t2, 1), bool)], 1)
  intrinsics = np.tile(K, (14, 1, 1))
  result, caught = fit_quietly(pixels, visible, intrinsics)
  assert result.registered.tolist() == [True] * 10 + [False] * 4
  assert np.all(np.isnan(result.cam_from_world[10:]))
  assert result.components[0] == tuple(range(10)) and (10, 11, 12) in result.components
  assert any("not registered" in w and "[10, 11, 12, 13]" in w for w in caught)
  assert any("[[10, 11, 12]]" in w and "[13]" in w for w in caught)
  assert np.max(rotation_errors_deg(result.cam_from_world[:10], gt)) < 0.01


def test_rotation_only_scene():
  rng = np.random.default_rng(2)
  directions = rng.normal(size=(500, 3))
  directions[:, 0] = np.abs(directions[:, 0]) + 1.0                 # ahead of the cameras (+x)
  points = 100.0 * directions / np.linalg.norm(directions, axis=1, keepdims=True)
  gt = np.stack([look_at(np.zeros(3), np.array([np.cos(a), np.sin(a), 0.1 * a]))
                 for a in np.deg2rad(np.arange(-30, 31, 10))])
  pixels, visible, intrinsics = project(points, gt, rng)
  inside = (pixels[..., 0] > 0) & (pixels[..., 0] < 640) & (pixels[..., 1] > 0) & (
      pixels[..., 1] < 480)
  result, caught = fit_quietly(pixels, visible & inside, intrinsics)
  assert result.registered.all()
  assert any("only turned" in w for w in caught)
  assert np.max(rotation_errors_deg(result.cam_from_world, gt)) < 0.01


def test_poor_fit_warns():
  pixels, visible, intrinsics, _ = ring(8, arc=120.0)
  rng = np.random.default_rng(3)
  noisy = pixels + rng.normal(scale=3.0, size=pixels.shape)       # 3 px noise: a poor residual
  result, caught = fit_quietly(noisy, visible, intrinsics)
  # 3 px of noise: a third of the observations lie beyond the 4 px outlier threshold.
  assert any("are inliers" in w or "median final error" in w for w in caught), caught
  assert result.registered.all()


def test_degenerate_inputs_raise():
  eye = np.tile(np.eye(3), (3, 1, 1))
  with pytest.raises(ValueError, match="tracks"):
    fit_scene(np.zeros((10, 1, 2)), np.ones((10, 1), bool), np.eye(3)[None])
  with pytest.raises(ValueError, match="tracks"):
    fit_scene(np.zeros((0, 3, 2)), np.ones((0, 3), bool), eye)
  with pytest.raises(ValueError, match="visibility"):
    fit_scene(np.zeros((10, 3, 2)), np.zeros((10, 3), bool), eye)
  with pytest.raises(ValueError, match="intrinsics"):
    fit_scene(np.zeros((10, 3, 2)), np.ones((10, 3), bool), np.eye(3))
  with pytest.raises(ValueError, match="refine"):
    FitSettings(refine="nope")
  with pytest.raises(ValueError, match="form"):
    FitSettings(form="nope")
  with pytest.raises(ValueError, match="stages_px"):
    FitSettings(stages_px=())


def test_no_verified_pair_registers_nothing_and_says_so():
  rng = np.random.default_rng(4)
  pixels = rng.uniform(0, 600, (40, 3, 2))                 # random "tracks": no geometry at all
  visible = np.ones((40, 3), bool)
  visible[20:, 0] = False
  result, caught = fit_quietly(pixels, visible, np.tile(K, (3, 1, 1)))
  assert not result.registered.any() and np.all(np.isnan(result.cam_from_world))
  assert any("3 of 3 views not registered" in w for w in caught)


@pytest.mark.parametrize("factor", [0.85, 1.2])
def test_focal_refined_from_approximate_intrinsics(factor):
  """Intrinsics marked approximate (refine_focal): a focal 15-20 % off is recovered from the
  tracks, and with it the cameras; held fixed, the wrong focal bends them."""
  pixels, visible, intrinsics, gt = ring(12, arc=240.0, seed=3)
  wrong = intrinsics.copy()
  wrong[:, :2, :2] *= factor
  fixed, _ = fit_quietly(pixels, visible, wrong)
  result, caught = fit_quietly(pixels, visible, wrong, settings=FitSettings(refine_focal=True))
  assert result.registered.all() and caught == []
  np.testing.assert_allclose(result.intrinsics[:, 0, 0], 500.0, rtol=2e-3)
  np.testing.assert_allclose(result.intrinsics[:, :2, 2], intrinsics[:, :2, 2])  # held
  assert np.max(rotation_errors_deg(result.cam_from_world, gt)) < 0.05
  assert np.max(rotation_errors_deg(fixed.cam_from_world, gt)) > 0.5
  np.testing.assert_array_equal(fixed.intrinsics, wrong)
  # The residual is measured in the refined pixels: exact tracks, exact fit.
  assert np.nanmax(result.view_residual_px) < 0.02


def test_unobservable_focal_is_kept_and_reported():
  """A camera driving straight ahead without turning does not make the focal observable: with
  0.3 px of keypoint noise the refinement drifts towards 0 (where the reprojection error
  vanishes). The fit keeps the given focal, says so, and still registers every view. (On exact
  tracks it instead stops at a wrong focal inside [0.5, 2] without a warning, 404 px here for a
  true 500 and a given 450: an unobservable focal is only caught when it drifts out.)"""
  rng = np.random.default_rng(6)
  depth = rng.uniform(3.0, 40.0, 600)
  points = np.stack([rng.uniform(-0.6, 0.6, 600) * depth, depth + 2.0,
                     rng.uniform(-0.45, 0.45, 600) * depth], 1)       # ahead, along +y
  gt = np.stack([look_at(np.array([0.0, 0.3 * i, 0.0]), np.array([0.0, 0.3 * i + 50.0, 0.0]))
                 for i in range(8)])                                  # driving along +y
  pixels, visible, intrinsics = project(points, gt, rng, keep=0.9)
  cam_z = np.einsum("vj,tj->tv", gt[:, 2, :3], points) + gt[:, 2, 3]
  visible &= np.all((pixels > 0) & (pixels < [640, 480]), axis=-1) & (cam_z > 1.0)
  pixels = pixels + rng.normal(0.0, 0.3, pixels.shape)
  wrong = intrinsics.copy()
  wrong[:, :2, :2] *= 0.9
  result, caught = fit_quietly(pixels, visible, wrong, settings=FitSettings(refine_focal=True))
  assert any("focal length is not observable" in w for w in caught), caught
  np.testing.assert_array_equal(result.intrinsics, wrong)
  assert result.registered.all()
  rot, _ = relative_pose_errors(result.cam_from_world, gt)
  assert np.median(rot) < 0.1


def test_given_cameras_are_refined_in_their_own_frame():
  """init_cam_from_world (supplied poses a degree off): the refined cameras come back in the
  supplied frame and scale, close to the truth without any alignment."""
  pixels, visible, intrinsics, gt = ring(10, seed=4)
  rng = np.random.default_rng(0)
  init = gt.copy()
  for i in range(len(init)):
    axis = rng.normal(size=3)
    angle = np.deg2rad(1.0)
    k = np.cross(np.eye(3), axis / np.linalg.norm(axis))
    init[i, :3, :3] = (np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k) @ gt[i, :3, :3]
    init[i, :3, 3] += rng.normal(scale=0.05, size=3)
  result, _ = fit_quietly(pixels, visible, intrinsics, init_cam_from_world=init)
  assert result.registered.all()
  rel = result.cam_from_world[:, :3, :3] @ np.swapaxes(gt[:, :3, :3], -1, -2)
  angles = np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))
  centre = lambda c: -np.einsum("vji,vj->vi", c[:, :3, :3], c[:, :3, 3])
  # The supplied poses set the gauge: a best fit to them, so their noise (0.05, 1 deg) shifts it
  # a little; the shape of the result is exact.
  assert np.max(angles) < 0.5 and np.median(angles) < 0.5
  assert np.max(np.linalg.norm(centre(result.cam_from_world) - centre(gt), axis=1)) < 0.1
  assert np.max(rotation_errors_deg(result.cam_from_world, gt)) < 0.01
  np.testing.assert_allclose(result.init_cam_from_world, init)
  # Points and depths in the same frame: they reproject onto the observations.
  cam = np.einsum("vij,tj->tvi", result.cam_from_world[:, :3, :3], result.points) \
      + result.cam_from_world[:, :3, 3]
  np.testing.assert_allclose(cam[..., 2][result.inlier], result.track_depth[result.inlier],
                             rtol=1e-6)
  proj = np.einsum("ij,tvj->tvi", K, cam / cam[..., 2:])[..., :2]
  assert np.max(np.linalg.norm(proj - pixels, axis=-1)[result.inlier]) < 0.05
