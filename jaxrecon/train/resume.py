"""Whether a requested config may continue the run already in a workdir.

A workdir's config.json records what its checkpoints hold. Rerunning the workdir with another
model, objective or data would either fail deep inside the restore (a shape mismatch) or, worse,
silently continue a different experiment, so `check_resume` compares the two configs before
anything is built and refuses with one line naming the differing fields. Fields that only steer
the loop (how long, how often to log / evaluate / checkpoint) may change on resume: those are
`SAFE_ON_RESUME`, and they are reported, not refused.
"""
from __future__ import annotations

import json
import pathlib
from typing import Any, Iterable, Mapping

from jaxrecon.errors import UserError

# May differ between the stored and the requested config of a run that already has checkpoints.
# `steps` also stretches the learning-rate schedule from the restored step on (the optimiser
# state has the same shapes); the others change no number the checkpoint holds.
SAFE_ON_RESUME = ("steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints",
                  "init_from", "methods", "pipeline.worker_count", "mesh")  # mesh: layout only
# Also free when only evaluating a trained run: which data it is evaluated on.
SAFE_ON_EVAL = SAFE_ON_RESUME + ("data", "pipeline", "objective", "optim", "optim2d", "optim3d",
                                 "seed")


def config_dict(config) -> dict:
  """A config (ConfigDict) as the plain JSON dict config.json holds."""
  return json.loads(config.to_json_best_effort(sort_keys=True))


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """{"a.b.c": leaf} of a nested mapping (tuples and lists compared as JSON lists)."""
  out = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping):
      out.update(flatten(value, name + "."))
    else:
      out[name] = json.loads(json.dumps(value, default=str))
  return out


def _is_safe(field: str, safe: Iterable[str]) -> bool:
  return any(field == s or field.startswith(s + ".") for s in safe)


def _show(value) -> str:
  return "(absent)" if value is _ABSENT else json.dumps(value)


_ABSENT = object()


def differences(stored: Mapping, requested: Mapping) -> list[tuple[str, Any, Any]]:
  """(field, stored value, requested value) of every field whose values differ, sorted."""
  a, b = flatten(stored), flatten(requested)
  return [(k, a.get(k, _ABSENT), b.get(k, _ABSENT)) for k in sorted(set(a) | set(b))
          if a.get(k, _ABSENT) != b.get(k, _ABSENT)]


def check_resume(stored: Mapping | None, requested: Mapping, workdir: pathlib.Path, *,
                 safe: Iterable[str] = SAFE_ON_RESUME) -> list[str]:
  """Refuses (UserError) a requested config that differs from the stored one outside `safe`;
  returns "field stored -> requested" for the safe fields that differ (to be reported).

  stored: the workdir's config.json as a dict (None: nothing to compare, e.g. a run from before
    config.json was written; the restore itself then checks the shapes).
  requested: the config of this call as a dict.
  """
  if stored is None:
    return []
  diffs = differences(stored, requested)
  unsafe = [d for d in diffs if not _is_safe(d[0], safe)]
  if unsafe:
    shown = ", ".join(f"{k}={_show(old)} (requested {_show(new)})" for k, old, new in unsafe[:4])
    more = f" and {len(unsafe) - 4} more fields" if len(unsafe) > 4 else ""
    raise UserError(
        f"{workdir} was trained with {shown}{more}; use another workdir, or start a new one from "
        f"this run with --config.init_from={workdir}. Fields that may change on resume: "
        f"{', '.join(SAFE_ON_RESUME)}")
  return [f"{k} {_show(old)} -> {_show(new)}" for k, old, new in diffs]
