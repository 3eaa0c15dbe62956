"""Reliev3R: `python -m jaxrecon.main --config=configs/reliev3r.py[:VARIANT] --workdir=DIR`.

Variants:
  demo (default): tiny model, 4 views of 64x64, synthetic scenes with SIFT tracks and the simulated
    monocular expert (cached into <workdir>/cache on first use), a few hundred steps on a CPU.
  demo_supervised: the same budget for the fully supervised sibling (ground-truth depth and poses).
  paper: ~450M-parameter model, 8 views, AdamW lr 1e-4 cosine, lambda 0.5, alpha 1.0, batch 64;
    data = a pseudo-label cache made by `python -m jaxrecon.prepare` (set data.cache).
Any field can be overridden on the command line, e.g. --config.objective.registration=triangulation.

Registration forms on one scale (objective.registration; `jaxrecon.losses.registration`): every
form's residual r is dimensionless, goes through the same Cauchy kernel of scale s =
objective.robust_scale (1 degree = 0.01745) and is divided by s^2, so the registration term is
  lambda * mean rho(r) / s^2  ~  (lambda / 2) (r / s)^2 for r << s,  ~ (lambda / 2) log(r^2 / s^2)
beyond. With lambda = reg_weight = 0.5 the effective weight is 0.25 per (r / s)^2 for every form:
  angular        r = angle at camera i between its ray and the other view's point: 0.25 per deg^2;
  pixel          r = reprojection error / focal length (the small-angle equivalent): 0.25 per
                 (0.01745 f pixels)^2, i.e. per deg^2;
  triangulation  r = reprojection error / focal of the triangulated track, plus (depth_weight 1)
                 the same kernel on the relative depth disagreement: 0.25 per deg^2 + 0.25 per
                 (1.75 % depth error)^2;
  l2_3d          r = |X_i - X_j| in units of the scene's mean depth (the objective normalises the
                 prediction to unit mean depth): 0.25 per (1.75 % of the mean depth)^2, which is
                 what a 1 degree angular error at the mean depth displaces a point by.
The scene cannot shrink to lower "l2_3d": its depth is normalised (and its pose gauge fixed) before
the losses (`reliev3r.objective.canonical_frame`); at the same relative error the four terms agree
within a factor 3 (tests/reliev3r/test_reliev3r_objective.py: measured 0.10-0.16 at 0.5 degree
camera errors). Before #11, l2_3d was 0.5 |X_i - X_j|^2, neither divided by s^2 nor robustified,
~75x weaker than the others (#11's review): its ablation row measured "depth only".
The gauge anchor (objective.gauge_weight 0.1) pins the network's raw frame to the canonical one
(mean camera at the origin, mean rotation I, mean depth 1) and changes no loss optimum.
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
  # At 96x96 a few drawn scenes (3 of the 168 at seed 0) leave no image pair with the matcher's
  # 15 verified inliers, so they have no track; training cannot use a scene without tracks, so
  # the demo leaves such scenes out with a warning instead of failing the whole run.
  prepare["on_bad_scene"] = "skip"
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
  # Device mesh ("data", "fsdp"), data = devices / fsdp: parameters, optimiser state (and EMA
  # teachers) sharded over fsdp devices, the batch over all (jaxrecon.train.sharding); 1 = pure
  # data parallelism, 0 = auto (config_check.mesh_fsdp). fsdp must divide the device count and pipeline.batch_size (per process) be
  # a multiple of this process's devices.
  c.mesh = dict(fsdp=1)
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
    # Auto: fsdp = the largest of 1, 2, 4, 8 dividing one host's devices (8 x 8 on 64 devices:
    # 0.85x the per-device peak of data parallelism; 1 x 64 is 1.8x,
    # experiments/bench_sharding_memory.md), so the same command runs on 1 GPU or a pod.
    c.mesh.fsdp = 0
    c.steps = 100_000
    c.log_every = 50
    c.checkpoint_every = 2000
    c.eval_every = 5000
  c.lock()
  return c
