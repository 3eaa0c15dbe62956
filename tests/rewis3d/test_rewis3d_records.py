"""Segmentation records: cache round trip, ground-truth and simulated reconstructions, errors."""
import numpy as np
import pytest
from scipy.stats import spearmanr

from jaxrecon.data.cache import cache_scenes
from jaxrecon.data.scene import IGNORE_LABEL
from jaxrecon.data.sparse_labels import coarse
from jaxrecon.rewis3d.records import (build_seg_jobs, check_seg_record, default_seg_settings,
                                       gt_reconstruction, reconstruction_difficulty, seg_provenance,
                                       seg_record, simulated_reconstruction)
from jaxrecon.data.synthetic import MIRROR, make_scene

V, H, W = 3, 64, 64


def _settings(**changes):
  settings = default_seg_settings()
  settings["synthetic"].update(num_scenes=2, num_views=V, height=H, width=W)
  settings.update(changes)
  return settings


@pytest.fixture(scope="module")
def scene():
  # mirror_prob raised so the mirror checks have pixels to look at.
  return make_scene(0, num_views=V, height=H, width=W, mirror_prob=0.5)


def test_cache_round_trip(tmp_path):
  settings = _settings(label_kind="scribbles")
  jobs = build_seg_jobs(settings)
  assert [name for name, _ in jobs] == ["synthetic-orbit-00000", "synthetic-orbit-00001"]
  report = cache_scenes(jobs, tmp_path, provenance=settings, progress=False)
  assert report.written == [name for name, _ in jobs] and not report.failed
  again = jobs[0][1]()  # a job is deterministic
  with np.load(tmp_path / "synthetic-orbit-00000.npz", allow_pickle=False) as data:
    record = {k: data[k] for k in data.files}
  check_seg_record(record)
  assert record.keys() == again.keys()
  for key in record:
    np.testing.assert_array_equal(record[key], again[key], err_msg=key)
  assert record["images"].shape == (V, H, W, 3) and record["images"].dtype == np.uint8
  assert record["dense_labels"].dtype == np.uint8 and record["sparse_labels"].dtype == np.uint8
  assert record["intrinsics"].dtype == np.float64
  assert record["recon_depth"].dtype == np.float32
  assert record["recon_confidence"].dtype == np.float32
  assert record["recon_world_from_cam"].shape == (V, 4, 4)
  assert str(record["name"]) == "synthetic-orbit-0"
  sparse, dense = record["sparse_labels"], record["dense_labels"]
  labelled = sparse != IGNORE_LABEL
  assert 0 < labelled.mean() < 0.5
  np.testing.assert_array_equal(sparse[labelled], dense[labelled])
  # the two scenes got different label draws
  with np.load(tmp_path / "synthetic-orbit-00001.npz", allow_pickle=False) as data:
    assert not np.array_equal(data["sparse_labels"] != IGNORE_LABEL, labelled)


def test_gt_reconstruction(scene):
  depth, confidence, world_from_cam = gt_reconstruction(scene)
  np.testing.assert_array_equal(depth, scene.depth)
  assert confidence.dtype == np.float32 and np.all(confidence == 1)
  np.testing.assert_allclose(world_from_cam @ scene.cam_from_world, np.tile(np.eye(4), (V, 1, 1)),
                             atol=1e-9)


def test_simulated_reconstruction(scene):
  depth, confidence, world_from_cam = simulated_reconstruction(scene, np.random.default_rng(0))
  assert depth.shape == confidence.shape == (V, H, W) and depth.dtype == np.float32
  sky = scene.depth == 0
  assert sky.any() and np.all(depth[sky] == 0) and np.all(confidence[sky] == 0)
  valid = ~sky
  assert np.all(depth[valid] > 0) and np.all(confidence >= 0)
  rel = np.abs(depth[valid] - scene.depth[valid]) / scene.depth[valid]
  rho = spearmanr(confidence[valid], -rel).statistic
  print(f"Spearman(confidence, -|relative depth error|) = {rho:.3f}; median error "
        f"{np.median(rel):.3f}")
  assert 0.3 < rho < 0.95  # correlated, not an oracle
  # the least confident quarter has a larger error than the most confident quarter
  lo, hi = np.quantile(confidence[valid], [0.25, 0.75])
  assert np.median(rel[confidence[valid] <= lo]) > 2 * np.median(rel[confidence[valid] >= hi])
  mirror = (scene.labels == MIRROR)[valid]
  assert mirror.sum() > 50
  print(f"mean confidence: mirrors {confidence[valid][mirror].mean():.3f}, others "
        f"{confidence[valid][~mirror].mean():.3f}")
  assert confidence[valid][mirror].mean() < 0.7 * confidence[valid][~mirror].mean()
  assert np.median(rel[mirror]) > 0.1  # mirrors' depth is badly wrong
  gt_pose = np.linalg.inv(scene.cam_from_world)
  offset = np.abs(world_from_cam - gt_pose).max()
  assert 0 < offset < 0.2
  # same seed, same reconstruction
  again = simulated_reconstruction(scene, np.random.default_rng(0))
  for a, b in zip((depth, confidence, world_from_cam), again):
    np.testing.assert_array_equal(a, b)


