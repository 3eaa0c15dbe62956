"""The "mvs" reconstruction source of Rewis3d records (tracks -> per-scene fit -> plane sweep):
its depth and cameras against the procedural world's ground truth, the record's layout, and that
it is what the trainer builds for recon "mvs"."""
import numpy as np
import pytest

from jaxrecon.data.synthetic import make_scene
from jaxrecon.data.transforms import resize
from jaxrecon.geometry.cameras import up_from_cameras
from jaxrecon.rewis3d.estimated import Estimate, estimated_record
from jaxrecon.rewis3d.mvs_records import build_mvs_jobs
from jaxrecon.rewis3d.records import check_seg_record, default_seg_settings
from jaxrecon.rewis3d.task import _seg_jobs
from tests.fit.test_fit_cases import rotation_errors_deg

SEED, VIEWS, SIZE = 3, 6, 128


def _settings(**mvs):
  settings = default_seg_settings()
  settings.update(source="synthetic", recon="mvs", label_kind="scribbles")
  settings["synthetic"].update(num_scenes=1, seed=SEED, num_views=VIEWS, height=SIZE, width=SIZE,
                               path="orbit")
  settings["mvs"].update(tracker="sift", height=SIZE, width=SIZE, approximate_intrinsics=False,
                         num_hypotheses=32, **mvs)
  return settings


@pytest.mark.slow
def test_mvs_record_of_a_synthetic_clip_matches_its_geometry():
  settings = _settings()
  jobs = build_mvs_jobs(settings)
  assert [name for name, _ in jobs] == [name for name, _ in _seg_jobs(settings)]
  ((name, job),) = jobs
  assert name == f"synthetic-orbit-{SEED:05d}"
  record = job()
  check_seg_record(record, name)
  scene = make_scene(SEED, num_views=VIEWS, height=SIZE, width=SIZE, path="orbit")
  np.testing.assert_array_equal(record["images"], scene.images)
  np.testing.assert_allclose(record["intrinsics"], scene.intrinsics)   # the focal as given
  # Depth in the fit's gauge: one global scale to the truth (median ratio), then relative errors.
  gt = np.asarray(scene.depth, np.float64)
  est = record["recon_depth"].astype(np.float64)
  both = (est > 0) & np.isfinite(gt) & (gt > 0)
  assert both.sum() >= 0.3 * np.sum(np.isfinite(gt) & (gt > 0)), both.mean()
  scale = np.median(gt[both] / est[both])
  rel = np.abs(scale * est[both] - gt[both]) / gt[both]
  assert np.median(rel) < 0.05, np.median(rel)
  assert np.all(record["recon_confidence"][est == 0] == 0)
  # The cameras, after a similarity alignment: at 128 x 128 pixels (focal 111 px, a pixel is
  # about 0.5 degrees) within 2 pixels' worth; measured 0.58-1.15 deg, median 0.80.
  errors = rotation_errors_deg(np.linalg.inv(record["recon_world_from_cam"]),
                               np.asarray(scene.cam_from_world, np.float64))
  assert np.median(errors) < 1.0 and errors.max() < 2.0, errors

def test_estimated_record_resamples_maps_scales_the_focal_and_skips_unplaced_views():
  scene = make_scene(0, num_views=3, height=64, width=64)
  world_from_cam = np.linalg.inv(np.asarray(scene.cam_from_world, np.float64))
  depth = np.full((3, 32, 32), 2.0, np.float32)
  depth[:, :, :16] = 0.0                       # no point on the left half
  depth[2] = 0.0                               # view 2 was not placed
  confidence = np.ones_like(depth)
  registered = np.array([True, True, False])
  estimate = Estimate(depth, confidence, world_from_cam, registered, focal_scale=1.1)
  record = estimated_record(scene, estimate, _settings(), size=(48, 48))
  assert record["recon_depth"].shape == (3, 48, 48)
  # Nearest resampling: depths stay 2 or 0 (no blend across the edge), confidence 0 where depth 0.
  assert set(np.unique(record["recon_depth"])) == {0.0, 2.0}
  assert np.all(record["recon_confidence"][record["recon_depth"] == 0] == 0)
  assert np.all(record["recon_depth"][2] == 0)
  k48 = np.asarray(resize(scene, (48, 48)).intrinsics, np.float64)
  np.testing.assert_allclose(record["intrinsics"][:, :2, :2], 1.1 * k48[:, :2, :2], rtol=1e-6)
  np.testing.assert_allclose(record["intrinsics"][:, :2, 2], k48[:, :2, 2], rtol=1e-6)
  # "up" from the placed views only.
  np.testing.assert_allclose(record["up"], up_from_cameras(world_from_cam[:2]), atol=1e-6)
