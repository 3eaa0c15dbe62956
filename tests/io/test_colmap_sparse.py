"""The sparse COLMAP model with tracks (jaxrecon.io.colmap_sparse), read back by our reader and, when
pycolmap is installed, by COLMAP itself (its bundle adjuster runs on the model)."""
import numpy as np
import pytest

from jaxrecon.io import colmap_read as colmap
from jaxrecon.io import colmap_sparse

H, W = 60, 80


def _look_at(centre, target):
  """cam_from_world (4, 4) of a camera at `centre` looking at `target` (OpenCV axes, y down)."""
  z = target - centre
  z = z / np.linalg.norm(z)
  x = np.cross([0.0, -1.0, 0.0], z)
  x = x / np.linalg.norm(x)
  rot = np.stack([x, np.cross(z, x), z])
  pose = np.eye(4)
  pose[:3, :3], pose[:3, 3] = rot, -rot @ centre
  return pose


def _scene(seed=0, v=5, t=40):
  """Known cameras on an arc around random points, exact projections, then the kind of result a
  fit returns: an unregistered view, outlier observations, dropped tracks, padding rows."""
  rng = np.random.default_rng(seed)
  points = rng.uniform(-1, 1, (t, 3))
  angles = np.linspace(-0.5, 0.5, v)
  cam_from_world = np.stack([_look_at(np.array([4 * np.sin(a), 0.3, -4 * np.cos(a)]),
                                      np.zeros(3)) for a in angles])
  k = np.array([[70.0, 0, (W - 1) / 2], [0, 72.0, (H - 1) / 2], [0, 0, 1]])
  intrinsics = np.stack([k] * v)
  cam = np.einsum("vij,tj->tvi", cam_from_world[:, :3, :3], points) + cam_from_world[:, :3, 3]
  pixels = np.einsum("ij,tvj->tvi", k, cam)
  pixels = pixels[..., :2] / pixels[..., 2:]
  observed = rng.uniform(size=(t, v)) < 0.8
  observed[-3:] = False                      # padding rows
  pixels[~observed] = np.nan
  inlier = observed & (rng.uniform(size=(t, v)) < 0.9)
  registered = np.ones(v, bool)
  registered[2] = False                      # e.g. a view the fit could not place
  fitted_points = points.copy()
  fitted_points[:5] = np.nan                 # tracks the fit did not keep
  fitted_cams = np.where(registered[:, None, None], cam_from_world, np.nan)
  colors = rng.integers(0, 256, (t, 3), dtype=np.uint8)
  return dict(names=[f"im{i}.png" for i in range(v)], intrinsics=intrinsics,
              cam_from_world=fitted_cams, pixels=pixels, observed=observed, points=fitted_points,
              inlier=inlier, colors=colors, registered=registered)


def _write(folder, s, **changes):
  s = {**s, **changes}
  return colmap_sparse.write_colmap_sparse(
      folder, s["names"], s["intrinsics"], s["cam_from_world"], (H, W), pixels=s["pixels"],
      observed=s["observed"], points=s["points"], inlier=s["inlier"], colors=s["colors"])


def test_model_observations_rules():
  s = _scene()
  use = colmap_sparse.model_observations(s["pixels"], s["observed"], s["inlier"], s["points"],
                                         s["intrinsics"], s["cam_from_world"])
  assert not use[:, 2].any()                          # unregistered view
  assert not use[:5].any()                            # no point
  assert not use[~s["inlier"]].any()
  counts = use.sum(1)
  assert np.all((counts == 0) | (counts >= 2))
  # Every other inlier of a kept point in a registered view is used.
  expect = s["inlier"] & s["registered"][None] & np.isfinite(s["points"]).all(1)[:, None]
  expect &= (expect.sum(1) >= 2)[:, None]
  np.testing.assert_array_equal(use, expect)
  # A point moved behind a camera loses that observation (no usable reprojection error).
  points = s["points"].copy()
  row = int(np.nonzero(use[:, 0] & (counts >= 3))[0][0])
  centre0 = -s["cam_from_world"][0, :3, :3].T @ s["cam_from_world"][0, :3, 3]
  points[row] = centre0 - 0.5 * (points[row] - centre0)
  behind = colmap_sparse.model_observations(s["pixels"], s["observed"], s["inlier"], points,
                                            s["intrinsics"], s["cam_from_world"])
  assert not behind[row, 0]


