"""`python -m jaxrecon.prepare --config=configs/prepare.py[:VARIANT] --out=DIR`.

Runs the pseudo-label experts over a dataset and caches one .npz per scene with a provenance JSON
(see `jaxrecon.data.cache`; the tracker, its settings and, for XFeat, the weights' sha256 are
recorded); re-running skips finished scenes. Exits non-zero if a scene failed.
"""
from absl import app, flags
from ml_collections import config_flags

from jaxrecon.data.cache import cache_scenes
from jaxrecon.reliev3r.records import build_jobs, provenance

_CONFIG = config_flags.DEFINE_config_file("config", None, "prepare config file (configs/prepare.py)",
                                          lock_config=True)
_OUT = flags.DEFINE_string("out", None, "cache folder (created if missing)")
flags.mark_flags_as_required(["config", "out"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  settings = _CONFIG.value.to_dict()
  report = cache_scenes(build_jobs(settings), _OUT.value, provenance=provenance(settings))
  if report.failed:
    raise SystemExit(f"{len(report.failed)} scene(s) failed: {sorted(report.failed)}")


if __name__ == "__main__":
  app.run(main)
