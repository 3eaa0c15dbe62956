"""`python -m jaxrecon.main --config=configs/rewis3d.py` end to end on a tiny config: both methods,
the summary, exact resume after SIGKILL, evaluation mode and `python -m jaxrecon.segment`."""
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
from jaxrecon.io import files
from jaxrecon.rewis3d.records import build_seg_jobs
from jaxrecon.train.checkpoint import Checkpointer
from jaxrecon.train.runs import stored_config
from jaxrecon.rewis3d.task import build_seg

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]
from configs import rewis3d  # noqa: E402  (the real config file, imported as data)
from main_runs import command_env  # noqa: E402

STEPS = 6
TINY = ["--config.pipeline.height=32", "--config.pipeline.width=32",
        "--config.pipeline.num_points=256", "--config.pipeline.batch_size=2",
        "--config.data.num_eval_scenes=1", "--config.log_every=2", "--config.eval_every=2",
        "--config.checkpoint_every=2", "--config.optim2d.warmup_steps=2",
        "--config.optim3d.warmup_steps=2", "--config.objective.base_steps=2",
        "--config.objective.ramp_steps=2", f"--config.steps={STEPS}"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
  folder = tmp_path_factory.mktemp("segcache")
  settings = rewis3d.get_config().data.prepare.to_dict()
  settings["synthetic"].update(num_scenes=3, num_views=3, height=40, width=40)
  report = cache_scenes(build_seg_jobs(settings), folder, provenance=settings, progress=False)
  assert not report.failed
  return folder


def _command(workdir, cache, *extra):
  return [sys.executable, "-m", "jaxrecon.main", "--config=configs/rewis3d.py",
          f"--workdir={workdir}", f"--config.data.cache={cache}", *TINY, *extra]


def _env():
  return command_env()  # one device, as a user runs it


def _run(args, timeout=900):
  result = subprocess.run(args, cwd=REPO, env=_env(), capture_output=True, text=True,
                          timeout=timeout)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  return result


def _final_state(run_dir):
  config = stored_config(run_dir)
  _, _, init_state = build_seg(config, config.methods)
  ckpt = Checkpointer(pathlib.Path(run_dir) / "checkpoints")
  assert ckpt.latest_step() == STEPS
  return [np.asarray(x) for x in jax.tree.leaves(ckpt.restore(jax.eval_shape(init_state)))]


def _logged_steps(run_dir):
  lines = [json.loads(x) for x in (pathlib.Path(run_dir) / "metrics.jsonl").read_text().split("\n")
           if x]
  return [x["step"] for x in lines if "loss" in x]


@pytest.mark.slow
def test_both_methods_resume_after_sigkill_eval_and_segment(tmp_path, cache):
  full = _run(_command(tmp_path / "full", cache))
  assert "Rewis3d - EMA baseline" in full.stdout
  summary = json.loads((tmp_path / "full" / "summary.json").read_text())
  assert set(summary) == {"ema", "rewis3d"}
  for method in ("ema", "rewis3d"):
    report = summary[method]["student"]
    assert 0.0 <= report["miou"] <= 1.0 and summary[method]["step"] == STEPS
    assert _logged_steps(tmp_path / "full" / method) == [2, 4, 6]
    assert (tmp_path / "full" / method / "eval" / "view0.png").stat().st_size > 0
  assert "| rewis3d |" in (tmp_path / "full" / "summary.md").read_text()
  assert "cmc_2d" in full.stdout and "lambda" in full.stdout
  # Zero recompilations after the first step, in both methods' runs: evaluations at steps 2 and 4
  # and checkpoints every 2 steps in between.
  assert full.stdout.count("compiled again after the first step: nothing") == 2, \
      full.stdout[-3000:]

  # Kill a Rewis3d run once its second checkpoint is complete, then rerun the same command.
  killed = tmp_path / "killed"
  proc = subprocess.Popen(_command(killed, cache, "--config.methods=rewis3d"), cwd=REPO,
                          env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  deadline = time.time() + 600
  checkpoints = killed / "rewis3d" / "checkpoints"
  while time.time() < deadline:
    done = [p for p in checkpoints.glob("*") if p.name.isdigit()] if checkpoints.exists() else []
    if len(done) >= 2 or proc.poll() is not None:
      break
    time.sleep(0.2)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  before = Checkpointer(checkpoints).latest_step()
  assert before is not None and before < STEPS, "the run was not killed mid-way"
  resumed = _run(_command(killed, cache, "--config.methods=rewis3d"))
  assert f"workdir:{before}" in resumed.stdout
  assert _logged_steps(killed / "rewis3d") == [2, 4, 6]
  # Students, teachers (in the optimiser states) and the step counter: bit-identical.
  for a, b in zip(_final_state(tmp_path / "full" / "rewis3d"), _final_state(killed / "rewis3d")):
    np.testing.assert_array_equal(a, b)

  # Evaluation mode re-reports both methods from their checkpoints.
  _run(_command(tmp_path / "full", cache, "--mode=eval"))
  again = json.loads((tmp_path / "full" / "summary.json").read_text())
  assert again["rewis3d"]["student"]["miou"] == pytest.approx(summary["rewis3d"]["student"]["miou"])

  # 2D-only inference on a folder of images of two sizes.
  images = tmp_path / "images"
  images.mkdir()
  record = np.load(sorted(cache.glob("*.npz"))[0])
  files.write_png(images / "a.png", record["images"][0])
  files.write_png(images / "b.png", np.concatenate([record["images"][1]] * 2, axis=1))
  out = tmp_path / "seg"
  _run([sys.executable, "-m", "jaxrecon.segment", f"--checkpoint={tmp_path / 'full'}",
        f"--images={images}", f"--out={out}"])
  a = files.read_single_channel(out / "labels" / "a.png", np.uint8, "labels")
  b = files.read_single_channel(out / "labels" / "b.png", np.uint8, "labels")
  assert a.shape == (40, 40) and b.shape == (40, 80)
  assert a.max() < len(rewis3d.get_config().class_names)
  assert (out / "color" / "a.png").exists()
  classes = json.loads((out / "classes.json").read_text())
  assert classes["method"] == "rewis3d" and classes["step"] == STEPS


def test_segment_rejects_a_folder_without_a_run(tmp_path):
  from jaxrecon.segment import method_run
  with pytest.raises(FileNotFoundError, match="no checkpoints"):
    method_run(str(tmp_path))
