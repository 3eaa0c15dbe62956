"""Segmentation pipeline: fixed shapes, 2D-3D consistency, sampling ablations, exact resume."""
import dataclasses
import pathlib

import numpy as np
import pytest

from jaxrecon.data.cache import cache_scenes
from jaxrecon.data.scene import IGNORE_LABEL
from jaxrecon.rewis3d.pipeline import (SegNpzSource, SegPipelineConfig, lift_record,
                                        make_seg_dataset, make_seg_sample, seg_eval_samples)
from jaxrecon.rewis3d.records import build_seg_jobs, camvid_scene, default_seg_settings, seg_record

V, H, W, N = 4, 64, 64, 512
CAMVID = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "camvid_0001TP"
CONFIG = SegPipelineConfig(height=64, width=64, num_points=N, batch_size=2, seed=0,
                           scale_range=(1.0, 1.5))


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
  settings = default_seg_settings()
  settings["synthetic"].update(num_scenes=2, num_views=V, height=H, width=W)
  settings.update(label_kind="coarse", recon="simulated")
  out = tmp_path_factory.mktemp("seg_cache")
  report = cache_scenes(build_seg_jobs(settings), out, provenance=settings, progress=False)
  assert not report.failed
  return sorted(str(p) for p in out.glob("*.npz"))


@pytest.fixture(scope="module")
def source(paths):
  return SegNpzSource(paths)


def _sample(source, index, seed, config=CONFIG):
  element = source[index]
  return make_seg_sample(element["record"], element["cloud"], element["target_view"],
                         np.random.default_rng(seed), config)


EXPECTED = {"image_weak": ((64, 64, 3), np.uint8), "image_strong": ((64, 64, 3), np.uint8),
            "labels": ((64, 64), np.int32), "dense_labels": ((64, 64), np.int32),
            "points_weak": ((N, 3), np.float32), "points_strong": ((N, 3), np.float32),
            "points_rgb": ((N, 3), np.float32), "points_label": ((N,), np.int32),
            "points_confidence": ((N,), np.float32), "points_valid": ((N,), np.bool_),
            "points_pixel": ((N,), np.int32)}


def test_source_enumerates_scene_view_pairs(source):
  assert len(source) == 2 * V
  assert [(source[i]["scene"], source[i]["target_view"]) for i in (0, V - 1, V)] == [
      (0, 0), (0, V - 1), (1, 0)]
  assert source[1]["cloud"] is source[2]["cloud"]  # memoised


def test_fixed_shapes_and_dtypes(source):
  for index, seed in ((0, 0), (5, 1)):
    sample = _sample(source, index, seed)
    assert sample.keys() == EXPECTED.keys()
    for key, (shape, dtype) in EXPECTED.items():
      assert sample[key].shape == shape and sample[key].dtype == dtype, key
    valid = sample["points_valid"]
    assert valid.all()  # the cloud holds more than N points
    assert np.all((sample["points_rgb"] >= 0) & (sample["points_rgb"] <= 1))
    assert np.all((sample["points_pixel"] >= -1) & (sample["points_pixel"] < 64 * 64))


def test_points_match_their_pixels(source):
  checked_labels = checked_colours = 0
  for index in range(len(source)):
    # labels: nearest-centre label resampling agrees with the pixel map when s >= 1
    sample = _sample(source, index, index)
    pix = sample["points_pixel"]
    hit = sample["points_valid"] & (pix >= 0) & (sample["points_label"] != IGNORE_LABEL)
    np.testing.assert_array_equal(sample["labels"].reshape(-1)[pix[hit]],
                                  sample["points_label"][hit])
    checked_labels += hit.sum()
    # colours: without rescaling the crop copies pixels exactly
    exact = dataclasses.replace(CONFIG, scale_range=(1.0, 1.0))
    sample = _sample(source, index, 100 + index, exact)
    pix = sample["points_pixel"]
    hit = sample["points_valid"] & (pix >= 0)
    np.testing.assert_allclose(sample["points_rgb"][hit] * 255,
                               sample["image_weak"].reshape(-1, 3)[pix[hit]], atol=1e-3)
    checked_colours += hit.sum()
  assert checked_labels > 100 and checked_colours > 1000


def test_weak_and_strong_points(source):
  sample = _sample(source, 1, 7)
  weak, strong, valid = sample["points_weak"], sample["points_strong"], sample["points_valid"]
  assert not np.allclose(weak[valid], strong[valid], atol=1e-2)
  assert np.all(weak[~valid] == 0) and np.all(strong[~valid] == 0)
  # unit scale: 95% of the target-view points lie in the unit ball (the robust radius: the rest,
  # e.g. far background, may lie anywhere), context within radius_scale (weak adds only a rotation,
  # a mirror and a scale of at most 1.05 about the bounding-box centre)
  dist = np.linalg.norm(weak[valid] - np.median(weak[valid], 0), axis=-1)
  assert np.percentile(dist, 90) < 2 * 1.05 * CONFIG.radius_scale
  assert np.ptp(weak[valid], 0).max() > 0.5


def test_normalisation_removes_the_reconstruction_scale(source):
  element = source[2]
  record = dict(element["record"])
  record["recon_depth"] = record["recon_depth"] * 10
  pose = record["recon_world_from_cam"].copy()
  pose[:, :3, 3] *= 10
  record["recon_world_from_cam"] = pose
  a = make_seg_sample(element["record"], None, 2, np.random.default_rng(3), CONFIG)
  b = make_seg_sample(record, None, 2, np.random.default_rng(3), CONFIG)
  np.testing.assert_array_equal(a["points_pixel"], b["points_pixel"])
  np.testing.assert_allclose(a["points_weak"], b["points_weak"], atol=1e-4)