def test_points2d_and_tracks_reference_each_other(tmp_path):
  """Read back with our reader: every TRACK entry names a POINTS2D row whose POINT3D_ID is that
  point, every POINTS2D row with an id is in that point's track, and the 2D points are the
  observations (package pixel convention after the reader's -0.5)."""
  s = _scene()
  written = _write(tmp_path, s)
  points2d = colmap.read_points2d_txt(tmp_path / "images.txt")
  points3d = colmap.read_points3d_txt(tmp_path / "points3D.txt")
  assert sorted(points2d) == ["im0.png", "im1.png", "im3.png", "im4.png"]   # registered only
  assert written["points"] == len(points3d) > 20 and written["images"] == 4
  by_id = {p.image_id: (name, p) for name, p in points2d.items()}
  entries = 0
  for point_id, point in points3d.items():
    row = point_id - 1                                       # POINT3D_ID = track row + 1
    np.testing.assert_allclose(point.xyz, s["points"][row], atol=1e-12)
    np.testing.assert_array_equal(point.rgb, s["colors"][row])
    assert len(point.track) >= 2
    for image_id, idx in point.track:
      name, p = by_id[int(image_id)]
      assert p.point3d_ids[idx] == point_id
      np.testing.assert_allclose(p.xy[idx], s["pixels"][row, int(image_id) - 1], atol=1e-9)
      entries += 1
    # Exact synthetic projections: the error is zero up to printing.
    assert 0 <= point.error < 1e-6
  assert entries == written["observations"]
  listed = sum(int((p.point3d_ids >= 0).sum()) for p in points2d.values())
  assert listed == entries                                   # no dangling POINT3D_ID
  for name, p in points2d.items():
    view = int(name[2])
    assert len(p.xy) == int(s["observed"][:, view].sum())    # all tracked keypoints listed
  # The poses read back (unregistered view left out of images.txt).
  for name, _, pose in colmap.read_images_txt(tmp_path / "images.txt"):
    np.testing.assert_allclose(pose, s["cam_from_world"][int(name[2])], atol=1e-12)


def test_error_column_is_the_mean_reprojection_error(tmp_path):
  s = _scene(seed=1)
  shifted = s["pixels"].copy()
  shifted[..., 0] += 2.0                    # every observation 2 px off -> ERROR 2
  _write(tmp_path, s, pixels=shifted)
  errors = [p.error for p in colmap.read_points3d_txt(tmp_path / "points3D.txt").values()]
  np.testing.assert_allclose(errors, 2.0, atol=1e-5)


def test_track_colors_first_used_observation():
  images = np.zeros((3, H, W, 3), np.uint8)
  images[1, 10, 20] = [1, 2, 3]
  images[2, 59, 79] = [7, 8, 9]
  pixels = np.full((3, 3, 2), np.nan)
  pixels[0, 1] = [20.4, 9.6]                 # nearest pixel (u, v) = (20, 10)
  pixels[0, 2] = [0.0, 0.0]
  pixels[1, 2] = [80.2, 59.4]                # just outside: clipped to the last pixel
  use = np.array([[False, True, True], [False, False, True], [False, False, False]])
  colors = colmap_sparse.track_colors(images, pixels, use)
  np.testing.assert_array_equal(colors, [[1, 2, 3], [7, 8, 9], [0, 0, 0]])


def test_bad_shapes_are_named(tmp_path):
  s = _scene()
  with pytest.raises(ValueError, match="observed and inlier"):
    _write(tmp_path, s, inlier=s["inlier"][:, :2])


def _colmap_reprojection_errors(rec) -> dict:
  """{POINT3D_ID: (m,) pixel distances of its track's 2D points to the point projected by
  COLMAP} (recomputed: COLMAP's own mean error reads the ERROR column we wrote)."""
  errors = {}
  for point_id, point in rec.points3D.items():
    errors[point_id] = np.asarray([
        np.linalg.norm(rec.images[e.image_id].project_point(point.xyz)
                       - rec.images[e.image_id].points2D[e.point2D_idx].xy)
        for e in point.track.elements])
  return errors


