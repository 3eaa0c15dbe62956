"""Reliev3R objectives on a real pipeline batch: near zero at the truth, gauge, terms, errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrecon.reliev3r.pipeline import PipelineConfig, make_sample
from jaxrecon.reliev3r.records import default_expert_settings, run_depth_expert, run_tracker, \
    scene_record
from jaxrecon.data.synthetic import make_scene
from jaxrecon.geometry.cameras import invert_pose
from jaxrecon.reliev3r.objective import ObjectiveConfig, objective


@pytest.fixture(scope="module")
def batch():
  scene = make_scene(0, num_views=4, height=48, width=48)
  settings = {**default_expert_settings()}
  settings["simulated_tracker"] = {**settings["simulated_tracker"], "num_tracks": 128,
                                   "noise_px": 0.0, "outlier_fraction": 0.0}
  tracks, vis = run_tracker(scene, "simulated", settings)
  record = scene_record(scene, tracks, vis, run_depth_expert(scene, "simulated", settings))
  cfg = PipelineConfig(num_views=4, height=32, width=32, max_tracks=64, zoom=(1.0, 1.0),
                       photometric=0.0)
  sample = make_sample(record, np.random.default_rng(0), cfg)
  return jax.tree.map(lambda x: jnp.asarray(x)[None], sample)


def _truth(batch, scale=1.0):
  """Outputs equal to the ground truth (sky given a far depth), optionally scaled."""
  depth = jnp.where(batch["depth"] > 0, batch["depth"], 50.0) * scale
  world_from_cam = invert_pose(batch["cam_from_world"])
  world_from_cam = world_from_cam.at[..., :3, 3].multiply(scale)
  return {"depth": depth, "confidence": jnp.ones_like(depth), "world_from_cam": world_from_cam}


@pytest.mark.parametrize("form", ["angular", "triangulation", "pixel", "l2_3d"])
def test_registration_term_is_small_at_the_truth_and_ignores_scale(batch, form):
  # Exact tracks; the residual left at the truth comes from sampling the 32x32 depth maps
  # bilinearly at the tracks (measured: 0.5 degrees mean for angular, 1e-7 for triangulation,
  # whose reprojection does not read the depth maps).
  cfg = ObjectiveConfig(depth_loss="off", registration=form)
  loss, metrics = objective(_truth(batch), batch, cfg)
  assert float(metrics["registration/num_terms"]) > 20
  assert float(metrics["registration/inlier_fraction"]) > 0.85
  assert float(metrics["registration/mean_residual"]) < 0.02
  scaled, _ = objective(_truth(batch, scale=7.0), batch, cfg)  # the gauge fixes the scale
  np.testing.assert_allclose(float(scaled), float(loss), rtol=1e-4, atol=1e-7)
  bad = _truth(batch)
  bad["world_from_cam"] = bad["world_from_cam"].at[:, 1, :3, 3].add(0.5)
  assert float(objective(bad, batch, cfg)[0]) > 1.5 * float(loss)


def test_weak_objective_terms_and_gradients(batch):
  outputs = _truth(batch)
  loss, metrics = objective(outputs, batch, ObjectiveConfig())
  assert set(metrics) >= {"depth", "registration", "depth/data_term", "registration/mean_residual"}
  np.testing.assert_allclose(float(loss), float(metrics["depth"] + metrics["registration"]),
                             rtol=1e-6)
  grads = jax.grad(lambda o: objective(o, batch, ObjectiveConfig())[0])(outputs)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  assert float(jnp.abs(grads["depth"]).max()) > 0


def test_supervised_sibling_is_zero_at_the_truth(batch):
  cfg = ObjectiveConfig(supervised=True)
  loss, metrics = objective(_truth(batch), batch, cfg)
  assert abs(float(loss)) < 1e-4 and "supervised/depth_term" in metrics
  worse = _truth(batch)
  worse["depth"] = worse["depth"] * (1 + 0.2 * jnp.sin(jnp.arange(32.0)))[None, None, None, :]
  assert float(objective(worse, batch, cfg)[0]) > float(loss) + 1e-3


def test_bad_configs():
  with pytest.raises(ValueError, match="depth_loss"):
    ObjectiveConfig(depth_loss="l1")
  with pytest.raises(ValueError, match="registration"):
    ObjectiveConfig(registration="magic")
  with pytest.raises(ValueError, match="every term"):
    ObjectiveConfig(depth_loss="off", registration="off")
