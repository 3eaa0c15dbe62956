"""jaxrecon.io.staging: outputs appear complete or not at all; leftovers of killed writers go."""
import os
import subprocess
import sys

import pytest

from jaxrecon.errors import UserError
from jaxrecon.io import staging

NAMES = ("depth", "points.ply", "report.json")


def _earlier_run(out):
  (out / "depth").mkdir(parents=True)
  (out / "depth" / "old.npy").write_text("old")
  (out / "points.ply").write_text("old")
  (out / "notes.txt").write_text("mine")


def test_success_replaces_only_the_outputs(tmp_path):
  out = tmp_path / "out"
  _earlier_run(out)
  with staging.StagedOutput(out, NAMES, label="t") as stage:
    (stage.path / "depth").mkdir()
    (stage.path / "depth" / "new.npy").write_text("new")
    (stage.path / "report.json").write_text("{}")
    # Nothing is visible in --out before the block ends.
    assert (out / "points.ply").read_text() == "old" and not (out / "report.json").exists()
  assert stage.replaced == ["depth", "points.ply"]
  assert sorted(p.name for p in out.iterdir()) == ["depth", "notes.txt", "report.json"]
  assert [p.name for p in (out / "depth").iterdir()] == ["new.npy"]
  assert any("replaced the earlier outputs" in line for line in stage.notes())


def test_failure_leaves_the_earlier_run_and_no_staging(tmp_path):
  out = tmp_path / "out"
  _earlier_run(out)
  with pytest.raises(RuntimeError, match="mid-way"):
    with staging.StagedOutput(out, NAMES) as stage:
      (stage.path / "points.ply").write_text("half")
      raise RuntimeError("failed mid-way")
  assert sorted(p.name for p in out.iterdir()) == ["depth", "notes.txt", "points.ply"]
  assert (out / "points.ply").read_text() == "old"
  # A folder this run created is removed again.
  with pytest.raises(RuntimeError):
    with staging.StagedOutput(tmp_path / "new" / "out", NAMES):
      raise RuntimeError("x")
  assert not (tmp_path / "new" / "out").exists()


def test_undeclared_output_is_a_bug(tmp_path):
  with pytest.raises(RuntimeError, match="undeclared outputs"):
    with staging.StagedOutput(tmp_path / "out", NAMES) as stage:
      (stage.path / "other.txt").write_text("x")


def test_output_folder_checked_before_any_write(tmp_path):
  (tmp_path / "file").write_text("x")
  with pytest.raises(UserError, match="--out=.*file exists and is not a folder"):
    staging.StagedOutput(tmp_path / "file", NAMES)
  with pytest.raises(UserError, match="is a file, not a folder"):
    staging.check_output_folder(tmp_path / "file" / "sub" / "out")
  assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_stray_files_of_dead_writers_are_removed(tmp_path):
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True, text=True, check=True)
  pid = int(dead.stdout)
  (tmp_path / f".a.npz.{pid}-abc123.tmp").write_text("half")
  (tmp_path / f".reconstruct.{pid}-xyz.tmp").mkdir()
  live = tmp_path / f".b.npz.{os.getpid()}-def456.tmp"     # a writer still running: kept
  live.write_text("busy")
  (tmp_path / ".old.k3j2.npz.tmp").write_text("legacy")
  (tmp_path / "keep.npz").write_text("done")
  removed = staging.remove_stray(tmp_path, legacy=(".*.npz.tmp",))
  assert sorted(removed) == sorted([f".a.npz.{pid}-abc123.tmp", f".reconstruct.{pid}-xyz.tmp",
                                    ".old.k3j2.npz.tmp"])
  assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "keep.npz"])
