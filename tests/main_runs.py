"""Running `python -m jaxrecon.main` from the tests: tiny Reliev3R flags and a subprocess runner
(one CPU device, as a user runs it)."""
import os
import pathlib
import subprocess
import sys

from compile_bound import XLA_FLAGS as COMPILE_BOUND_XLA_FLAGS

REPO = pathlib.Path(__file__).resolve().parents[1]

_TINY = {"model.embed_dim": 32, "model.depth": 1, "model.num_heads": 2, "model.dense_hidden": 32,
         "model.camera_hidden": 32, "model.image_size": "(32, 32)", "pipeline.height": 32,
         "pipeline.width": 32, "pipeline.num_views": 3, "pipeline.max_tracks": 32,
         "pipeline.batch_size": 2, "data.num_eval_scenes": 1, "log_every": 1, "eval_every": 0,
         "checkpoint_every": 2, "optim.warmup_steps": 1}


def tiny_flags(**fields) -> list[str]:
  """--config.<field>=<value> flags of a seconds-per-step Reliev3R run; `fields` (with "__" for
  ".") override or add to them."""
  values = {**_TINY, **{k.replace("__", "."): v for k, v in fields.items()}}
  return [f"--config.{k}={v}" for k, v in values.items()]


def command_env(devices: int = 1) -> dict:
  """Environment of a training command launched by a test: CPU, `devices` virtual devices (1:
  as a user runs it), LLVM -O0 (compile_bound: tiny configs are compile-bound), no verbose
  logging."""
  env = dict(os.environ)
  env["XLA_FLAGS"] = COMPILE_BOUND_XLA_FLAGS + (
      f" --xla_force_host_platform_device_count={devices}" if devices > 1 else "")
  env.pop("JAXRECON_VERBOSE", None)
  env["JAX_PLATFORMS"] = "cpu"
  return env


def run_main(workdir, *args, timeout: int = 900) -> subprocess.CompletedProcess:
  """`python -m jaxrecon.main --workdir=<workdir> <args>` from the repository root."""
  env = command_env()
  return subprocess.run([sys.executable, "-m", "jaxrecon.main", f"--workdir={workdir}", *args],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
