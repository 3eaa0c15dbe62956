"""Reliev3R inference memory and time against the number of views (#15, many views).

    python experiments/bench_inference_views.py        # writes bench_inference_views.{md,json}

Two tables:
  paper  the paper FFRM forward (36 layers, bf16 compute, 518^2 views), compile-only (it never
         runs): compiled temporaries from XLA:CPU's memory analysis for 8 .. 200 views, with the
         query-chunked attention kernel ("chunked", "auto" on CPU) and the reference ("xla") up to
         64 views. Each compile in a fresh process (`bench_attention_memory.run_isolated`).
  demo   the demo-size model (ModelConfig.tiny, 64^2 views) actually executed on this CPU: median
         wall seconds of the jitted forward over repeats after a warm-up, and its compiled
         temporaries, for the same view counts (the reference up to 64 views).
"""
from __future__ import annotations

import json
import os
import pathlib
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from bench_attention_memory import GIB, HERE, load_average, run_isolated  # noqa: E402
from timing import median_seconds  # noqa: E402

VIEWS = (8, 16, 32, 64, 128, 200)
REFERENCE_MAX_VIEWS = 64

EXPECTED = """\
Written before the change: the global layers' attention matrices are (heads, 1377 v, 1377 v), so
the reference's temporaries grow with v^2 (paper, bf16 probabilities + float32 logits: ~6 B x 16
x (1377 v)^2 = 12 GB at 8 views, ~7.5 TB at 200). With the chunked kernel one block holds
(16, 512, 1377 v) float32 logits (45 MB per view), and the activations (dense head at full
resolution, 8 x 518^2 x 16 channels per view) are linear in v too: expect temporaries linear in
v, a few GiB at 8 views and tens of GiB at 200 (the doubling from 100 to 200 views should double
them, not quadruple). Demo-size seconds: linear in v while frame attention and MLPs dominate,
turning quadratic (global attention FLOPs ~ v^2) at large v for both kernels.
"""


def demo_rows() -> list[dict]:
  """Executed on CPU: the tiny model, one scene of v views of 64^2, per kernel."""
  import jax
  from flax import nnx
  from jaxrecon.models import ModelConfig, Reliev3R

  model = Reliev3R(ModelConfig.tiny(), rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(model)
  rows = []
  for attention in ("chunked", "xla"):
    g = nnx.graphdef(nnx.eval_shape(lambda: Reliev3R(ModelConfig.tiny(attention=attention),
                                                     rngs=nnx.Rngs(0))))
    forward = jax.jit(lambda s, x, g=g: nnx.merge(g, s)(x)["depth"])
    for v in VIEWS:
      if attention == "xla" and v > REFERENCE_MAX_VIEWS:
        continue
      images = jax.random.uniform(jax.random.key(v), (1, v, 64, 64, 3))
      compiled = forward.lower(state, images).compile()
      compiled(state, images).block_until_ready()            # warm-up
      repeats = 5 if v <= 32 else 2
      seconds = median_seconds(lambda: compiled(state, images).block_until_ready(), repeats)
      mem = compiled.memory_analysis()
      rows.append(dict(table="demo", attention=attention, views=v, seconds=seconds,
                       temp_bytes=int(mem.temp_size_in_bytes)))
      print(rows[-1], flush=True)
  return rows


def paper_rows() -> list[dict]:
  rows = []
  for attention in ("chunked", "xla"):
    for v in VIEWS:
      if attention == "xla" and v > REFERENCE_MAX_VIEWS:
        continue
      rows.append(dict(run_isolated("forward", 18, attention, views=v), table="paper"))
      print(rows[-1], flush=True)
  return rows


def _table(rows, table, value, header):
  """Markdown table: one row per view count, one column per kernel, plus the chunked ratio to the
  previous view count (2 = linear when the views double)."""
  cells = {(r["attention"], r["views"]): r for r in rows if r["table"] == table}
  md = [f"| views | {header} chunked | {header} xla (reference) | chunked xla/chunked | "
        "chunked growth vs previous row / views growth |", "|---|---|---|---|---|"]
  prev = None
  for v in VIEWS:
    c, x = cells.get(("chunked", v), {}), cells.get(("xla", v), {})
    fmt = lambda r: value(r) if r and "error" not in r else (f"failed: {r['error']}" if r else "-")
    ratio = f"{value(x, raw=True) / value(c, raw=True):.1f}" if c and x and "error" not in c \
        and "error" not in x else "-"
    growth = "-"
    if prev and c and "error" not in c and "error" not in prev[1]:
      growth = f"{(value(c, raw=True) / value(prev[1], raw=True)) / (v / prev[0]):.2f}"
    md.append(f"| {v} | {fmt(c)} | {fmt(x)} | {ratio} | {growth} |")
    prev = (v, c) if c else prev
  return md


def main():
  rows = demo_rows() + paper_rows()
  gib = lambda r, raw=False: r["temp_bytes"] / GIB if raw else f"{r['temp_bytes'] / GIB:.2f}"
  sec = lambda r, raw=False: r["seconds"] if raw else f"{r['seconds']:.3f}"
  md = [__doc__.split("\n")[0], "", "    " + __doc__.split("\n")[2].strip(), "", EXPECTED,
        f"Measured (host load average {load_average()} on 2 cores at the end; seconds are "
        "noisy):", "", "Paper FFRM forward, compiled temporaries (GiB), one scene:", ""]
  md += _table(rows, "paper", gib, "temp GiB") + ["", "Demo-size model executed on CPU, one "
                                                   "scene of 64^2 views:", ""]
  md += _table(rows, "demo", sec, "seconds") + [""]
  md += _table(rows, "demo", gib, "temp GiB")
  (HERE / "bench_inference_views.md").write_text("\n".join(md) + "\n")
  (HERE / "bench_inference_views.json").write_text(json.dumps(rows, indent=1) + "\n")
  print("\n".join(md))


if __name__ == "__main__":
  main()
