"""`python -m jaxrecon.main --config=configs/{reliev3r,rewis3d}.py[:VARIANT] --workdir=DIR
[--mode=train|eval]`.

The config's `task` picks the method (a folder of the package: its `train` and `evaluate`
functions run it on the one training engine, `jaxrecon.train.engine`). Trains (resuming from the
workdir when it holds checkpoints) or evaluates a run. On several hosts (a TPU pod slice, GPU
nodes) start the same command on every host; pass --distributed (or set JAX_COORDINATOR_ADDRESS)
so that jax.distributed.initialize() connects them first.
"""
import os

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from jaxrecon.reliev3r import task as reliev3r
from jaxrecon.rewis3d import task as rewis3d

_CONFIG = config_flags.DEFINE_config_file("config", None, "config file, e.g. configs/reliev3r.py",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "run folder: checkpoints, metrics, evaluation")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval"], "train (and resume) or evaluate")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "call jax.distributed.initialize()")
flags.mark_flags_as_required(["config", "workdir"])

# config.task -> (train, evaluate) of (config, workdir); a new method is one folder and one line.
TASKS = {"reliev3r": (reliev3r.train, reliev3r.evaluate_run),
         "rewis3d": (rewis3d.train_segmentation, rewis3d.evaluate_segmentation)}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # Orbax's per-save INFO lines would drown the progress
  if _DISTRIBUTED.value or os.environ.get("JAX_COORDINATOR_ADDRESS"):
    jax.distributed.initialize()
  config = _CONFIG.value
  task = config.get("task", "reliev3r")
  if task not in TASKS:
    raise app.UsageError(f"config.task: expected one of {sorted(TASKS)}, got {task!r}")
  train, evaluate = TASKS[task]
  if _MODE.value == "train":
    train(config, _WORKDIR.value)
  else:
    evaluate(config, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
