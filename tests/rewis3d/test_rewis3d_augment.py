"""Tests of jaxrecon.rewis3d.augment: the shared 2D geometry keeps images, labels and
correspondence pixels aligned (exact without shrinking, >= 95 % on a synthetic scene with it),
strong photometric augmentation never moves pixels, and the 3D augmentation is a seeded,
order-keeping similarity."""
import numpy as np
import pytest

from jaxrecon.data import pointcloud as pc
from jaxrecon.rewis3d import augment as sa
from jaxrecon.data.scene import IGNORE_LABEL
from jaxrecon.data.synthetic import make_scene
from jaxrecon.data.transforms import crop_resize_camera

H, W = 12, 16  # 192 pixels: every pixel gets its own uint8 label


def _unique_labels():
  return np.arange(H * W, dtype=np.uint8).reshape(H, W)


def _geometries(scale_range, out_hw, count=40, seed=0):
  rng = np.random.default_rng(seed)
  return [sa.shared_geometry((H, W), rng, out_hw=out_hw, scale_range=scale_range)
          for _ in range(count)]


@pytest.mark.parametrize("scale_range,out_hw", [((1.0, 1.0), (8, 10)), ((1.0, 2.5), (10, 12)),
                                                ((1.0, 1.3), (20, 24))],
                         ids=["crop", "enlarge", "pad"])
def test_pixels_agree_with_labels_without_shrinking(scale_range, out_hw):
  labels = _unique_labels()
  flat = np.arange(H * W)
  flips = set()
  for geom in _geometries(scale_range, out_hw):
    flips.add(geom.flip)
    out = sa.apply_geometry_labels(labels, geom)
    assert out.shape == out_hw and out.dtype == np.uint8
    mapped = sa.apply_geometry_pixels(flat, geom, (H, W))
    assert mapped.dtype == np.int32
    inside = mapped >= 0
    np.testing.assert_array_equal(out.reshape(-1)[mapped[inside]], labels.reshape(-1)[inside])
    # Every pixel that maps into the crop is visible there; at scale 1 exactly those are (when
    # enlarging, a pixel whose centre falls outside the crop can still show at its border).
    visible = np.unique(out[out != IGNORE_LABEL])
    assert np.isin(labels.reshape(-1)[inside], visible).all()
    if geom.scaled_hw == (H, W):
      np.testing.assert_array_equal(visible, np.sort(labels.reshape(-1)[inside]))
  assert flips == {True, False}


def test_pixels_follow_the_camera_rule_of_crop_resize_camera():
  # A pixel maps to the output pixel containing its rescaled centre, i.e. within half a pixel of
  # where `transforms.crop_resize_camera` puts it.
  rows, cols = np.divmod(np.arange(H * W), W)
  for geom in _geometries((0.6, 1.8), (9, 11), seed=1):
    (sh, sw), (oh, ow) = geom.scaled_hw, geom.out_hw
    box = (geom.top * H / sh, geom.left * W / sw, oh * H / sh, ow * W / sw)
    _, uv = crop_resize_camera(np.eye(3), np.stack([cols, rows], -1).astype(float), box, (oh, ow))
    if geom.flip:
      uv[:, 0] = ow - 1 - uv[:, 0]
    mapped = sa.apply_geometry_pixels(rows * W + cols, geom, (H, W))
    inside = mapped >= 0
    r, c = np.divmod(mapped[inside], ow)
    assert np.abs(uv[inside] - np.stack([c, r], -1)).max() <= 0.5 + 1e-9
    in_window = ((uv[:, 0] > -0.5 + 1e-9) & (uv[:, 0] < ow - 0.5 - 1e-9) &
                 (uv[:, 1] > -0.5 + 1e-9) & (uv[:, 1] < oh - 0.5 - 1e-9))
    assert np.all(inside[in_window])


