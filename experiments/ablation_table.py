"""Shared plumbing of the ablation scripts: results.json rows -> mean over seeds -> a markdown table
in a README (between RESULTS markers) and a bar plot."""
from __future__ import annotations

import argparse
import json
import pathlib
import re
from typing import Callable, Mapping, Sequence

import numpy as np


def load_rows(path: pathlib.Path) -> list:
  return json.loads(path.read_text()) if path.exists() else []


def done(rows: list, variant: str, seed: int, steps: int) -> bool:
  return any(r["variant"] == variant and r["seed"] == seed and r["steps"] == steps for r in rows)


def override(config, overrides: Mapping[str, object]):
  """Sets dotted fields ("objective.alpha": 0.2) of a locked ConfigDict; a misspelt field raises."""
  for dotted, value in overrides.items():
    *parents, leaf = dotted.split(".")
    node = config
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def report(rows: list, descriptions: Mapping[str, str], columns: Sequence[tuple],
           panels: Sequence[tuple], folder: pathlib.Path, highlight: Mapping[str, str],
           unit: str = "scenes", pairs: Sequence[tuple] = (), metrics: Sequence[tuple] = (),
           footer: str = "") -> None:
  """Prints the tables, writes <folder>/ablation.png and the README block: the per-variant table
  and, for `pairs` ((variant, reference)) over `metrics` ((key, header, format,
  higher_is_better)), the paired differences with their intervals and verdicts; then `footer`."""
  table = markdown(rows, descriptions, columns, unit)
  if pairs:
    table += ("\n\nPaired by seed: the difference of the two rows' values for each seed, its mean "
              "and its 95 % Student-t interval over the seeds; a difference is resolved (better / "
              "worse) only when the interval excludes 0, otherwise \"not resolved\".\n\n"
              + comparisons(rows, pairs, metrics))
  if footer:
    table += "\n\n" + footer
  print(table)
  bar_plot(rows, list(descriptions), panels, folder / "ablation.png", highlight)
  write_block(folder / "README.md", table)


def run_missing(results_path: pathlib.Path, only: str, descriptions: Mapping[str, str],
                run_variant: Callable[[str], dict], *, seed: int, steps_of: Callable[[str], int],
                report_only: bool = False, on_row: Callable[[list], None] | None = None) -> list:
  """Runs the variants (all, or the comma-separated `only`) not yet in results.json for this seed
  and budget, appending each row as it finishes and then calling `on_row(all rows)` (e.g. to
  regenerate the published table, so a run stopped mid-seed loses nothing); returns all rows."""
  rows = load_rows(results_path)
  if report_only:
    return rows
  names = [n for n in only.split(",") if n] or list(descriptions)
  unknown = sorted(set(names) - set(descriptions))
  if unknown:
    raise SystemExit(f"unknown variants {unknown}; choose from {list(descriptions)}")
  for name in names:
    if done(rows, name, seed, steps_of(name)):
      print(f"{name}: already in {results_path}, skipped")
      continue
    print(f"=== {name}: {descriptions[name]}", flush=True)
    rows.append(run_variant(name))
    results_path.write_text(json.dumps(rows, indent=1))
    if on_row is not None:
      on_row(rows)
  return rows


def arguments(doc: str, out: pathlib.Path, steps: int) -> argparse.ArgumentParser:
  """The command line every ablation script shares (a script may add its own options)."""
  parser = argparse.ArgumentParser(description=doc.splitlines()[0])
  parser.add_argument("--out", default=str(out), help="where the runs and results.json go")
  parser.add_argument("--steps", type=int, default=steps)
  parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds, run in turn")
  parser.add_argument("--only", default="", help="comma-separated variant names")
  parser.add_argument("--report-only", action="store_true")
  return parser


