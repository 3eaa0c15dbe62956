"""`python -m jaxrecon.main --config=configs/reliev3r.py[:VARIANT] --workdir=DIR [--mode=train]`.

Trains (resuming from the workdir when it holds checkpoints) or evaluates a run. On several hosts
(a TPU pod slice, GPU nodes) start the same command on every host; pass --distributed (or set
JAX_COORDINATOR_ADDRESS) so that jax.distributed.initialize() connects them first.
"""
import os

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from jaxrecon.train.loop import evaluate_run, train

_CONFIG = config_flags.DEFINE_config_file("config", None, "config file, e.g. configs/reliev3r.py",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "run folder: checkpoints, metrics, evaluation")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval"], "train (and resume) or evaluate")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "call jax.distributed.initialize()")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # Orbax's per-save INFO lines would drown the progress
  if _DISTRIBUTED.value or os.environ.get("JAX_COORDINATOR_ADDRESS"):
    jax.distributed.initialize()
  if _MODE.value == "train":
    train(_CONFIG.value, _WORKDIR.value)
  else:
    evaluate_run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
