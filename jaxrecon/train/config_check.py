"""Validation of a training config before anything is built, read or written.

A config error found after a two-minute cache build (or after a checkpoint was overwritten) costs
the user that time; found here, it costs one line naming the key. `check_loop` checks what the
engine reads (steps and cadences, every optimiser's warm-up against steps, the data cache, the
run to start from, the mesh's fsdp size); `check_mesh` checks the mesh and the batch size against
the devices of this run (call it where the devices are known, before the mesh is made);
`check_sections` builds a task's dataclass configs once so that their own
checks (e.g. PipelineConfig.__post_init__) run now and name the config section; `require_folder`
is for the data paths of a task's prepare settings. All raise `jaxrecon.errors.UserError`.
"""
from __future__ import annotations

import math
import pathlib
from typing import Mapping

from jaxrecon.errors import UserError


def _int_at_least(config, key: str, low: int) -> int:
  value = config.get(key)
  if isinstance(value, bool) or not isinstance(value, int) or value < low:
    raise UserError(f"config.{key}: expected an integer >= {low}, got {value!r}")
  return value


def check_optimiser(name: str, optim: Mapping, steps: int) -> None:
  """config.<name> (learning_rate, warmup_steps, ...): warm-up within [0, steps)."""
  warmup = optim.get("warmup_steps", 0)
  if not 0 <= warmup < steps:
    raise UserError(f"config.{name}.warmup_steps={warmup}: must be in [0, steps) and "
                    f"config.steps={steps}; lower it (e.g. --config.{name}.warmup_steps="
                    f"{max(steps // 10, 0)}) or raise config.steps")
  if not optim.get("learning_rate", 1.0) > 0:
    raise UserError(f"config.{name}.learning_rate: expected > 0, got {optim['learning_rate']!r}")


def count_scene_files(folder: pathlib.Path) -> int:
  return sum(1 for _ in folder.glob("*.npz"))


def check_cache(cache: str, num_eval_scenes: int) -> None:
  """config.data.cache (when set): an existing folder with more scene files than are held out."""
  if not cache:
    return
  folder = pathlib.Path(cache)
  if not folder.is_dir():
    raise UserError(f"config.data.cache={cache}: folder not found (make one with `python -m "
                    f"jaxrecon.prepare`, or leave data.cache empty to build one from "
                    f"data.prepare)")
  found = count_scene_files(folder)
  if found <= num_eval_scenes:
    raise UserError(f"config.data.cache={cache}: {found} scene files (*.npz), but "
                    f"config.data.num_eval_scenes={num_eval_scenes} are held out, so at least "
                    f"{num_eval_scenes + 1} are needed")


AUTO_FSDP_MAX = 8


def mesh_fsdp(config, local_device_count: int | None = None) -> int:
  """config.mesh.fsdp, an integer >= 1 (1 when the config has no mesh section: data parallel).

  0 means "auto": the largest of 1, 2, 4, 8 that divides the devices of one process, so a config
  runs unchanged on 1 GPU, an 8-GPU node or a pod, and every fsdp group (whose all-gathers run
  every layer) stays within one host's fast links. Resolving it needs `local_device_count`;
  without it (config checks before any backend starts) 0 is returned as is."""
  mesh = config.get("mesh")
  if mesh is None:
    return 1
  if not hasattr(mesh, "get"):
    raise UserError(f"config.mesh: expected a section like {{'fsdp': 1}}, got {mesh!r}")
  fsdp = mesh.get("fsdp", 1)
  if isinstance(fsdp, bool) or not isinstance(fsdp, int) or fsdp < 0:
    raise UserError(f"config.mesh.fsdp: expected an integer >= 1, or 0 for auto, got {fsdp!r}")
  if fsdp == 0 and local_device_count is not None:
    return math.gcd(AUTO_FSDP_MAX, local_device_count)
  return fsdp


def check_mesh(config, device_count: int | None = None,
               local_device_count: int | None = None) -> None:
  """config.mesh.fsdp divides the device count, and config.pipeline.batch_size (per process)
  is divisible by this process's device count (the batch is split over every device). Default
  counts: jax.device_count() and jax.local_device_count()."""
  if device_count is None or local_device_count is None:
    import jax  # only here: the other checks run without initialising a backend
    device_count = jax.device_count() if device_count is None else device_count
    local_device_count = (jax.local_device_count() if local_device_count is None
                          else local_device_count)
  fsdp = mesh_fsdp(config, local_device_count)
  if device_count % fsdp:
    divisors = [d for d in range(1, device_count + 1) if device_count % d == 0]
    raise UserError(f"config.mesh.fsdp={fsdp} does not divide the {device_count} devices; use "
                    f"one of {divisors} (1 = pure data parallelism)")
  batch = config.get("pipeline", {}).get("batch_size")
  if batch is not None and batch % local_device_count:
    raise UserError(f"config.pipeline.batch_size={batch} (per process) is not divisible by the "
                    f"{local_device_count} devices of this process; use a multiple of "
                    f"{local_device_count} (e.g. --config.pipeline.batch_size="
                    f"{local_device_count * max(batch // local_device_count, 1)})")


def check_loop(config) -> None:
  """What the engine reads: steps, log_every, checkpoint_every, keep_checkpoints (>= 1),
  eval_every (>= 0), every `optim*` section against steps, data.cache, init_from, mesh.fsdp
  (>= 1; against the devices: `check_mesh`)."""
  steps = _int_at_least(config, "steps", 1)
  mesh_fsdp(config)
  for key in ("log_every", "checkpoint_every", "keep_checkpoints"):
    _int_at_least(config, key, 1)
  _int_at_least(config, "eval_every", 0)
  for name in sorted(config.keys()):
    if name.startswith("optim") and hasattr(config[name], "keys"):  # a (Config)dict section
      check_optimiser(name, config[name], steps)
  data = config.get("data")
  if data is not None:
    held_out = data.get("num_eval_scenes", 0)
    if isinstance(held_out, bool) or not isinstance(held_out, int) or held_out < 0:
      raise UserError(f"config.data.num_eval_scenes: expected an integer >= 0, got {held_out!r}")
    check_cache(data.get("cache", ""), held_out)
  init_from = config.get("init_from", "")
  if init_from and not pathlib.Path(init_from).exists():
    raise UserError(f"config.init_from={init_from}: no such run folder")


def check_sections(config, sections: Mapping[str, type]) -> None:
  """Builds each dataclass `cls(**config.<section>)` once, so that its own checks run now;
  UserError naming the section on a bad value."""
  for section, cls in sections.items():
    try:
      cls(**config[section].to_dict())
    except (TypeError, ValueError) as e:
      raise UserError(f"config.{section}: {' '.join(str(e).split())}") from e


def require_folder(key: str, value: str, why: str) -> pathlib.Path:
  """The folder a config key names; UserError when it is unset or missing (`why` says what
  needs it)."""
  if not value:
    raise UserError(f"config.{key} is not set; {why} needs it (--config.{key}=DIR)")
  path = pathlib.Path(value)
  if not path.is_dir():
    raise UserError(f"config.{key}={value}: folder not found ({why} needs it)")
  return path