def run_seeds(args, descriptions: Mapping[str, str], run_variant: Callable[[str], dict],
              publish: Callable[[list], None], *, folder: pathlib.Path,
              steps_of: Callable[[str], int] | None = None) -> None:
  """For each seed of args.seeds in turn (set as args.seed), the missing rows (`run_missing` on
  <args.out>/results.json), then `publish(all rows)` (also after every row); the published
  results.json goes to `folder`."""
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)

  def both(rows):
    (folder / "results.json").write_text(json.dumps(rows, indent=1))
    publish(rows)

  for seed in [int(s) for s in args.seeds.split(",")]:
    args.seed = seed
    rows = run_missing(out / "results.json", args.only, descriptions, run_variant, seed=seed,
                       steps_of=steps_of or (lambda name: args.steps),
                       report_only=args.report_only, on_row=both)
    both(rows)


def mean_rows(rows: list, variants: Sequence[str], keys: Sequence[str]) -> dict:
  """variant -> ({key: mean over seeds}, number of seeds, {key: sample standard deviation over
  seeds (nan below 2 seeds)}), in `variants` order. A seed whose value is nan (or missing) makes
  the mean nan: never silently dropped."""
  table = {}
  for name in variants:
    mine = [r for r in rows if r["variant"] == name]
    if mine:
      values = {k: np.array([r.get(k, np.nan) for r in mine], float) for k in keys}
      table[name] = ({k: float(np.mean(v)) for k, v in values.items()}, len(mine),
                     {k: float(np.std(v, ddof=1)) if len(v) > 1 else np.nan
                      for k, v in values.items()})
  return table


def paired_difference(rows: list, variant: str, reference: str, key: str,
                      level: float = 0.95) -> dict:
  """`variant` minus `reference` on `key`, paired by seed over the seeds both have (a seed fixes
  the initialisation, the batches and the held-out data, so the per-seed difference removes what
  the two runs share). Returns {"mean", "lo", "hi", "n"}: the mean difference and its Student-t
  interval at `level` (lo = hi = nan below 2 paired seeds)."""
  def by_seed(name):
    return {r["seed"]: r.get(key, np.nan) for r in rows if r["variant"] == name}
  a, b = by_seed(variant), by_seed(reference)
  seeds = sorted(set(a) & set(b))
  d = np.array([a[s] - b[s] for s in seeds], float)
  out = {"mean": float(np.mean(d)) if len(d) else np.nan, "lo": np.nan, "hi": np.nan,
         "n": len(d)}
  if len(d) >= 2 and np.all(np.isfinite(d)):
    from scipy import stats
    half = stats.t.ppf(0.5 + level / 2, len(d) - 1) * np.std(d, ddof=1) / np.sqrt(len(d))
    out.update(lo=out["mean"] - half, hi=out["mean"] + half)
  return out


def verdict(diff: dict, higher_is_better: bool) -> str:
  """"better" / "worse" when the interval excludes 0, else "not resolved" (also below 2 seeds)."""
  if not (np.isfinite(diff["lo"]) and np.isfinite(diff["hi"])) or diff["lo"] <= 0 <= diff["hi"]:
    return "not resolved"
  return "better" if (diff["mean"] > 0) == higher_is_better else "worse"


def comparisons(rows: list, pairs: Sequence[tuple], metrics: Sequence[tuple],
                level: float = 0.95) -> str:
  """A markdown table of paired differences: pairs are (variant, reference); metrics are
  (key, header, format, higher_is_better). Pairs without a common seed yet are left out."""
  lines = ["| variant | vs | " + " | ".join(f"{m[1]}: difference [{level:.0%} interval]"
                                              for m in metrics) + " | seeds |",
           "|---|---|" + "---|" * (len(metrics) + 1)]
  for variant, reference in pairs:
    cells, n = [], 0
    for key, _, fmt, higher in metrics:
      d = paired_difference(rows, variant, reference, key, level)
      n = d["n"]
      interval = (f"[{format(d['lo'], fmt)}, {format(d['hi'], fmt)}]"
                  if np.isfinite(d["lo"]) else "[-]")
      cells.append(f"{format(d['mean'], '+' + fmt)} {interval} {verdict(d, higher)}")
    if n == 0:
      continue
    lines.append(f"| {variant} | {reference} | {' | '.join(cells)} | {n} |")
  return "\n".join(lines)