def test_record_up_sets_the_axis_of_the_3d_rotation(source):
  """#11: a record's own "up" (estimated from its cameras where the frame is a gauge) is the 3D
  augmentation's axis, whatever the pipeline's configured up."""
  element = source[1]
  up = np.array([0.3, -0.9, 0.1]) / np.linalg.norm([0.3, -0.9, 0.1])
  record = {**element["record"], "up": up}
  a = make_seg_sample(record, None, 1, np.random.default_rng(5), CONFIG)
  b = make_seg_sample(element["record"], None, 1, np.random.default_rng(5),
                      dataclasses.replace(CONFIG, up=tuple(up)))
  c = make_seg_sample(element["record"], None, 1, np.random.default_rng(5), CONFIG)
  np.testing.assert_array_equal(a["points_weak"], b["points_weak"])
  assert not np.allclose(a["points_weak"], c["points_weak"], atol=1e-3)


def test_view_aware_sampling_gives_more_correspondences(source):
  full = dataclasses.replace(CONFIG, scale_range=(1.0, 1.0))
  counts = {}
  for sampling in ("view_aware", "random"):
    config = dataclasses.replace(full, sampling=sampling)
    counts[sampling] = sum(int((_sample(source, i, i, config)["points_pixel"] >= 0).sum())
                           for i in range(len(source)))
  print(f"2D-3D correspondences over {len(source)} samples of {N} points ({V} views): "
        f"view-aware {counts['view_aware']}, random {counts['random']}")
  assert counts["view_aware"] > 2 * counts["random"]


def test_target_view_context(source):
  config = dataclasses.replace(CONFIG, context="target_view", scale_range=(1.0, 1.0))
  for index in (0, 6):
    element = source[index]
    cloud, t = element["cloud"], element["target_view"]
    sample = _sample(source, index, index, config)
    valid = sample["points_valid"]
    assert valid.sum() == min(N, int((cloud.view == t).sum()))
    # a full-frame crop keeps every target pixel: each valid point is a target-view point
    assert np.all(sample["points_pixel"][valid] >= 0)
    assert np.all(sample["points_pixel"][~valid] == -1)


def _take(ds, n):
  it = iter(ds)
  return [next(it) for _ in range(n)], it


def _equal(a, b):
  return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_dataset_resume_and_seed(paths):
  source = SegNpzSource(paths)
  first, it = _take(make_seg_dataset(source, CONFIG), 3)
  assert first[0]["points_weak"].shape == (2, N, 3)
  assert first[0]["image_strong"].shape == (2, 64, 64, 3)
  state = it.get_state()
  rest = [next(it) for _ in range(2)]
  it2 = iter(make_seg_dataset(SegNpzSource(paths), CONFIG))
  it2.set_state(state)
  for want in rest:
    assert _equal(next(it2), want)
  again, _ = _take(make_seg_dataset(SegNpzSource(paths), CONFIG), 3)
  assert all(_equal(a, b) for a, b in zip(first, again))
  other, _ = _take(make_seg_dataset(source, dataclasses.replace(CONFIG, seed=1)), 2)
  assert not all(_equal(a, b) for a, b in zip(first, other))


def test_eval_samples(paths):
  samples = seg_eval_samples(paths)
  assert len(samples) == 2 * V
  image, dense = samples[0]
  assert image.shape == (H, W, 3) and image.dtype == np.uint8
  assert dense.shape == (H, W) and dense.dtype == np.uint8


def test_config_and_source_errors(paths, tmp_path):
  with pytest.raises(ValueError, match="height"):
    SegPipelineConfig(height=48)
  with pytest.raises(ValueError, match="sampling"):
    SegPipelineConfig(sampling="fps")
  with pytest.raises(ValueError, match="context"):
    SegPipelineConfig(context="video")
  with pytest.raises(ValueError, match="min_confidence_percentile"):
    make_seg_dataset(SegNpzSource(paths, min_confidence_percentile=0.0), CONFIG)
  (tmp_path / "bad.npz").write_bytes(b"not a zip")
  with pytest.raises(ValueError, match="bad.npz"):
    SegNpzSource([tmp_path / "bad.npz"])


@pytest.mark.skipif(not CAMVID.is_dir(), reason=f"CamVid sample not found at {CAMVID}")
def test_camvid_record_without_points():
  scene = camvid_scene(CAMVID, intrinsics_fov_deg=60.0).select([0, 1, 2])
  v, h, w = scene.labels.shape
  record = seg_record(scene, label_kind="scribbles", label_seed=0,
                      recon_depth=np.zeros((v, h, w), np.float32),
                      recon_confidence=np.zeros((v, h, w), np.float32),
                      recon_world_from_cam=np.tile(np.eye(4), (v, 1, 1)))
  labelled = record["sparse_labels"] != IGNORE_LABEL
  assert labelled.any()
  np.testing.assert_array_equal(record["sparse_labels"][labelled],
                                record["dense_labels"][labelled])
  cloud = lift_record(record)
  assert cloud.num_points == 0
  sample = make_seg_sample(record, cloud, 1, np.random.default_rng(0), CONFIG)
  for key, (shape, dtype) in EXPECTED.items():
    assert sample[key].shape == shape and sample[key].dtype == dtype, key
  assert not sample["points_valid"].any() and np.all(sample["points_pixel"] == -1)
  assert np.all(sample["points_label"] == IGNORE_LABEL)
