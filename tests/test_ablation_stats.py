"""The statistics behind the ablation tables (experiments/ablation_table.py): seed spread, paired
differences with a Student-t interval, and the verdict that says a difference is resolved only when
its interval excludes zero."""
import pathlib
import sys

import numpy as np
import pytest
from scipy import stats

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "experiments"))
import ablation_table as T  # noqa: E402


def _rows(values: dict) -> list:
  """values: variant -> {seed: value of "m"}."""
  return [{"variant": v, "seed": s, "steps": 1, "m": x}
          for v, by_seed in values.items() for s, x in by_seed.items()]


def test_paired_difference_matches_scipy_ttest_rel_interval():
  rng = np.random.default_rng(0)
  a, b = rng.normal(1.0, 0.3, 5), rng.normal(0.4, 0.3, 5)
  rows = _rows({"a": dict(enumerate(a)), "b": dict(enumerate(b))})
  d = T.paired_difference(rows, "a", "b", "m", level=0.9)
  ci = stats.ttest_rel(a, b).confidence_interval(0.9)
  assert d["n"] == 5
  np.testing.assert_allclose(d["mean"], np.mean(a - b), rtol=1e-12)
  np.testing.assert_allclose([d["lo"], d["hi"]], [ci.low, ci.high], rtol=1e-10)


def test_pairs_only_the_seeds_both_rows_have():
  rows = _rows({"a": {0: 3.0, 1: 5.0, 7: 100.0}, "b": {0: 1.0, 1: 2.0, 2: -50.0}})
  d = T.paired_difference(rows, "a", "b", "m")
  assert d["n"] == 2 and d["mean"] == pytest.approx(2.5)


@pytest.mark.parametrize("higher, expected", [(True, "better"), (False, "worse")])
def test_verdict_of_a_clear_shift_follows_the_metric_direction(higher, expected):
  rows = _rows({"a": {0: 2.0, 1: 2.1, 2: 1.9}, "b": {0: 1.0, 1: 1.05, 2: 0.95}})
  assert T.verdict(T.paired_difference(rows, "a", "b", "m"), higher) == expected
  assert T.verdict(T.paired_difference(rows, "b", "a", "m"), higher) == \
      {"better": "worse", "worse": "better"}[expected]


def test_a_difference_inside_the_seed_noise_is_not_resolved():
  # Mean difference +0.1 while the per-seed differences spread from -0.5 to +0.6.
  rows = _rows({"a": {0: 1.6, 1: 0.5, 2: 1.2}, "b": {0: 1.0, 1: 1.0, 2: 1.0}})
  d = T.paired_difference(rows, "a", "b", "m")
  assert d["lo"] < 0 < d["hi"]
  assert T.verdict(d, True) == "not resolved"


@pytest.mark.parametrize("values", [{"a": {0: 2.0}, "b": {0: 1.0}},          # one seed
                                    {"a": {0: 2.0, 1: np.nan}, "b": {0: 1.0, 1: 1.0}},
                                    {"a": {0: 2.0, 1: 3.0}, "b": {5: 1.0, 6: 1.0}}])
def test_too_few_or_nan_seeds_are_never_resolved(values):
  d = T.paired_difference(_rows(values), "a", "b", "m")
  assert np.isnan(d["lo"]) and np.isnan(d["hi"])
  assert T.verdict(d, True) == "not resolved"


def test_table_cells_show_mean_and_sample_sd_and_the_comparison_row():
  rows = _rows({"a": {0: 1.0, 1: 2.0, 2: 3.0}, "b": {0: 5.0}})
  table = T.markdown(rows, {"a": "first", "b": "second"}, (("m", "metric", ".2f"),))
  assert "| a | first | 3 | 2.00 ± 1.00 |" in table
  assert "| b | second | 1 | 5.00 |" in table      # one seed: no spread claimed
  cmp = T.comparisons(rows, [("a", "b"), ("a", "c")], (("m", "metric", ".2f", True),))
  assert "| a | b | -4.00 [-] not resolved | 1 |" in cmp
  assert "| a | c |" not in cmp                       # no common seed (c not run): left out


def test_run_missing_publishes_every_row_and_skips_finished_ones(tmp_path):
  results = tmp_path / "results.json"
  published, ran = [], []

  def run(name):
    ran.append(name)
    if name == "c":
      raise KeyboardInterrupt   # a run stopped in the middle of the seed
    return {"variant": name, "seed": 0, "steps": 5, "m": 1.0}

  descriptions = {"a": "", "b": "", "c": ""}
  with pytest.raises(KeyboardInterrupt):
    T.run_missing(results, "", descriptions, run, seed=0, steps_of=lambda n: 5,
                  on_row=lambda rows: published.append([r["variant"] for r in rows]))
  # The rows finished before the stop are on disk and were published one by one.
  assert published == [["a"], ["a", "b"]]
  assert [r["variant"] for r in T.load_rows(results)] == ["a", "b"]
  ran.clear()
  rows = T.run_missing(results, "a,b", descriptions, run, seed=0, steps_of=lambda n: 5)
  assert ran == [] and len(rows) == 2
  T.run_missing(results, "a", descriptions, run, seed=1, steps_of=lambda n: 5)
  assert ran == ["a"]


def test_write_block_replaces_only_its_own_block(tmp_path):
  readme = tmp_path / "README.md"
  readme.write_text("a\n<!-- RESULTS START -->\nold\n<!-- RESULTS END -->\nb\n"
                    "<!-- DENSITY START -->\nx\n<!-- DENSITY END -->\n")
  T.write_block(readme, "new $1 \\1", "DENSITY")   # replacement text taken literally
  T.write_block(readme, "table")
  assert readme.read_text() == ("a\n<!-- RESULTS START -->\ntable\n<!-- RESULTS END -->\nb\n"
                                "<!-- DENSITY START -->\nnew $1 \\1\n<!-- DENSITY END -->\n")
  with pytest.raises(ValueError, match="no <!-- OTHER START -->"):
    T.write_block(readme, "t", "OTHER")


def test_run_seeds_runs_each_seed_and_publishes_into_the_folder(tmp_path):
  args = T.arguments("doc", tmp_path / "runs", 7).parse_args(["--seeds", "3,4"])
  calls, published = [], []

  def run(name):
    calls.append((name, args.seed))
    return {"variant": name, "seed": args.seed, "steps": args.steps, "m": float(args.seed)}

  T.run_seeds(args, {"a": "", "b": ""}, run, lambda rows: published.append(len(rows)),
              folder=tmp_path)
  assert calls == [("a", 3), ("b", 3), ("a", 4), ("b", 4)]
  # After every row, then once per seed.
  assert published == [1, 2, 2, 3, 4, 4]
  assert T.load_rows(tmp_path / "results.json") == T.load_rows(tmp_path / "runs" / "results.json")
  assert len(T.load_rows(tmp_path / "results.json")) == 4


def test_class_table_averages_each_class_over_seeds():
  rows = [{"variant": "a", "seed": 0, "iou": {"sky": 0.5, "box": 0.1}},
          {"variant": "a", "seed": 1, "iou": {"sky": 0.7, "box": float("nan")}},
          {"variant": "b", "seed": 0, "iou": {"sky": 0.2, "box": 0.4}}]
  table = T.class_table(rows, ["a", "c", "b"]).splitlines()
  assert table[0] == "| class | a | b |"
  assert table[2] == "| sky | 60.0 | 20.0 |"
  assert table[3] == "| box | nan | 40.0 |"
  assert T.class_table(rows, ["c"]) == ""
