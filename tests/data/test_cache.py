"""Expert cache: atomic .npz per scene, skip finished scenes, report failures, guard provenance."""
import io
import json

import numpy as np
import pytest

from jaxrecon.data.cache import PROVENANCE, SkipScene, cache_scenes, read_npz, write_npz_atomic
from jaxrecon.errors import UserError


def _job(value, calls):
  def run():
    calls.append(value)
    return {"images": np.full((1, 2, 2, 3), value, np.uint8), "tracks": np.zeros((0, 1, 2))}
  return run


def test_writes_skips_and_reports(tmp_path):
  calls, log = [], io.StringIO()
  jobs = [("a", _job(1, calls)), ("b", _job(2, calls))]
  report = cache_scenes(jobs, tmp_path, provenance={"expert": "x", "k": 1}, stream=log)
  assert report.written == ["a", "b"] and not report.failed
  assert np.all(read_npz(tmp_path / "b.npz")["images"] == 2)
  info = json.loads((tmp_path / PROVENANCE).read_text())
  assert info["settings"] == {"expert": "x", "k": 1} and "numpy" in info["versions"]
  # A re-run only does what is missing.
  report = cache_scenes(jobs + [("c", _job(3, calls))], tmp_path,
                        provenance={"expert": "x", "k": 1}, stream=log)
  assert report.skipped == ["a", "b"] and report.written == ["c"] and calls == [1, 2, 3]
  assert "2/3" in log.getvalue() or "3/3" in log.getvalue()


def test_failing_scene_is_reported_and_others_continue(tmp_path):
  def boom():
    raise RuntimeError("no features")
  log = io.StringIO()
  report = cache_scenes([("bad", boom), ("good", _job(5, []))], tmp_path, provenance={},
                        stream=log, progress=False)
  assert report.written == ["good"] and "no features" in report.failed["bad"]
  assert not (tmp_path / "bad.npz").exists()
  assert "scene bad failed" in log.getvalue()
  assert not list(tmp_path.glob("*.tmp"))


def test_bad_input_is_one_line_and_unusable_scenes_are_skipped(tmp_path):
  def bad_input():
    raise UserError("s1/mono_depth/0.npy: no valid depth")

  def unusable():
    raise SkipScene("s2: 2 views, fewer than min_views=4")
  log = io.StringIO()
  report = cache_scenes([("s1", bad_input), ("s2", unusable), ("s3", _job(1, []))], tmp_path,
                        provenance={}, stream=log, progress=False)
  assert report.failed == {"s1": "s1/mono_depth/0.npy: no valid depth"}
  assert report.left_out == {"s2": "s2: 2 views, fewer than min_views=4"}
  assert report.written == ["s3"] and not (tmp_path / "s2.npz").exists()
  text = log.getvalue()
  assert "scene s1 failed: s1/mono_depth/0.npy: no valid depth\n" in text
  assert "warning: scene s2 skipped: s2: 2 views" in text and "Traceback" not in text
  assert "1 skipped as unusable, 1 failed" in text


def test_leftovers_of_a_killed_run_are_removed(tmp_path):
  """Temporary files of a write killed mid-way (this version's names carry the dead writer's
  pid; older versions' names did not) go on the next run; finished scenes stay."""
  (tmp_path / ".a.npz.999999999-x1y2.tmp").write_bytes(b"half")
  (tmp_path / ".b.k2j3h4.npz.tmp").write_bytes(b"half")   # the format before #10
  (tmp_path / "provenance.json.tmp").write_text("{")
  log = io.StringIO()
  report = cache_scenes([("a", _job(1, [])), ("b", _job(2, []))], tmp_path, provenance={},
                        stream=log, progress=False)
  assert report.written == ["a", "b"]
  assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "b.npz", PROVENANCE]
  assert "removed leftovers of an interrupted run" in log.getvalue()


def test_other_settings_are_refused(tmp_path):
  cache_scenes([("a", _job(1, []))], tmp_path, provenance={"k": 1}, stream=io.StringIO())
  with pytest.raises(ValueError, match="other settings"):
    cache_scenes([("a", _job(1, []))], tmp_path, provenance={"k": 2}, stream=io.StringIO())


