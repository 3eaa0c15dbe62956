"""Registration report of a per-scene fit: report.json (everything) and report.md (a table).

The report says, per view, whether the fit placed it and how well (inlier observations, median
reprojection error in pixels, view-graph component), per optimisation stage how it ended, and
every warning the fit raised, so a user sees at a glance which views to distrust.
"""
from __future__ import annotations

import json
import math
import numbers
import os
import pathlib
from typing import Optional, Sequence

import numpy as np


def _number(x) -> Optional[float]:
  """JSON-safe float: None for NaN / inf (JSON has no NaN)."""
  x = float(x)
  return x if math.isfinite(x) else None


def _json_value(x):
  """A stage entry as JSON: numpy scalars -> Python numbers (NaN -> None), other -> str."""
  if isinstance(x, (bool, np.bool_)):
    return bool(x)
  if isinstance(x, numbers.Integral):
    return int(x)
  if isinstance(x, numbers.Real):
    return _number(x)
  return x if isinstance(x, str) or x is None else str(x)


def registration_report(files: Sequence[str], result, *, points: int, observations: int,
                        timings: dict, extra: Optional[dict] = None) -> dict:
  """The report as a JSON-ready dict.

  Args:
    files: v image file names, in view order.
    result: a `jaxrecon.fit.FitResult` (reads registered, num_observations, view_residual_px,
      components, stages, warnings, and duplicates when it has them).
    points, observations: the points and TRACK entries of the written model.
    timings: {step: seconds}.
    extra: more top-level entries (inputs, tracker, ...).
  """
  files = list(files)
  component_of = {int(i): c for c, views in enumerate(result.components) for i in views}
  views = [{"name": name, "registered": bool(result.registered[i]),
            "num_observations": int(result.num_observations[i]),
            "residual_px": _number(result.view_residual_px[i]),
            "component": component_of.get(i)} for i, name in enumerate(files)]
  residuals = [v["residual_px"] for v in views if v["residual_px"] is not None]
  stages = [{str(key): _json_value(value) for key, value in dict(stage).items()}
            for stage in result.stages]
  return {
      "summary": {
          "views": len(files),
          "registered": sum(v["registered"] for v in views),
          "unregistered": [v["name"] for v in views if not v["registered"]],
          "components": len(result.components),
          "points": int(points), "observations": int(observations),
          "median_view_residual_px": (float(np.median(residuals)) if residuals else None),
      },
      "views": views, "stages": stages, "warnings": [str(w) for w in result.warnings],
      # View pairs the fit found (near) identical: one of each pair adds no geometry.
      "duplicates": [[files[i], files[j]] for i, j in getattr(result, "duplicates", ())],
      "timings": {key: round(float(value), 3) for key, value in timings.items()},
      **(extra or {}),
  }


def summary_line(report: dict) -> str:
  """One line, e.g. `registered 18/19 views (1 unregistered: foo.png); 2301 points, median view
  residual 0.41 px`."""
  s = report["summary"]
  line = f"registered {s['registered']}/{s['views']} views"
  if s["unregistered"]:
    shown = ", ".join(s["unregistered"][:5]) + (", ..." if len(s["unregistered"]) > 5 else "")
    line += f" ({len(s['unregistered'])} unregistered: {shown})"
  line += f"; {s['points']} points"
  if s["median_view_residual_px"] is not None:
    line += f", median view residual {s['median_view_residual_px']:.2f} px"
  if report["warnings"]:
    line += f"; {len(report['warnings'])} warning(s)"
  return line


def _cell(x, fmt: str = "") -> str:
  return "-" if x is None else format(x, fmt)


def report_markdown(report: dict) -> str:
  """report.md: the summary line, the per-view table, the stages and the warnings."""
  lines = ["# Registration report", "", summary_line(report), "",
           "| view | registered | inlier observations | median residual (px) | component |",
           "|---|---|---|---|---|"]
  for v in report["views"]:
    lines.append(f"| {v['name']} | {'yes' if v['registered'] else '**no**'} | "
                 f"{v['num_observations']} | {_cell(v['residual_px'], '.2f')} | "
                 f"{_cell(v['component'])} |")
  if report["stages"]:
    lines += ["", "| stage | iterations | converged | cost start | cost end | message |",
              "|---|---|---|---|---|---|"]
    for st in report["stages"]:
      lines.append(f"| {st.get('name', '')} | {st.get('iterations', '')} | "
                   f"{st.get('converged', '')} | {_cell(st.get('cost_start'), '.4g')} | "
                   f"{_cell(st.get('cost_end'), '.4g')} | {st.get('message', '')} |")
  lines += ["", "## Warnings", ""] + ([f"- {w}" for w in report["warnings"]] or ["none"])
  if report.get("duplicates"):
    lines += ["", "Duplicate views (near identical): "
              + ", ".join(f"{a} = {b}" for a, b in report["duplicates"])]
  timings = ", ".join(f"{key} {value:.1f} s" for key, value in report["timings"].items())
  lines += ["", f"Timings: {timings}", ""]
  return "\n".join(lines)


def write_report(folder: str | os.PathLike, report: dict) -> tuple[pathlib.Path, pathlib.Path]:
  """Writes <folder>/report.json and <folder>/report.md; returns their paths."""
  folder = pathlib.Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  json_path, md_path = folder / "report.json", folder / "report.md"
  json_path.write_text(json.dumps(report, indent=1, allow_nan=False))
  md_path.write_text(report_markdown(report))
  return json_path, md_path
