"""grain pipeline: fixed shapes, geometric consistency of crops, exact resume, worker independence."""
import numpy as np
import pytest

from jaxrecon.reliev3r.pipeline import NpzSource, PipelineConfig, make_dataset, make_sample

V, H, W, T = 6, 48, 64, 120


def _record(seed, views=V):
  """Cameras on an arc looking at a cloud of points; tracks are exact projections. The image
  encodes its own pixel coordinates (R = u / 255 * 4, G = v / 255 * 4) to check the crop warp."""
  rng = np.random.default_rng(seed)
  k = np.array([[50.0, 0, (W - 1) / 2], [0, 50.0, (H - 1) / 2], [0, 0, 1]])
  pts = rng.uniform(-1, 1, (T, 3))
  poses = []
  for i in range(views):
    a = np.deg2rad(-15 + 30 * i / (views - 1))
    r = np.array([[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]])
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = r, [0, 0, 5.0]
    poses.append(pose)
  poses = np.stack(poses)
  cam = np.einsum("vij,tj->tvi", poses[:, :3, :3], pts) + poses[None, :, :3, 3]
  pix = np.einsum("ij,tvj->tvi", k, cam / cam[..., 2:])[..., :2]
  vis = np.all((pix >= 0) & (pix <= [W - 1, H - 1]), -1) & (rng.uniform(size=(T, views)) > 0.2)
  u, v = np.meshgrid(np.arange(W), np.arange(H))
  img = np.stack([u * 4, v * 4, np.full_like(u, 128)], -1).clip(0, 255).astype(np.uint8)
  return {"images": np.broadcast_to(img, (views, H, W, 3)).copy(),
          "intrinsics": np.tile(k, (views, 1, 1)),
          "mono_depth": rng.uniform(1, 5, (views, H, W)).astype(np.float32),
          "tracks": np.where(vis[..., None], pix, np.nan), "visibility": vis,
          "cam_from_world": poses, "points": pts}


@pytest.fixture(scope="module")
def source():
  return [_record(i) for i in range(5)]


CONFIG = PipelineConfig(num_views=3, height=32, width=40, max_tracks=64, batch_size=2,
                        photometric=0.0, zoom=(1.0, 1.5))


def _batches(ds, n):
  it = iter(ds)
  return [next(it) for _ in range(n)], it


def _equal(a, b):
  return a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)


def test_fixed_shapes_and_padding(source):
  (batch,), _ = _batches(make_dataset(source, CONFIG), 1)
  assert batch["images"].shape == (2, 3, 32, 40, 3) and batch["images"].dtype == np.float32
  assert batch["intrinsics"].shape == (2, 3, 3, 3)
  assert batch["tracks"].shape == (2, 64, 3, 2) and batch["visibility"].shape == (2, 64, 3)
  assert batch["mono_depth"].shape == (2, 3, 32, 40)
  assert batch["cam_from_world"].shape == (2, 3, 4, 4)
  vis = batch["visibility"]
  counts = vis.sum(-1)
  assert np.all((counts == 0) | (counts >= 2))  # a track is padding or seen at least twice
  assert np.all(np.isnan(batch["tracks"][~vis]))
  assert np.all(np.isfinite(batch["tracks"][vis]))
  assert np.all((batch["tracks"][vis] >= 0) & (batch["tracks"][vis] <= [39, 31]))


def test_crop_keeps_the_geometry(source):
  """Projecting the record's 3D points with the sample's intrinsics and poses gives the sample's
  track pixels, and the image at those pixels shows the source pixel they came from."""
  record = source[0]
  sample = make_sample(record, np.random.default_rng(3), CONFIG)
  k, pose = sample["intrinsics"], sample["cam_from_world"]
  # Recover which record tracks were taken by matching exact projections.
  cam = np.einsum("vij,tj->tvi", pose[:, :3, :3], record["points"]) + pose[None, :, :3, 3]
  proj = np.einsum("vij,tvj->tvi", k, cam / cam[..., 2:])[..., :2]
  vis = sample["visibility"]
  for tr, vi in zip(sample["tracks"], vis):
    if not vi.any():
      continue
    err = np.nanmax(np.abs(proj[:, vi] - tr[vi]), axis=(1, 2))
    assert err.min() < 1e-3
  # Image content: R/G encode the source pixel (u, v) * 4. At a sample pixel p the source pixel is
  # the inverse map of crop_resize_camera.
  sample_img = sample["images"][0] * 255
  k_src = record["intrinsics"][0]
  for (pu, pv) in [(5.0, 7.0), (20.0, 15.0), (33.0, 25.0)]:
    # pixel -> normalised ray with the sample K -> source pixel with the source K
    x = np.linalg.solve(k[0].astype(np.float64), [pu, pv, 1.0])
    su, sv = (k_src @ x)[:2]
    np.testing.assert_allclose(sample_img[int(pv), int(pu), :2], [su * 4, sv * 4], atol=2.5)


