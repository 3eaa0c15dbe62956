"""`python -m jaxrecon.main --config=configs/{reliev3r,rewis3d}.py[:VARIANT] --workdir=DIR
[--mode=train|eval]`.

The config's `task` picks the method (a folder of the package: its `train` and `evaluate`
functions run it on the one training engine, `jaxrecon.train.engine`). Trains (resuming from the
workdir when it holds checkpoints) or evaluates a run. On several hosts (a TPU pod slice, GPU
nodes) start the same command on every host; pass --distributed (or set JAX_COORDINATOR_ADDRESS)
so that jax.distributed.initialize() connects them first.

The whole config is validated, and compared with the config the workdir's checkpoints were trained
with, before anything is built or written; a mistake ends in one line on stderr (`jaxrecon.cli`).
`--mode=eval` reads the run's own config.json (any --config.<field> overrides given are applied on
top of it, e.g. another data.cache) and refuses a workdir without a checkpoint unless
--allow_untrained.
"""
from absl import flags, logging
from ml_collections import config_flags

from jaxrecon import cli
from jaxrecon.errors import UserError
from jaxrecon.reliev3r import task as reliev3r
from jaxrecon.rewis3d import task as rewis3d
from jaxrecon.train import multihost, resume
from jaxrecon.train.runs import stored_config

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "config file, e.g. configs/reliev3r.py (--mode=eval: default the run's "
    "config.json)", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "run folder: checkpoints, metrics, evaluation")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval"], "train (and resume) or evaluate")
_ALLOW_UNTRAINED = flags.DEFINE_bool("allow_untrained", False,
                                     "--mode=eval: evaluate the untrained model of a workdir "
                                     "that has no checkpoint")
_MULTIHOST = multihost.define_flags()
flags.mark_flags_as_required(["workdir"])

# config.task -> (train, evaluate) of (config, workdir); a new method is one folder and one line.
TASKS = {"reliev3r": (reliev3r.train, reliev3r.evaluate_run),
         "rewis3d": (rewis3d.train_segmentation, rewis3d.evaluate_segmentation)}


def flag_config():
  """The --config flag's config (None when not given); UserError when its file is unreadable."""
  if _CONFIG.value is None:
    return None
  try:
    _CONFIG.value.keys()  # a file that failed to load is a placeholder that raises on use
  except OSError as e:
    name = config_flags.get_config_filename(flags.FLAGS["config"])
    if "No such file" in str(e):
      raise UserError(f"--config={name}: file not found") from e
    raise UserError(f"--config={name}: {' '.join(str(e).split())}") from e
  return _CONFIG.value


def eval_config(workdir: str):
  """The config to evaluate the run in `workdir` with: its config.json with the --config.<field>
  overrides applied (or the --config file when the run has no config.json)."""
  stored = stored_config(workdir)
  requested = flag_config()
  if stored is None:
    if requested is None:
      raise UserError(f"{workdir}: no config.json (not a training run?); pass --config")
    return requested
  if requested is None:
    return stored
  config = stored.copy_and_resolve_references()
  for field, value in config_flags.get_override_values(flags.FLAGS["config"]).items():
    parent, _, leaf = field.rpartition(".")
    node = config
    for part in filter(None, parent.split(".")):
      node = node[part]
    node[leaf] = value
  resume.check_resume(stored.to_dict(), resume.config_dict(config), workdir,
                      safe=resume.SAFE_ON_EVAL)
  return config


def main(argv):
  if len(argv) > 1:
    raise UserError(f"unexpected arguments: {' '.join(argv[1:])} (flags look like --name=value)")
  logging.set_verbosity(logging.WARNING)  # Orbax's per-save INFO lines would drown the progress
  if _MODE.value == "train":
    config = flag_config()
    if config is None:
      raise UserError("--config is required for training, e.g. --config=configs/reliev3r.py")
  else:
    config = eval_config(_WORKDIR.value)
  task = config.get("task", "reliev3r")
  if task not in TASKS:
    raise UserError(f"config.task: expected one of {sorted(TASKS)}, got {task!r}")
  multihost.initialize_from_flags(_MULTIHOST)
  train, evaluate = TASKS[task]
  if _MODE.value == "train":
    train(config, _WORKDIR.value)
  else:
    evaluate(config, _WORKDIR.value, allow_untrained=_ALLOW_UNTRAINED.value)


if __name__ == "__main__":
  cli.run(main, "main")