def valid_counts(rows: list, name: str, key: str):
  """(fewest valid units over the variant's seeds, their total) for a metric whose per-seed value
  is a mean over units (scenes, classes) that skipped nan ones: rows carry `<key>_valid` and
  `<key>_total`. None when the rows do not say, or every unit was valid in every seed."""
  mine = [r for r in rows if r["variant"] == name and f"{key}_valid" in r]
  if not mine:
    return None
  valid, total = min(r[f"{key}_valid"] for r in mine), max(r[f"{key}_total"] for r in mine)
  return None if valid == total else (valid, total)


def markdown(rows: list, variants: Mapping[str, str], columns: Sequence[tuple],
             unit: str = "scenes") -> str:
  """columns: (key, header, format) triples; variants: name -> description. Cells are the mean
  over seeds +- their sample standard deviation (2+ seeds). A cell whose per-seed means skipped
  nan `unit`s is marked (n/N): n valid of N, fewest over seeds."""
  table = mean_rows(rows, list(variants), [c[0] for c in columns])
  lines = ["| variant | what | seeds | " + " | ".join(c[1] for c in columns) + " |",
           "|---|---|---|" + "---|" * len(columns)]
  marked = False
  for name, (m, seeds, sd) in table.items():
    cells = []
    for key, _, fmt in columns:
      cell = format(m[key], fmt) + (f" ± {format(sd[key], fmt)}" if seeds > 1 else "")
      counts = valid_counts(rows, name, key)
      if counts:
        cell += f" ({counts[0]}/{counts[1]})"
        marked = True
      cells.append(cell)
    lines.append(f"| {name} | {variants[name]} | {seeds} | {' | '.join(cells)} |")
  if marked:
    lines.append(f"\n(n/N): the per-seed mean is over the n of N {unit} where the metric is finite "
                 f"(fewest over seeds); the others were left out, not counted as zero.")
  return "\n".join(lines)


def class_table(rows: list, variants: Sequence[str], key: str = "iou", scale: float = 100.0) -> str:
  """Markdown table of a per-class metric (rows store {class: value} under `key`): one line per
  class, one column per variant that has rows, the mean over seeds times `scale` (nan: the class
  is absent from the evaluated views in some seed)."""
  present = [v for v in variants if any(r["variant"] == v and key in r for r in rows)]
  if not present:
    return ""
  classes = list(next(r[key] for r in rows if r["variant"] == present[0] and key in r))
  lines = ["| class | " + " | ".join(present) + " |", "|---|" + "---|" * len(present)]
  for c in classes:
    cells = [np.mean([scale * r[key].get(c, np.nan) for r in rows
                      if r["variant"] == v and key in r]) for v in present]
    lines.append(f"| {c} | " + " | ".join(f"{x:.1f}" for x in cells) + " |")
  return "\n".join(lines)


def bar_plot(rows: list, variants: Sequence[str], panels: Sequence[tuple], path: pathlib.Path,
             highlight: Mapping[str, str] = None) -> None:
  """One bar panel per (key, title) of `panels`; bars coloured by `highlight` (name -> colour)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  table = mean_rows(rows, variants, [p[0] for p in panels])
  names = list(table)
  fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
  for ax, (key, title) in zip(axes[0], panels):
    colours = [(highlight or {}).get(n, "tab:orange") for n in names]
    spread = [table[n][2][key] for n in names]
    ax.bar(range(len(names)), [table[n][0][key] for n in names], color=colours,
           yerr=[0.0 if np.isnan(e) else e for e in spread], capsize=3)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write_block(readme: pathlib.Path, table: str, marker: str = "RESULTS") -> None:
  """Replaces the text between <!-- {marker} START --> and <!-- {marker} END --> by `table`."""
  text = readme.read_text()
  start, end = f"<!-- {marker} START -->", f"<!-- {marker} END -->"
  if start not in text or end not in text:
    raise ValueError(f"{readme}: no {start} ... {end} block to write the table into")
  block = f"{start}\n{table}\n{end}"
  readme.write_text(re.sub(f"{re.escape(start)}.*{re.escape(end)}", lambda _: block, text,
                           flags=re.S))
