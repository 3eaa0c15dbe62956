"""`python -m jaxrecon.main` on broken input (#10): one line on stderr naming the key / file /
argument, a non-zero exit, no traceback, and nothing written where the run keeps its records
(the workdir is not created; an existing run's config.json is left as it was)."""
import sys

import pytest
from main_runs import REPO, run_main, tiny_flags

from jaxrecon.data.cache import cache_scenes
from jaxrecon.reliev3r.records import build_jobs

sys.path.insert(0, str(REPO))
from configs import prepare  # noqa: E402  (the real config file, imported as data)

TINY = tiny_flags()


def assert_one_line_error(result, *fragments):
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 2, result.stderr[-3000:]
  assert len(lines) == 1 and lines[0].startswith("main: error: "), result.stderr[-3000:]
  for fragment in fragments:
    assert fragment in lines[0], lines[0]
  return lines[0]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
  """3 small synthetic scenes with simulated tracks (configs/prepare.py:synthetic_fast)."""
  settings = prepare.get_config("synthetic_fast")
  with settings.unlocked():
    settings.synthetic.update(num_scenes=3, num_views=4, height=40, width=40)
    settings.simulated_tracker.num_tracks = 64
  folder = tmp_path_factory.mktemp("cache")
  cache_scenes(build_jobs(settings.to_dict()), folder, provenance=settings.to_dict(),
               progress=False)
  return folder


RELIEV3R = "--config=configs/reliev3r.py"
BROKEN = {
    # name: (arguments, fragments the one line must hold)
    "typo": ([RELIEV3R, "--config.stpes=10"],
             ["--config.stpes", "did you mean \"steps\""]),
    "no config file": (["--config=configs/nothere.py"], ["configs/nothere.py: file not found"]),
    "bad variant": (["--config=configs/reliev3r.py:bogus"], ["variant must be one of"]),
    # Before #10 this one failed only after building a 168-scene cache (minutes).
    "warm-up vs steps": ([RELIEV3R, "--config.steps=2"],
                         ["config.optim.warmup_steps=50", "config.steps=2"]),
    "missing cache": ([RELIEV3R, "--config.data.cache=/nonexistent/cache"],
                      ["config.data.cache=/nonexistent/cache: folder not found"]),
    "unset folder root": ([RELIEV3R, "--config.data.prepare.source=folder"],
                          ["config.data.prepare.folder.root is not set"]),
    "bad objective": ([RELIEV3R, "--config.objective.registration=nope"],
                      ["config.objective: registration"]),
    "eval without checkpoint": ([RELIEV3R, "--mode=eval"],
                                ["no checkpoint to evaluate", "--allow_untrained"]),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_input_is_one_line_and_writes_nothing(tmp_path, name):
  args, fragments = BROKEN[name]
  workdir = tmp_path / "run"
  assert_one_line_error(run_main(workdir, *args), *fragments)
  assert not workdir.exists()


def test_cache_with_too_few_scenes_names_both_keys(tmp_path, cache):
  one = tmp_path / "one"
  one.mkdir()
  (one / "a.npz").write_bytes((cache / sorted(p.name for p in cache.glob("*.npz"))[0])
                              .read_bytes())
  line = assert_one_line_error(
      run_main(tmp_path / "run", RELIEV3R, f"--config.data.cache={one}", *TINY),
      "1 scene files", "config.data.num_eval_scenes=1")
  assert "0 scenes" not in line


@pytest.mark.slow
def test_a_mismatched_rerun_is_refused_and_keeps_the_runs_config(tmp_path, cache):
  workdir = tmp_path / "run"
  first = run_main(workdir, RELIEV3R, f"--config.data.cache={cache}", "--config.steps=2", *TINY)
  assert first.returncode == 0, first.stderr[-3000:]
  assert "compiling the train step" in first.stdout
  stored = (workdir / "config.json").read_text()
  (workdir / ".config.json.tmp").write_text("{\"half\":")    # a write killed mid-way

  wider = [a.replace("embed_dim=32", "embed_dim=64") for a in TINY]
  refused = run_main(workdir, RELIEV3R, f"--config.data.cache={cache}", "--config.steps=4",
                     *wider)
  assert_one_line_error(refused, f"{workdir} was trained with model.embed_dim=32 "
                                 "(requested 64)", "use another workdir")
  assert (workdir / "config.json").read_text() == stored
  assert (workdir / ".config.json.tmp").exists()     # refused before touching anything

  # Safe fields may change on resume: said on the console, then recorded once restored.
  longer = run_main(workdir, RELIEV3R, f"--config.data.cache={cache}", "--config.steps=3",
                    *TINY)
  assert longer.returncode == 0, longer.stderr[-3000:]
  assert "changed settings: steps 2 -> 3" in longer.stdout and "workdir:2" in longer.stdout
  assert '"steps": 3' in (workdir / "config.json").read_text()
  assert not (workdir / ".config.json.tmp").exists()
  assert "removed 1 temporary file(s)" in longer.stdout