def test_difficulty_marks_edges_and_mirrors(scene):
  difficulty = reconstruction_difficulty(scene.depth, scene.intrinsics, scene.labels)
  assert difficulty.shape == (V, H, W) and difficulty.min() >= 0 and difficulty.max() <= 1
  assert np.all(difficulty[scene.depth == 0] == 0)
  assert np.all(difficulty[(scene.labels == MIRROR) & (scene.depth > 0)] == 1)


def test_seg_record_validation(scene):
  depth, confidence, world_from_cam = gt_reconstruction(scene)
  kwargs = dict(label_kind="points", label_seed=3, recon_depth=depth,
                recon_confidence=confidence, recon_world_from_cam=world_from_cam)
  record = seg_record(scene, **kwargs)
  check_seg_record(record)
  np.testing.assert_array_equal(record["sparse_labels"], seg_record(scene, **kwargs)["sparse_labels"])
  with pytest.raises(ValueError, match="recon_depth"):
    seg_record(scene, **{**kwargs, "recon_depth": depth[:, :-1]})
  with pytest.raises(ValueError, match="recon_confidence"):
    seg_record(scene, **{**kwargs, "recon_confidence": -confidence})
  with pytest.raises(ValueError, match="label_kind"):
    seg_record(scene, **{**kwargs, "label_kind": "boxes"})
  assert "up" not in record
  np.testing.assert_allclose(seg_record(scene, **kwargs, up=[0.0, -2.0, 0.0])["up"], [0, -1, 0])
  with pytest.raises(ValueError, match="up"):
    seg_record(scene, **kwargs, up=[0.0, 0.0, 0.0])
  broken = dict(record)
  del broken["sparse_labels"]
  with pytest.raises(ValueError, match="sparse_labels"):
    check_seg_record(broken)


def test_bad_settings():
  with pytest.raises(ValueError, match="CamVid"):
    build_seg_jobs(_settings(source="camvid", recon="gt"))
  with pytest.raises(ValueError, match="CamVid"):
    build_seg_jobs(_settings(source="camvid", recon="simulated"))
  for recon in ("ffrm", "mvs"):
    with pytest.raises(ValueError, match=f"{recon}_records"):
      build_seg_jobs(_settings(recon=recon))
  with pytest.raises(ValueError, match="recon"):
    build_seg_jobs(_settings(recon="colmap"))
  with pytest.raises(ValueError, match="source"):
    build_seg_jobs(_settings(source="kitti"))
  with pytest.raises(ValueError, match="label_kind"):
    build_seg_jobs(_settings(label_kind="boxes"))
  with pytest.raises(ValueError, match=r"label_options.points: unknown option\(s\) \['margn'\]"):
    build_seg_jobs(_settings(label_kind="points", label_options={"points": {"margn": 1.0}}))


def test_label_options_reach_the_rule_and_the_provenance():
  settings = _settings(label_kind="coarse")
  settings["label_options"]["coarse"]["margin"] = 3.0
  record = build_seg_jobs(settings)[0][1]()
  for dense, sparse in zip(record["dense_labels"], record["sparse_labels"]):
    np.testing.assert_array_equal(sparse, coarse(dense, margin=3.0))
  default = build_seg_jobs(_settings(label_kind="coarse"))[0][1]()
  assert (np.mean(record["sparse_labels"] != IGNORE_LABEL)
          > np.mean(default["sparse_labels"] != IGNORE_LABEL))
  # Only the chosen rule's changed options are recorded: a cache made before the options existed
  # (settings without "label_options") keeps matching its default settings.
  assert seg_provenance(settings)["label_options"] == {"coarse": {"margin": 3.0}}
  unchanged = _settings(label_kind="coarse")
  unchanged["label_options"]["points"]["margin"] = 1.0  # another rule's option: no effect
  before = {k: v for k, v in unchanged.items() if k not in ("label_options", "mvs")}
  assert seg_provenance(unchanged) == before
  # The "mvs" source's options are recorded only where that source is used (older caches of the
  # other sources, made before it existed, keep matching).
  assert seg_provenance({**unchanged, "recon": "mvs"})["mvs"] == unchanged["mvs"]
  np.testing.assert_array_equal(build_seg_jobs(unchanged)[0][1]()["sparse_labels"],
                                default["sparse_labels"])


def test_mvs_provenance_records_the_library_settings_as_json():
  """With recon "mvs" the provenance also holds the fit / sweep / matcher settings the records
  are made with, as plain JSON values (the cache compares it with its provenance.json as read
  back: a tuple would never equal the list it is stored as)."""
  import dataclasses
  import json

  from jaxrecon.experts import MatcherSettings
  from jaxrecon.fit import FitSettings
  settings = {**_settings(label_kind="scribbles"), "recon": "mvs"}
  record = seg_provenance(settings)
  assert json.loads(json.dumps(record)) == record
  library = record["mvs_library"]
  assert library["fit"]["conflict_ratio"] == FitSettings().conflict_ratio
  assert library["fit"]["refine_focal"] == bool(settings["mvs"]["approximate_intrinsics"])
  assert library["fit"]["stages_px"] == list(FitSettings().stages_px)
  assert library["matcher"] == json.loads(json.dumps(dataclasses.asdict(MatcherSettings())))
  assert library["mvs"]["num_hypotheses"] == settings["mvs"]["num_hypotheses"]
  assert "mvs_library" not in seg_provenance({**settings, "recon": "gt"})