def test_image_and_labels_share_the_geometry():
  labels = _unique_labels()
  image = np.stack([labels, 255 - labels, labels // 2], -1)
  for geom in _geometries((1.0, 1.0), (10, 20), seed=2):
    out_image = sa.apply_geometry_image(image, geom)
    out_labels = sa.apply_geometry_labels(labels, geom)
    assert out_image.shape == (10, 20, 3) and out_image.dtype == np.uint8
    pad = out_labels == IGNORE_LABEL
    np.testing.assert_array_equal(out_image[..., 0][~pad], out_labels[~pad])
    np.testing.assert_array_equal(out_image[pad], 0)
  # Rescaling: a smooth image stays aligned to within interpolation error.
  v, u = np.mgrid[0:H, 0:W]
  ramp = np.stack([10 * u, 10 * v, np.zeros_like(u)], -1).astype(np.float32)
  for geom in _geometries((1.2, 2.0), (12, 14), seed=3):
    out = sa.apply_geometry_image(ramp, geom)
    (sh, sw) = geom.scaled_hw
    r, c = np.mgrid[0:12, 0:14]
    c_src = c[:, ::-1] if geom.flip else c
    src_u = (c_src + geom.left + 0.5) * W / sw - 0.5
    src_v = (r + geom.top + 0.5) * H / sh - 0.5
    interior = (src_u >= 0) & (src_u <= W - 1) & (src_v >= 0) & (src_v <= H - 1)
    np.testing.assert_allclose(out[..., 0][interior], 10 * src_u[interior], atol=0.05)
    np.testing.assert_allclose(out[..., 1][interior], 10 * src_v[interior], atol=0.05)


def test_apply_geometry_pixels_passes_minus_one_and_validates():
  geom = sa.shared_geometry((H, W), np.random.default_rng(0), out_hw=(8, 8))
  np.testing.assert_array_equal(sa.apply_geometry_pixels(np.array([-1, -1]), geom, (H, W)), -1)
  with pytest.raises(ValueError, match="image_hw"):
    sa.apply_geometry_pixels(np.array([0]), geom, (H + 1, W))
  with pytest.raises(ValueError, match="flat_pixels"):
    sa.apply_geometry_pixels(np.array([H * W]), geom, (H, W))
  with pytest.raises(ValueError, match="labels"):
    sa.apply_geometry_labels(np.zeros((H, W + 1), np.uint8), geom)
  with pytest.raises(ValueError, match="scale_range"):
    sa.shared_geometry((H, W), np.random.default_rng(0), out_hw=(8, 8), scale_range=(2, 1))
  with pytest.raises(ValueError, match="out_hw"):
    sa.shared_geometry((H, W), np.random.default_rng(0), out_hw=(0, 8))


def test_shared_geometry_is_seeded():
  a = sa.shared_geometry((H, W), np.random.default_rng(5), out_hw=(8, 8))
  b = sa.shared_geometry((H, W), np.random.default_rng(5), out_hw=(8, 8))
  assert a == b


@pytest.fixture(scope="module")
def scene():
  return make_scene(0, num_views=3, height=32, width=32)


def test_correspondences_survive_the_2d_geometry_on_a_scene(scene):
  cloud = pc.lift(scene.depth, None, scene.images, scene.intrinsics,
                  np.linalg.inv(scene.cam_from_world), scene.labels)
  rng = np.random.default_rng(0)
  agree = total = 0
  for trial in range(30):
    target = trial % 3
    indices, valid = pc.view_aware_sample(cloud, target, rng, num_points=1500)
    corr = pc.correspondences(cloud, indices, valid, target)
    geom = sa.shared_geometry(scene.image_size, rng, out_hw=(24, 28))
    out_labels = sa.apply_geometry_labels(scene.labels[target], geom)
    mapped = sa.apply_geometry_pixels(corr, geom, scene.image_size)
    assert np.all(mapped[corr < 0] == -1)
    hit = mapped >= 0
    same = out_labels.reshape(-1)[mapped[hit]] == cloud.label[indices[hit]]
    if geom.scaled_hw[0] >= 32 and geom.scaled_hw[1] >= 32:
      assert same.all()
    agree += same.sum()
    total += same.size
  assert total > 10000 and agree / total >= 0.95


def test_strong_photometric_keeps_shape_and_is_seeded(scene):
  image = scene.images[0]
  a, mask_a = sa.strong_photometric(image, np.random.default_rng(1), cutout_prob=1.0)
  b, mask_b = sa.strong_photometric(image, np.random.default_rng(1), cutout_prob=1.0)
  np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(mask_a, mask_b)
  assert a.shape == image.shape and a.dtype == np.uint8 and mask_a.shape == image.shape[:2]
  assert mask_a.any() and np.all(a[mask_a] == 0)
  same, mask = sa.strong_photometric(image, np.random.default_rng(1), blur_prob=0.0,
                                     colour_prob=0.0, grayscale_prob=0.0, cutout_prob=0.0)
  np.testing.assert_array_equal(same, image)
  assert not mask.any()
  changed, _ = sa.strong_photometric(image, np.random.default_rng(2), blur_prob=1.0,
                                     colour_prob=1.0, cutout_prob=0.0)
  assert np.abs(changed.astype(int) - image).mean() > 1.0
  with pytest.raises(ValueError, match="cutout_size"):
    sa.strong_photometric(image, np.random.default_rng(0), cutout_size=(0.5, 0.2))
  with pytest.raises(ValueError, match="img"):
    sa.strong_photometric(image.astype(np.float32), np.random.default_rng(0))


def _distances(x):
  x = np.asarray(x, np.float64)
  return np.linalg.norm(x[:, None] - x[None], axis=-1)


@pytest.mark.parametrize("seed", range(6))
def test_augment_points_is_an_order_keeping_similarity(seed):
  xyz = np.random.default_rng(100 + seed).normal(size=(60, 3)).astype(np.float32) * 3
  out = sa.augment_points(xyz, np.random.default_rng(seed), max_tilt_deg=10.0, jitter_sigma=0.0)
  assert out.shape == xyz.shape and out.dtype == np.float32
  d_in, d_out = _distances(xyz), _distances(out)
  off = ~np.eye(len(xyz), dtype=bool)
  ratio = d_out[off] / d_in[off]
  assert 0.9 <= ratio.mean() <= 1.1 and np.ptp(ratio) < 1e-5
  # Jitter with the same seed: the same similarity plus clipped noise.
  noisy = sa.augment_points(xyz, np.random.default_rng(seed), max_tilt_deg=10.0,
                            jitter_sigma=0.01, jitter_clip=0.02)
  assert np.abs(noisy - out).max() <= 0.02 + 1e-5 and np.abs(noisy - out).max() > 0


@pytest.mark.parametrize("up", [(0.0, 0.0, 1.0), (0.0, -1.0, 0.0)])
def test_augment_points_rotates_about_the_up_axis(up):
  xyz = np.random.default_rng(0).normal(size=(50, 3))
  up = np.array(up)
  centre = (xyz.min(0) + xyz.max(0)) / 2
  heights = set()
  for seed in range(5):
    out = sa.augment_points(xyz, np.random.default_rng(seed), scale_range=(1.0, 1.0),
                            jitter_sigma=0.0, up=up)
    np.testing.assert_allclose((out - centre) @ up, (xyz - centre) @ up, atol=1e-5)
    heights.add(round(float(out[0] @ np.cross(up, [1.0, 2.0, 3.0])), 3))
  assert len(heights) == 5  # the yaw really varies


def test_augment_points_presets_and_validation():
  xyz = np.random.default_rng(0).normal(size=(20, 3))
  for preset in (sa.WEAK_POINTS, sa.STRONG_POINTS):
    out = sa.augment_points(xyz, np.random.default_rng(0), **preset)
    assert out.shape == (20, 3) and np.isfinite(out).all()
  assert sa.augment_points(np.zeros((0, 3)), np.random.default_rng(0)).shape == (0, 3)
  with pytest.raises(ValueError, match="xyz"):
    sa.augment_points(np.zeros((4, 2)), np.random.default_rng(0))
  with pytest.raises(ValueError, match="up"):
    sa.augment_points(xyz, np.random.default_rng(0), up=(0, 0, 0))
