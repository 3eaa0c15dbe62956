"""Shared plumbing of the ablation scripts: results.json rows -> mean over seeds -> a markdown table
in a README (between RESULTS markers) and a bar plot."""
from __future__ import annotations

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
           unit: str = "scenes") -> None:
  """Prints the table, writes <folder>/ablation.png and the README block."""
  table = markdown(rows, descriptions, columns, unit)
  print(table)
  bar_plot(rows, list(descriptions), panels, folder / "ablation.png", highlight)
  write_block(folder / "README.md", table)


def run_missing(results_path: pathlib.Path, only: str, descriptions: Mapping[str, str],
                run_variant: Callable[[str], dict], *, seed: int, steps_of: Callable[[str], int],
                report_only: bool = False) -> list:
  """Runs the variants (all, or the comma-separated `only`) not yet in results.json for this seed
  and budget, appending each row as it finishes; returns all rows."""
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
  return rows


def mean_rows(rows: list, variants: Sequence[str], keys: Sequence[str]) -> dict:
  """variant -> (mean of each key over seeds, number of seeds), in `variants` order. A seed whose
  value is nan (or missing) makes the mean nan: never silently dropped."""
  table = {}
  for name in variants:
    mine = [r for r in rows if r["variant"] == name]
    if mine:
      table[name] = ({k: float(np.mean([r.get(k, np.nan) for r in mine])) for k in keys},
                     len(mine))
  return table


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
  """columns: (key, header, format) triples; variants: name -> description. A cell whose per-seed
  means skipped nan `unit`s is marked (n/N): n valid of N, fewest over seeds."""
  table = mean_rows(rows, list(variants), [c[0] for c in columns])
  lines = ["| variant | what | seeds | " + " | ".join(c[1] for c in columns) + " |",
           "|---|---|---|" + "---|" * len(columns)]
  marked = False
  for name, (m, seeds) in table.items():
    cells = []
    for key, _, fmt in columns:
      cell = format(m[key], fmt)
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
    ax.bar(range(len(names)), [table[n][0][key] for n in names], color=colours)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write_block(readme: pathlib.Path, table: str) -> None:
  """Replaces the text between <!-- RESULTS START --> and <!-- RESULTS END --> by `table`."""
  text = readme.read_text()
  block = f"<!-- RESULTS START -->\n{table}\n<!-- RESULTS END -->"
  readme.write_text(re.sub(r"<!-- RESULTS START -->.*<!-- RESULTS END -->", lambda _: block, text,
                           flags=re.S))
