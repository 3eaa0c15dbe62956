"""`python -m jaxrecon.prepare` end to end: synthetic and folder sources, resume, pipeline input."""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from jaxrecon.data.formats.folder import write_folder
from jaxrecon.reliev3r.pipeline import NpzSource, PipelineConfig, make_dataset
from jaxrecon.data.synthetic import make_scene

REPO = pathlib.Path(__file__).resolve().parent.parent
SMALL = ["--config.synthetic.num_scenes=2", "--config.synthetic.num_views=4",
         "--config.synthetic.height=48", "--config.synthetic.width=64",
         "--config.simulated_tracker.num_tracks=64", "--config.tracks.max_tracks=64"]


def _prepare(variant, out, *extra):
  cmd = [sys.executable, "-m", "jaxrecon.prepare", f"--config=configs/prepare.py:{variant}",
         f"--out={out}", *SMALL, *extra]
  return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_synthetic_cache_resumes_and_feeds_the_pipeline(tmp_path):
  run = _prepare("synthetic_fast", tmp_path)
  assert run.returncode == 0, run.stderr
  files = sorted(tmp_path.glob("*.npz"))
  assert [f.name for f in files] == ["synthetic-orbit-00000.npz", "synthetic-orbit-00001.npz"]
  provenance = json.loads((tmp_path / "provenance.json").read_text())
  assert provenance["settings"]["tracker"] == "simulated" and "opencv" in provenance["versions"]
  assert "2 written" in run.stderr
  # Re-run: nothing to do.
  again = _prepare("synthetic_fast", tmp_path)
  assert again.returncode == 0 and "0 written, 2 already there" in again.stderr
  # Other settings into the same folder are refused.
  other = _prepare("synthetic", tmp_path)
  assert other.returncode != 0 and "other settings" in other.stderr
  cfg = PipelineConfig(num_views=3, height=32, width=32, max_tracks=32, batch_size=2)
  batch = next(iter(make_dataset(NpzSource(files), cfg)))
  assert batch["images"].shape == (2, 3, 32, 32, 3)
  assert batch["visibility"].sum() > 10  # tracks survive the crop


def test_folder_source_with_depth_files(tmp_path):
  scene = make_scene(3, num_views=3, height=48, width=64)
  root = tmp_path / "scenes"
  write_folder(scene, root / "s0")
  (root / "s0" / "mono_depth").mkdir()
  for name, depth in zip(scene.names, scene.depth):
    np.save(root / "s0" / "mono_depth" / f"{name}.npy", 2.0 * depth + 1.0)
  out = tmp_path / "cache"
  # Simulated tracks (from the folder's ground truth): XFeat finds none in 48x64 renders, and
  # prepare rejects a scene without tracks (issue #10).
  run = _prepare("folder", out, f"--config.folder.root={root}", "--config.tracker=simulated")
  assert run.returncode == 0, run.stderr
  record = NpzSource([out / "s0.npz"])[0]
  np.testing.assert_allclose(record["mono_depth"], 2.0 * scene.depth + 1.0, rtol=1e-6)
  assert record["tracks"].shape[1:] == (3, 2)


def test_failures_are_reported_with_a_nonzero_exit(tmp_path):
  root = tmp_path / "scenes"
  write_folder(make_scene(4, num_views=2, height=32, width=32), root / "broken")
  run = _prepare("folder", tmp_path / "cache", f"--config.folder.root={root}")
  assert run.returncode != 0
  assert "scene broken failed" in run.stderr and "mono_depth" in run.stderr
  assert "Traceback" not in run.stderr


def test_unusable_scenes_are_checked_and_skipped_when_asked(tmp_path):
  """Issue #10: what training would reject is found at prepare time, naming the file; with
  on_bad_scene="skip" such scenes are left out with a warning and the others cached."""
  import io
  sys.path.insert(0, str(REPO))
  from configs import prepare as prepare_config
  from jaxrecon.data.cache import cache_scenes
  from jaxrecon.reliev3r.records import build_jobs, provenance
  root = tmp_path / "scenes"
  for name, views, mono in (("good", 3, lambda d: d), ("nan", 3, lambda d: d * np.nan),
                            ("short", 2, lambda d: d)):
    scene = make_scene(3, num_views=views, height=48, width=64)
    write_folder(scene, root / name)
    (root / name / "mono_depth").mkdir()
    for view, depth in zip(scene.names, scene.depth):
      np.save(root / name / "mono_depth" / f"{view}.npy", mono(depth))
  settings = prepare_config.get_config("folder").to_dict()
  settings.update(tracker="simulated", min_views=3, on_bad_scene="skip")
  settings["folder"]["root"] = str(root)
  settings["simulated_tracker"]["num_tracks"] = 64
  log = io.StringIO()
  report = cache_scenes(build_jobs(settings), tmp_path / "cache", provenance=provenance(settings),
                        stream=log, progress=False)
  assert report.written == ["good"] and not report.failed
  assert set(report.left_out) == {"nan", "short"}
  assert report.left_out["nan"].startswith(str(root / "nan" / "mono_depth") + "/")
  assert report.left_out["nan"].endswith(".npy: no valid depth (every value is NaN, inf or <= 0)")
  assert "2 views, fewer than min_views=3" in report.left_out["short"]
  # The checks choose scenes, they do not change records: not part of the provenance.
  assert "min_views" not in provenance(settings) and "on_bad_scene" not in provenance(settings)
