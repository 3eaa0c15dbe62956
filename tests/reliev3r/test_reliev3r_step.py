"""The Reliev3R sharded train step: same parameters on 1 and 8 devices, loss goes down."""
import jax
import numpy as np
import optax
import pytest
from flax import nnx

from jaxrecon.data.synthetic import make_scene
from jaxrecon.models.config import ModelConfig
from jaxrecon.models.reliev3r import Reliev3R
from jaxrecon.reliev3r.objective import ObjectiveConfig
from jaxrecon.reliev3r.pipeline import PipelineConfig, make_sample
from jaxrecon.reliev3r.records import default_expert_settings, run_depth_expert, run_tracker, \
    scene_record
from jaxrecon.reliev3r.step import create_state, train_step
from jaxrecon.train.engine import check_finite
from jaxrecon.train.sharding import make_mesh, replicate, shard_batch

MODEL = ModelConfig.tiny(embed_dim=32, depth=1, num_heads=2, dense_hidden=32, camera_hidden=32,
                         image_size=(32, 32))


@pytest.fixture(scope="module")
def batch():
  scene = make_scene(1, num_views=4, height=40, width=40)
  settings = default_expert_settings()
  settings["simulated_tracker"] = {**settings["simulated_tracker"], "num_tracks": 96}
  tracks, vis = run_tracker(scene, "simulated", settings)
  record = scene_record(scene, tracks, vis, run_depth_expert(scene, "simulated", settings))
  cfg = PipelineConfig(num_views=3, height=32, width=32, max_tracks=48)
  samples = [make_sample(record, np.random.default_rng(i), cfg) for i in range(8)]
  return jax.tree.map(lambda *x: np.stack(x), *samples)


def _run(batch, devices, steps=1, tx=None):
  # The objective is blind to a global camera translation (gauge), so some gradients are pure
  # rounding noise, which Adam's first step scales up to +-lr; the device-equality test therefore
  # uses plain SGD, where the update is proportional to the (all-reduced) gradient itself.
  tx = optax.adam(1e-3) if tx is None else tx
  graphdef, state = create_state(Reliev3R(MODEL, rngs=nnx.Rngs(0)), tx)
  mesh = make_mesh(devices)
  state = replicate(state, mesh)
  sharded = shard_batch(batch, mesh)
  history = []
  for _ in range(steps):
    state, metrics = train_step(state, sharded, graphdef=graphdef, tx=tx, config=ObjectiveConfig())
    check_finite(int(state.step), jax.device_get(metrics))
    history.append(float(metrics["loss"]))
  return state, history


def test_one_and_eight_devices_give_the_same_parameters(batch):
  assert jax.device_count() >= 8
  one, _ = _run(batch, jax.devices()[:1], tx=optax.sgd(1e-2))
  eight, _ = _run(batch, jax.devices()[:8], tx=optax.sgd(1e-2))
  assert int(eight.step) == 1
  _, fresh = create_state(Reliev3R(MODEL, rngs=nnx.Rngs(0)), optax.sgd(1e-2))
  moved = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
              for a, b in zip(jax.tree.leaves(fresh.params), jax.tree.leaves(one.params)))
  assert moved > 1e-4  # the step really changed the parameters
  for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(eight.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-5)


def test_loss_decreases_over_a_few_steps(batch):
  _, history = _run(batch, jax.devices()[:2], steps=15)
  assert history[-1] < history[0]
