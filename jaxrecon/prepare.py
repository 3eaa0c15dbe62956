"""`python -m jaxrecon.prepare --config=configs/prepare.py[:VARIANT] --out=DIR`.

Runs the pseudo-label experts over a dataset and caches one .npz per scene with a provenance JSON
(see `jaxrecon.data.cache`; the tracker, its settings and, for XFeat, the weights' sha256 are
recorded); re-running skips finished scenes. The settings, the scene folders and --out are
checked before any expert runs; each scene is checked for what training would reject
(`jaxrecon.reliev3r.records`: intrinsics, `min_views`, the monocular depth maps' size and values,
tracks), failing it or, with `--config.on_bad_scene=skip`, leaving it out with a warning. Errors:
one line on stderr and exit status 2 (`jaxrecon.cli`); non-zero too if a scene failed.

Several processes or hosts share the scenes of one --out folder (on a shared file system): start
the same command in each with

    --coordinator_address=HOST0:PORT --num_processes=N --process_id=I     (I = 0 .. N-1)

(or --distributed under a cluster manager jax.distributed detects; `jaxrecon.train.multihost`).
Process I runs every N-th scene from the I-th, so each writes only its own scenes; process 0 alone
removes killed runs' leftovers and writes provenance.json, before the others start (a barrier).
All wait for each other at the end, and each fails (non-zero) if a scene failed in any of them.
"""
import sys
import time

import jax
from absl import app, flags
from ml_collections import config_flags

from jaxrecon import cli
from jaxrecon.data.cache import cache_scenes
from jaxrecon.errors import UserError
from jaxrecon.io.staging import check_output_folder
from jaxrecon.reliev3r.records import build_jobs, provenance
from jaxrecon.train import multihost

_CONFIG = config_flags.DEFINE_config_file("config", None, "prepare config file (configs/prepare.py)",
                                          lock_config=True)
_OUT = flags.DEFINE_string("out", None, "cache folder (created if missing)")
_MULTIHOST = multihost.define_flags()
flags.mark_flags_as_required(["config", "out"])


def _load_tracker_weights(tracker: str) -> None:
  """Loads (on first use: converts and caches) the learned tracker's weights up front, saying so:
  otherwise the first scene would sit silent through the conversion."""
  if tracker not in ("xfeat", "xfeat_lighterglue"):
    return
  # Only the learned trackers need flax and the weights.
  from jaxrecon.experts import lighterglue, xfeat_model  # noqa: PLC0415
  start = time.perf_counter()
  print(f"loading the {tracker} weights (the first use converts and caches them) ...",
        file=sys.stderr, flush=True)
  xfeat_model.load_backbone()
  if tracker == "xfeat_lighterglue":
    lighterglue.load_lighterglue()
  print(f"loaded the {tracker} weights ({time.perf_counter() - start:.1f} s)", file=sys.stderr)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  settings = _CONFIG.value.to_dict()
  out = check_output_folder(_OUT.value)
  jobs = build_jobs(settings)
  multihost.initialize_from_flags(_MULTIHOST)
  first = jax.process_index() == 0
  if first:  # the first use converts and caches the weights: once, before the others read them
    _load_tracker_weights(settings.get("tracker", ""))
  multihost.barrier("prepare: weights converted")
  if not first:
    _load_tracker_weights(settings.get("tracker", ""))
  report = cache_scenes(jobs, out, provenance=provenance(settings), progress=first,
                        process_index=jax.process_index(), process_count=jax.process_count(),
                        synchronize=lambda: multihost.barrier("prepare: cache folder set up"))
  # Also waits until every process's scenes are written.
  failed = multihost.total(len(report.failed), "prepare failures")
  hint = "use --config.on_bad_scene=skip to leave unusable scenes out"
  if report.failed:
    raise UserError(f"{len(report.failed)} scene(s) failed: {', '.join(sorted(report.failed))} "
                    f"(reasons above; {hint})")
  if failed:
    raise UserError(f"{failed} scene(s) failed in other processes (reasons in their error "
                    f"output; {hint})")


if __name__ == "__main__":
  cli.run(main, "prepare")