def _mean(errors: dict) -> float:
  return float(np.mean(np.concatenate(list(errors.values()))))


def test_pycolmap_reads_the_model_and_bundle_adjusts_it(tmp_path):
  pycolmap = pytest.importorskip("pycolmap", reason="pycolmap is not installed (optional check)")
  s = _scene(seed=2, t=60)
  # Exact observations: COLMAP's own projection (its cameras, its pixel convention) reproduces
  # every POINTS2D entry, so the +0.5 shifts of cameras.txt and images.txt agree.
  _write(tmp_path / "exact", s)
  exact = _colmap_reprojection_errors(pycolmap.Reconstruction(str(tmp_path / "exact")))
  assert max(e.max() for e in exact.values()) < 1e-6
  rng = np.random.default_rng(3)
  noisy = s["pixels"] + rng.normal(scale=0.5, size=s["pixels"].shape)
  # Start from perturbed points so the adjuster has something to reduce.
  start = s["points"] + rng.normal(scale=0.02, size=s["points"].shape)
  written = _write(tmp_path / "noisy", s, pixels=noisy, points=start)
  rec = pycolmap.Reconstruction(str(tmp_path / "noisy"))
  assert rec.num_reg_images() == 4 and rec.num_points3D() == written["points"]
  assert len(rec.cameras) == 5
  # Our ids survive: image 2 (view index 1) is im1.png with its pose.
  image = rec.images[2]
  assert image.name == "im1.png"
  np.testing.assert_allclose(image.cam_from_world().matrix(), s["cam_from_world"][1, :3],
                             atol=1e-9)
  assert sum(p.track.length() for p in rec.points3D.values()) == written["observations"]
  start_errors = _colmap_reprojection_errors(rec)
  # Our ERROR column is each point's mean reprojection error, as COLMAP computes it.
  for point_id, point in rec.points3D.items():
    assert abs(point.error - start_errors[point_id].mean()) < 1e-5
  before = _mean(start_errors)
  pycolmap.bundle_adjustment(rec, pycolmap.BundleAdjustmentOptions())
  after = _mean(_colmap_reprojection_errors(rec))
  # The noise is 0.5 px per coordinate (mean magnitude 0.5 sqrt(pi / 2) = 0.63 px): the adjusted
  # model fits the observations at most that badly, better than the perturbed start.
  assert after < before and after < 0.63, (before, after)


def test_reader_names_malformed_lines(tmp_path):
  (tmp_path / "images.txt").write_text("1 1 0 0 0 0 0 0 1 a.png\n1.0 2.0\n")
  with pytest.raises(ValueError, match="line 2: POINTS2D"):
    colmap.read_points2d_txt(tmp_path / "images.txt")
  (tmp_path / "images.txt").write_text("1 1 0 0 0 0 0 0 1 a.png\n1.0 2.0 x\n")
  with pytest.raises(ValueError, match="line 2: a POINT3D_ID"):
    colmap.read_points2d_txt(tmp_path / "images.txt")
  # The last image's points line may be missing; an empty one means no points.
  (tmp_path / "images.txt").write_text("1 1 0 0 0 0 0 0 1 a.png\n\n2 1 0 0 0 0 0 0 1 b.png\n")
  read = colmap.read_points2d_txt(tmp_path / "images.txt")
  assert [len(p.xy) for p in read.values()] == [0, 0] and read["b.png"].image_id == 2
  (tmp_path / "points3D.txt").write_text("# c\n1 0 0 0 1 2 3 0.5 1 0 2\n")
  with pytest.raises(ValueError, match="line 2: expected POINT3D_ID"):
    colmap.read_points3d_txt(tmp_path / "points3D.txt")
  (tmp_path / "points3D.txt").write_text("1 0 0 0 1 2 3 0.5 1 0\n1 0 0 0 1 2 3 0.5\n")
  with pytest.raises(ValueError, match="line 2: point id 1 is listed twice"):
    colmap.read_points3d_txt(tmp_path / "points3D.txt")