def test_an_older_record_of_the_same_settings_is_accepted(tmp_path):
  cache_scenes([("a", _job(1, []))], tmp_path, provenance={"k": 1, "old": True},
               stream=io.StringIO())
  report = cache_scenes([("a", _job(1, [])), ("b", _job(2, []))], tmp_path, provenance={"k": 1},
                        also_accept=[{"k": 1, "old": True}], stream=io.StringIO(), progress=False)
  assert report.skipped == ["a"] and report.written == ["b"]
  with pytest.raises(ValueError, match="other settings"):
    cache_scenes([("a", _job(1, []))], tmp_path, provenance={"k": 1},
                 also_accept=[{"k": 2}], stream=io.StringIO())


def test_workdir_cache_records_what_prepare_records(tmp_path):
  """cached_split records provenance(settings), as `prepare` does for the same settings (a run's
  cache and a prepared one describe the same build alike), and still accepts a workdir cache
  that recorded the raw settings, as runs did before."""
  import json

  import ml_collections

  from jaxrecon.train.datasplit import cached_split
  config = ml_collections.ConfigDict({"data": {"cache": None, "num_eval_scenes": 1,
                                               "prepare": {"k": 1, "check_only": "x"}}})
  jobs = lambda settings: [("s0", _job(0, [])), ("s1", _job(1, []))]
  described = lambda settings: {"k": settings["k"]}
  fresh, old = tmp_path / "fresh", tmp_path / "old"
  train, held_out = cached_split(config, fresh, jobs, described)
  assert [p.name for p in train] == ["s0.npz"] and [p.name for p in held_out] == ["s1.npz"]
  assert json.loads((fresh / "cache" / "provenance.json").read_text())["settings"] == {"k": 1}
  cache_scenes(jobs(None), old / "cache", provenance={"k": 1, "check_only": "x"},
               stream=io.StringIO())
  assert len(cached_split(config, old, jobs, described)[0]) == 1
  config.data.prepare.k = 2
  with pytest.raises(ValueError, match="other settings"):
    cached_split(config, old, jobs, described)


def test_atomic_write_leaves_nothing_on_error(tmp_path):
  with pytest.raises(ValueError, match="pickle"):
    write_npz_atomic(tmp_path / "x.npz", {"bad": np.array([object()], dtype=object)})
  assert not list(tmp_path.iterdir())


def test_bad_names(tmp_path):
  with pytest.raises(ValueError, match="unique"):
    cache_scenes([("a", _job(1, [])), ("a", _job(1, []))], tmp_path, provenance={})
  with pytest.raises(ValueError, match="file name"):
    cache_scenes([("../x", _job(1, []))], tmp_path, provenance={})


def test_prepared_cache_with_other_settings_is_named(tmp_path, capsys):
  """A run given config.data.cache trains on it as it is; where its provenance differs from
  config.data.prepare (or is missing), the run says which settings differ."""
  import ml_collections

  from jaxrecon.data.cache import PROVENANCE
  from jaxrecon.train.datasplit import cached_split
  cache = tmp_path / "cache"
  jobs = [("s0", _job(0, [])), ("s1", _job(1, []))]
  cache_scenes(jobs, cache, provenance={"tracker": "xfeat", "matcher": {"ratio": 0.8}},
               stream=io.StringIO())
  config = ml_collections.ConfigDict({"data": {"cache": str(cache), "num_eval_scenes": 1,
                                               "prepare": {"tracker": "sift",
                                                           "matcher": {"ratio": 0.8}}}})
  capsys.readouterr()
  assert len(cached_split(config, tmp_path / "run", None, dict)[0]) == 1
  out = capsys.readouterr().out
  assert "other settings than config.data.prepare" in out
  assert "tracker: 'xfeat' (cache) vs 'sift' (config)" in out and "matcher" not in out
  config.data.prepare.tracker = "xfeat"
  cached_split(config, tmp_path / "run", None, dict)
  assert capsys.readouterr().out == ""
  (cache / PROVENANCE).unlink()
  cached_split(config, tmp_path / "run", None, dict)
  assert "settings its scenes were made with are unknown" in capsys.readouterr().out
