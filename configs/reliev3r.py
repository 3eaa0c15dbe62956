"""Reliev3R: `python -m jaxrecon.main --config=configs/reliev3r.py[:VARIANT] --workdir=DIR`.

Variants:
  demo (default): tiny model, 4 views of 64x64, synthetic scenes with SIFT tracks and the simulated
    monocular expert (cached into <workdir>/cache on first use), a few hundred steps on a CPU.
  demo_supervised: the same budget for the fully supervised sibling (ground-truth depth and poses).
  paper: ~450M-parameter model, 8 views, AdamW lr 1e-4 cosine, lambda 0.5, alpha 1.0, batch 64;
    data = a pseudo-label cache made by `python -m jaxrecon.prepare` (set data.cache).
Any field can be overridden on the command line, e.g. --config.objective.registration=triangulation.
"""
import dataclasses

import ml_collections

from jaxrecon.reliev3r.pipeline import PipelineConfig
from jaxrecon.reliev3r.records import default_expert_settings
from jaxrecon.models.config import ModelConfig
from jaxrecon.reliev3r.objective import ObjectiveConfig


def _prepare_demo():
  prepare = default_expert_settings()
  prepare.update(source="synthetic", tracker="sift", depth_expert="simulated",
                 synthetic=dict(num_scenes=168, seed=0, num_views=6, height=96, width=96,
                                path="orbit"),
                 folder=dict(root=""), depth_dir="mono_depth", disparity=False, png_scale=0.001)
  prepare["matcher"]["window"] = 3
  prepare["tracks"]["max_tracks"] = 512
  return prepare


def get_config(arg: str = "demo"):
  variants = ("demo", "demo_supervised", "paper")
  if arg not in variants:
    raise ValueError(f"configs/reliev3r.py: variant must be one of {variants}, got {arg!r}")
  c = ml_collections.ConfigDict()
  c.task = "reliev3r"
  c.seed = 0
  c.init_from = ""                 # another run's workdir/checkpoints (or a step folder in it)
  c.data = dict(cache="", num_eval_scenes=8, prepare=_prepare_demo())
  c.pipeline = dataclasses.asdict(PipelineConfig(num_views=4, height=64, width=64,
                                                 max_tracks=256, batch_size=4, worker_count=0))
  c.model = dataclasses.asdict(ModelConfig.tiny())
  c.objective = dataclasses.asdict(ObjectiveConfig())
  c.optim = dict(learning_rate=1e-3, warmup_steps=50, weight_decay=0.01, clip_norm=1.0)
  c.steps = 600
  c.log_every = 25
  c.checkpoint_every = 100
  c.keep_checkpoints = 3
  c.eval_every = 200
  if arg == "demo_supervised":
    c.objective.supervised = True
  if arg == "paper":
    c.model = dataclasses.asdict(ModelConfig.paper())
    c.pipeline.update(num_views=8, height=518, width=518, max_tracks=2048, batch_size=64,
                      worker_count=8)
    c.objective.update(alpha=1.0, reg_weight=0.5)
    c.optim = dict(learning_rate=1e-4, warmup_steps=2000, weight_decay=0.05, clip_norm=1.0)
    c.steps = 100_000
    c.log_every = 50
    c.checkpoint_every = 2000
    c.eval_every = 5000
  c.lock()
  return c
