"""Monocular depth maps aligned to a sparse model (`mvs.dense_from_mono`) on a rendered scene
with ground-truth depth: exact recovery of known per-view distortions, robustness to outlier
points, a map of the wrong shape rejected by the cross-view check, degenerate input."""
import numpy as np
import pytest

from jaxrecon import mvs
from jaxrecon.data.synthetic import intrinsics_from_fov, orbit, random_world, render

H, W, V = 60, 80, 5


@pytest.fixture(scope="module")
def scene():
  world = random_world(np.random.default_rng(7), mirror_prob=0.0)
  cams = orbit(V, radius=6.0, height=3.0, arc_degrees=40.0, start_degrees=10.0)
  k = np.tile(intrinsics_from_fov(H, W, 60.0), (V, 1, 1))
  images, depth, _ = render(world, k, cams, H, W, supersample=1)
  images, depth = np.asarray(images), np.asarray(depth, np.float64)
  # Sparse model: 60 random pixels with depth per view, lifted to the world; a point counts as
  # observed in every view where it lands on a pixel whose true depth agrees to 0.5 %.
  rng = np.random.default_rng(0)
  pts = []
  for i in range(V):
    rows, cols = np.nonzero(depth[i] > 0)
    pick = rng.choice(len(rows), 60, replace=False)
    z = depth[i][rows[pick], cols[pick]]
    ray = np.stack([cols[pick], rows[pick], np.ones(60)], -1) @ np.linalg.inv(k[i]).T
    cam = ray * z[:, None]
    pts.append((cam - cams[i][:3, 3]) @ cams[i][:3, :3])
  pts = np.concatenate(pts)
  observed = np.zeros((len(pts), V), bool)
  for i in range(V):
    cam = pts @ cams[i][:3, :3].T + cams[i][:3, 3]
    uvw = cam @ k[i].T
    uv = np.rint(uvw[:, :2] / uvw[:, 2:]).astype(int)
    inside = (cam[:, 2] > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (
        uv[:, 1] < H)
    gt = np.zeros(len(pts))
    gt[inside] = depth[i][uv[inside, 1], uv[inside, 0]]
    observed[:, i] = inside & (np.abs(gt - cam[:, 2]) < 0.005 * cam[:, 2])
  return dict(images=images, depth=depth, k=k, cams=cams, points=pts, observed=observed)


def _disparity_like(depth, c, d):
  """What an affine-invariant disparity model gives, read as depth: 1 / (c / z + d)."""
  return np.where(depth > 0, 1.0 / (c[:, None, None] / np.where(depth > 0, depth, 1.0)
                                    + d[:, None, None]), 0.0)


def test_known_distortions_are_undone_exactly(scene):
  depth = scene["depth"]
  c, d = np.array([0.5, 1.0, 2.0, 3.0, 0.8]), np.array([0.1, 0.0, 0.3, 0.05, 0.2])
  out = mvs.dense_from_mono(scene["images"], _disparity_like(depth, c, d), depth > 0,
                            scene["k"], scene["cams"], scene["points"], scene["observed"])
  # 1 / z = (1 / c) (1 / m) - d / c, solved in float64 from the points alone. Not to rounding:
  # a point seen next to a depth edge samples a blend of both sides (bilinear), and the fit keeps
  # residuals under its floor of 0.1 % of the values, so the answer is good to a few 1e-4.
  np.testing.assert_allclose([a.scale for a in out.alignments], 1 / c, rtol=5e-4)
  np.testing.assert_allclose([a.shift for a in out.alignments], -d / c, rtol=5e-3, atol=1e-4)
  valid = depth > 0
  confident = valid & (out.confidence > 0)
  assert confident.sum() > 0.5 * valid.sum()
  rel = np.abs(out.depth - depth)[confident] / depth[confident]
  # Kept depths are averaged with the neighbours' that confirm them (each within the check's 3 %),
  # which at depth edges blends in a little of the other side.
  assert np.median(rel) < 2e-4 and np.max(rel) < 0.03
  assert np.all(out.confidence[~valid] == 0)
  assert len(out.points) == confident.sum()

  # The same in depth space: z = c m + d.
  mono = np.where(depth > 0, (depth - d[:, None, None]) / c[:, None, None], 0.0)
  out = mvs.dense_from_mono(scene["images"], mono, depth > 0, scene["k"], scene["cams"],
                            scene["points"], scene["observed"], mvs.MonoSettings(space="depth"))
  np.testing.assert_allclose([a.scale for a in out.alignments], c, rtol=5e-4)
  np.testing.assert_allclose([a.shift for a in out.alignments], d, rtol=5e-3, atol=1e-3)


def test_outlier_points_do_not_tilt_the_fit(scene):
  depth = scene["depth"]
  pts = scene["points"].copy()
  rng = np.random.default_rng(1)
  bad = rng.uniform(size=len(pts)) < 0.25
  # A quarter of the points pushed 10-40 % along their ray from the scene centre: wrong depths.
  pts[bad] *= rng.uniform(1.1, 1.4, size=(bad.sum(), 1))
  c, d = np.full(V, 1.5), np.full(V, 0.1)
  out = mvs.dense_from_mono(scene["images"], _disparity_like(depth, c, d), depth > 0,
                            scene["k"], scene["cams"], pts, scene["observed"])
  np.testing.assert_allclose([a.scale for a in out.alignments], 1 / c, rtol=5e-4)
  for a in out.alignments:
    assert a.inliers < a.points and a.median_error < 2e-4


def test_a_map_of_the_wrong_shape_is_not_confirmed(scene):
  depth = scene["depth"]
  mono = depth.copy()
  # View 2's map: 40 % too far in its upper left quadrant, right elsewhere. (A wrong half would
  # not do: a scale error on the half with most points is the global scale ambiguity itself.) The
  # robust fit follows the other three quarters; the cross-view check must reject the quadrant.
  mono[2, : H // 2, : W // 2] *= 1.4
  out = mvs.dense_from_mono(scene["images"], mono, depth > 0, scene["k"], scene["cams"],
                            scene["points"], scene["observed"])
  valid = depth > 0
  upper = np.zeros((H, W), bool)
  upper[: H // 2, : W // 2] = True
  kept_wrong = (out.confidence[2] > 0) & valid[2] & upper
  kept_other = (out.confidence[[0, 1, 3, 4]] > 0) & valid[[0, 1, 3, 4]]
  assert kept_wrong.sum() < 0.1 * (valid[2] & upper).sum()
  assert kept_other.sum() > 0.5 * valid[[0, 1, 3, 4]].sum()
  rel = np.abs(out.depth - depth) / np.where(valid, depth, 1.0)
  assert np.median(rel[(out.confidence > 0) & valid]) < 1e-3


def test_degenerate_input(scene):
  depth = scene["depth"]
  observed = scene["observed"].copy()
  observed[:, 1] = False                      # view 1 observed nothing: not fitted
  out = mvs.dense_from_mono(scene["images"], depth, depth > 0, scene["k"], scene["cams"],
                            scene["points"], observed)
  assert np.isnan(out.alignments[1].scale)
  assert np.all(out.depth[1] == 0) and np.all(out.confidence[1] == 0)
  assert np.all(np.isfinite(out.depth)) and np.all(np.isfinite(out.confidence))
  # A constant map cannot be aligned (no slope): no depth anywhere, no error.
  flat = mvs.dense_from_mono(scene["images"], np.ones_like(depth), depth > 0, scene["k"],
                             scene["cams"], scene["points"], scene["observed"])
  assert np.all(flat.confidence == 0) and len(flat.points) == 0
  with pytest.raises(ValueError, match="point_views"):
    mvs.dense_from_mono(scene["images"], depth, depth > 0, scene["k"], scene["cams"],
                        scene["points"], scene["observed"][:, :3])
  with pytest.raises(ValueError, match="space"):
    mvs.MonoSettings(space="log")


def test_noise_in_the_map_does_not_flatten_the_fit():
  # One camera at the origin over a depth map spanning 3-7 m; the monocular map is 2 z + 3 with
  # 10 % independent noise per pixel; 400 points at random pixels with their exact depth. The
  # map is the noisy variable: regressing depth on it would shrink the slope by about a quarter
  # (noise variance 1.7 against the signal's 5.3); regressing it on depth does not.
  rng = np.random.default_rng(0)
  k = intrinsics_from_fov(H, W, 60.0)
  z = 3.0 + 4.0 * rng.uniform(size=(H, W))
  mono = (2.0 * z + 3.0) * (1.0 + 0.1 * rng.standard_normal((H, W)))
  rows, cols = rng.integers(0, H, 400), rng.integers(0, W, 400)
  ray = np.stack([cols, rows, np.ones(400)], -1) @ np.linalg.inv(k).T
  points = ray * z[rows, cols][:, None]
  out = mvs.align_view(mono, np.ones((H, W), bool), k, np.eye(4), points,
                       mvs.MonoSettings(space="depth"))
  # z = a m + b with a = 1 / 2, b = -3 / 2.
  assert abs(out.scale - 0.5) < 0.03 and abs(out.shift + 1.5) < 0.4
