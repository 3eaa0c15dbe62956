"""`python -m jaxrecon.main` end to end on a tiny config: training, evaluation, exact resume after
SIGKILL (no step done twice, none skipped)."""
import json
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxrecon.data.cache import cache_scenes
from jaxrecon.reliev3r.records import build_jobs
from jaxrecon.train.checkpoint import Checkpointer
from jaxrecon.reliev3r.task import build

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]
from configs import reliev3r  # noqa: E402  (the real config file, imported as data)
from main_runs import command_env  # noqa: E402

TINY = ["--config.model.embed_dim=32", "--config.model.depth=1", "--config.model.num_heads=2",
        "--config.model.dense_hidden=32", "--config.model.camera_hidden=32",
        "--config.model.image_size=(32, 32)", "--config.pipeline.height=32",
        "--config.pipeline.width=32", "--config.pipeline.num_views=3",
        "--config.pipeline.max_tracks=32", "--config.pipeline.batch_size=2",
        "--config.data.num_eval_scenes=1", "--config.log_every=2", "--config.eval_every=3",
        "--config.checkpoint_every=2", "--config.optim.warmup_steps=2"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
  folder = tmp_path_factory.mktemp("cache")
  settings = reliev3r.get_config().data.prepare.to_dict()
  settings.update(tracker="simulated", synthetic=dict(num_scenes=3, seed=0, num_views=4,
                                                      height=40, width=40, path="orbit"))
  settings["simulated_tracker"]["num_tracks"] = 64
  cache_scenes(build_jobs(settings), folder, provenance=settings, progress=False)
  return folder


def _command(workdir, cache, steps, *extra):
  return [sys.executable, "-m", "jaxrecon.main", "--config=configs/reliev3r.py",
          f"--workdir={workdir}", f"--config.data.cache={cache}", f"--config.steps={steps}",
          *TINY, *extra]


def _env():
  return command_env()  # one device, as a user runs it


def _final_params(workdir, steps):
  config = reliev3r.get_config()
  config.unlock()
  config.model.update(embed_dim=32, depth=1, num_heads=2, dense_hidden=32, camera_hidden=32,
                      image_size=(32, 32))
  config.steps = steps
  config.optim.warmup_steps = 2
  _, _, init_state = build(config)
  ckpt = Checkpointer(pathlib.Path(workdir) / "checkpoints")
  assert ckpt.latest_step() == steps
  state = ckpt.restore(jax.eval_shape(init_state))
  return [np.asarray(x) for x in jax.tree.leaves(state.params)], int(state.step)


@pytest.mark.slow
def test_train_eval_and_exact_resume_after_sigkill(tmp_path, cache):
  steps = 10
  full = subprocess.run(_command(tmp_path / "full", cache, steps), cwd=REPO, env=_env(),
                        capture_output=True, text=True, timeout=900)
  assert full.returncode == 0, full.stderr[-3000:]
  assert "step     10" in full.stdout and "eval" in full.stdout
  lines = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
  assert [x["step"] for x in lines if "loss" in x] == [2, 4, 6, 8, 10]
  assert any("eval/auc30" in x for x in lines)
  # Zero recompilations after the first step: the steps after it, the evaluations after the first
  # (steps 3, 6, 9) and the checkpoints after the first (every 2 steps) compiled nothing.
  assert "compiled again after the first step: nothing" in full.stdout, full.stdout[-3000:]

  # Kill a second run as soon as its second checkpoint is complete, then rerun the same command.
  killed = tmp_path / "killed"
  proc = subprocess.Popen(_command(killed, cache, steps), cwd=REPO, env=_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  deadline = time.time() + 600
  while time.time() < deadline:
    # Orbax writes into a temporary folder and renames it to the bare step number when complete.
    done = [p for p in (killed / "checkpoints").glob("*") if p.name.isdigit()] \
        if (killed / "checkpoints").exists() else []
    if len(done) >= 2 or proc.poll() is not None:
      break
    time.sleep(0.2)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  before = Checkpointer(killed / "checkpoints").latest_step()
  assert before is not None and before < steps, "the run was not killed mid-way"
  resumed = subprocess.run(_command(killed, cache, steps), cwd=REPO, env=_env(),
                           capture_output=True, text=True, timeout=900)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f"workdir:{before}" in resumed.stdout
  # The log keeps each step once: entries past the restored checkpoint were dropped on resume.
  logged = [json.loads(x)["step"] for x in (killed / "metrics.jsonl").read_text().splitlines()
            if "loss" in json.loads(x)]
  assert logged == [2, 4, 6, 8, 10]
  want, step_a = _final_params(tmp_path / "full", steps)
  got, step_b = _final_params(killed, steps)
  assert step_a == step_b == steps
  for a, b in zip(want, got):
    np.testing.assert_array_equal(a, b)

  # Evaluation mode writes the report and one figure per held-out scene.
  ev = subprocess.run(_command(tmp_path / "full", cache, steps, "--mode=eval"), cwd=REPO,
                      env=_env(), capture_output=True, text=True, timeout=600)
  assert ev.returncode == 0, ev.stderr[-3000:]
  report = json.loads((tmp_path / "full" / "eval" / "metrics.json").read_text())
  assert "auc30" in report["mean"] and "track_px" in report["mean"]
  # Scenes are named after their cache files (the last one in sorted order is held out).
  held_out = sorted(cache.glob("*.npz"))[-1].stem
  assert (tmp_path / "full" / "eval" / f"{held_out}.png").stat().st_size