def test_resume_from_saved_state_is_exact(source):
  ds = make_dataset(source, CONFIG)
  first, it = _batches(ds, 3)
  state = it.get_state()
  rest = [next(it) for _ in range(4)]
  it2 = iter(make_dataset(source, CONFIG))
  it2.set_state(state)
  for want in rest:
    assert _equal(next(it2), want)
  # and the same seed from scratch gives the same stream
  again, _ = _batches(make_dataset(source, CONFIG), 3)
  assert all(_equal(a, b) for a, b in zip(first, again))


def test_seed_changes_the_stream(source):
  a, _ = _batches(make_dataset(source, CONFIG), 2)
  b, _ = _batches(make_dataset(source, PipelineConfig(**{**CONFIG.__dict__, "seed": 1})), 2)
  assert not all(_equal(x, y) for x, y in zip(a, b))


def test_worker_count_does_not_change_batches(source):
  a, _ = _batches(make_dataset(source, CONFIG), 3)
  cfg = PipelineConfig(**{**CONFIG.__dict__, "worker_count": 2})
  b, _ = _batches(make_dataset(source, cfg), 3)
  assert all(_equal(x, y) for x, y in zip(a, b))


def test_two_processes_feed_the_one_process_batch(source):
  """Process p's rows of every batch are rows [p * b, (p + 1) * b) of the batch one process with
  2 x b makes (same shuffle, same per-sample randomness), so the run's samples do not depend on
  the process count; and no sample is made by both processes."""
  def stream(batch_size, process_index=0, process_count=1):
    cfg = PipelineConfig(**{**CONFIG.__dict__, "batch_size": batch_size})
    return _batches(make_dataset(source, cfg, process_index=process_index,
                                 process_count=process_count), 3)[0]
  one = stream(2)
  halves = [stream(1, p, 2) for p in (0, 1)]
  for k, batch in enumerate(one):
    for key, value in batch.items():
      joined = np.concatenate([halves[0][k][key], halves[1][k][key]])
      np.testing.assert_array_equal(joined, value, err_msg=f"batch {k}, {key}")
    assert not np.array_equal(halves[0][k]["images"], halves[1][k]["images"])


def test_random_view_selection_prefers_overlap(source):
  cfg = PipelineConfig(**{**CONFIG.__dict__, "view_selection": "random", "min_shared_tracks": 5})
  sample = make_sample(source[1], np.random.default_rng(0), cfg)
  assert sample["visibility"].sum() > 0


def test_npz_source_round_trip_and_errors(tmp_path, source):
  paths = []
  for i, rec in enumerate(source[:2]):
    paths.append(tmp_path / f"scene{i}.npz")
    np.savez(paths[-1], **rec)
  src = NpzSource(paths)
  assert len(src) == 2 and np.array_equal(src[1]["images"], source[1]["images"])
  (tmp_path / "bad.npz").write_bytes(b"not a zip")
  with pytest.raises(ValueError, match="bad.npz"):
    NpzSource([tmp_path / "bad.npz"])[0]
  # Errors found in a record name its file (issue #10), also before the first sample.
  broken = dict(source[0])
  broken["mono_depth"] = broken["mono_depth"][:, :4]
  np.savez(tmp_path / "broken.npz", **broken)
  with pytest.raises(ValueError, match=r"broken\.npz: mono_depth has shape"):
    make_dataset(NpzSource([paths[0], tmp_path / "broken.npz"]), CONFIG)
  cfg = PipelineConfig(**{**CONFIG.__dict__, "num_views": V + 1})
  with pytest.raises(ValueError, match=rf"scene0\.npz: {V} views, fewer than the pipeline's "
                                       rf"num_views={V + 1}"):
    make_dataset(NpzSource(paths), cfg)


def test_bad_config_and_records(source):
  with pytest.raises(ValueError, match="view_selection"):
    PipelineConfig(view_selection="all")
  with pytest.raises(ValueError, match="zoom"):
    PipelineConfig(zoom=(0.5, 1.0))
  broken = dict(source[0])
  del broken["tracks"]
  with pytest.raises(ValueError, match="tracks"):
    make_dataset([broken], CONFIG)
  with pytest.raises(ValueError, match="num_views"):
    make_sample(source[0], np.random.default_rng(0),
                PipelineConfig(**{**CONFIG.__dict__, "num_views": V + 1}))
