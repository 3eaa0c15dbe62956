"""The Reliev3R train step: the loss goes down, no float64 leaks. One device against 8 (data
parallel and fsdp, shipped AdamW) is tests/train/test_sharding.py's Reliev3R test."""
import pathlib
import sys

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
from jaxrecon.train.engine import check_finite, make_optimizer
from jaxrecon.train.sharding import make_mesh, replicate, shard_batch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from configs import reliev3r as reliev3r_config  # noqa: E402  (the real config file, as data)

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


def shipped_optimizer():
  """The trainer's optimiser (clip + AdamW + schedule) with the demo config's settings; no warm-up,
  whose first step would have learning rate 0 and update nothing."""
  optim = dict(reliev3r_config.get_config("demo").optim.to_dict(), warmup_steps=0)
  return make_optimizer(optim, steps=10)


def _run(batch, devices, steps=1):
  tx = optax.adam(1e-3)
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


def test_loss_decreases_over_a_few_steps(batch):
  _, history = _run(batch, jax.devices()[:2], steps=15)
  assert history[-1] < history[0]


def test_train_step_makes_no_float64(batch):
  """With float64 enabled, a float64 leak in the library (a numpy float64
  constant, a Python float promoted by a float64 array) would show in the step's outputs: every
  floating array of the new state and the metrics is float32 (the model's compute dtype is
  float32 here; parameters are always float32)."""
  tx = shipped_optimizer()
  graphdef, state = create_state(Reliev3R(MODEL, rngs=nnx.Rngs(0)), tx)
  with jax.enable_x64(True):  # whether or not the suite enables it
    out = jax.eval_shape(lambda s, b: train_step(s, b, graphdef=graphdef, tx=tx,
                                                 config=ObjectiveConfig()), state, batch)
  floats = {jax.tree_util.keystr(p): x.dtype for p, x in jax.tree_util.tree_leaves_with_path(out)
            if jax.numpy.issubdtype(x.dtype, jax.numpy.floating)}
  assert floats and all(d == np.float32 for d in floats.values()), {
      k: d for k, d in floats.items() if d != np.float32}
