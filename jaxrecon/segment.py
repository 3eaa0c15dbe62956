"""`python -m jaxrecon.segment --checkpoint=RUN --images=DIR --out=OUT [--height=H --width=W]`.

Runs the 2D student of a trained Rewis3d (or EMA baseline) run on every image of a folder: 2D only,
no reconstruction at inference.

Inputs
  --checkpoint  a method's run folder (<workdir>/rewis3d or <workdir>/ema, holding checkpoints/
                and config.json) or the workdir of `python -m jaxrecon.main
                --config=configs/rewis3d.py` (then its "rewis3d" run, else its "ema" run).
  --images      folder of .png/.jpg/... images, sorted by file name; sizes may differ.
  --height/--width  optional size the images are resized to before segmentation (use the
                resolution the model was trained at when the images are much larger); the label
                maps are resized back (nearest) to each image's own size.
Each image is segmented by sliding windows of the training crop size (half-window stride,
overlapping logits averaged).

Outputs in --out
  labels/<stem>.png   uint8 class index per pixel (the config's class_names order)
  color/<stem>.png    the same labels colour-mapped (fixed palette)
  classes.json        class names and palette colours

Every image is read and checked, and --out checked, before the model is restored; the outputs are
staged (`io.staging`) and moved into place when all are written, replacing an earlier run's
labels/, color/ and classes.json (other files in --out are left alone). Errors: one line on
stderr and exit status 2 (`jaxrecon.cli`).
"""
from __future__ import annotations

import json
import pathlib
import sys
import time

import numpy as np
from absl import app, flags, logging

from jaxrecon import cli
from jaxrecon.data.transforms import resize_images, resize_nearest
from jaxrecon.errors import UserError
from jaxrecon.evaluate.segmentation import colorize, palette
from jaxrecon.io import files, staging
from jaxrecon.train.runs import locate_run, restore_latest, stored_config
from jaxrecon.rewis3d.task import build_seg, predict_logits

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Rewis3d run folder (see --help)")
_IMAGES = flags.DEFINE_string("images", None, "folder of images to segment")
_OUT = flags.DEFINE_string("out", None, "output folder")
_HEIGHT = flags.DEFINE_integer("height", 0, "resize images to this height first (0: keep)")
_WIDTH = flags.DEFINE_integer("width", 0, "resize images to this width first (0: keep)")
flags.mark_flags_as_required(["checkpoint", "images", "out"])


def method_run(checkpoint: str) -> pathlib.Path:
  """The folder of one method's run (config.json + checkpoints/) for --checkpoint."""
  path = pathlib.Path(checkpoint).absolute()
  if not path.is_dir():
    raise FileNotFoundError(f"checkpoint folder not found: {path}")
  if path.name == "checkpoints":
    path = path.parent
  if not (path / "checkpoints").is_dir():
    for method in ("rewis3d", "ema"):
      if (path / method / "checkpoints").is_dir():
        return path / method
    raise FileNotFoundError(f"{path}: no checkpoints/ here nor in rewis3d/ or ema/")
  return path


OUTPUTS = ("labels", "color", "classes.json")


def check_images(images) -> list[pathlib.Path]:
  """The image files of the folder, each decoded once to check it (UserError naming the first
  unreadable one; FileNotFoundError for a missing or empty folder), before any work."""
  paths = files.list_images(files.require_dir(images, "images folder"))
  stems = [p.stem for p in paths]
  if len(set(stems)) != len(stems):
    raise UserError(f"{images}: two images share a name up to the suffix (their label maps "
                    f"would overwrite each other)")
  for path in paths:
    files.read_rgb(path)
  return paths


def _say(start: float, what: str) -> None:
  print(f"{what} ({time.perf_counter() - start:.1f} s)", file=sys.stderr, flush=True)


def segment(checkpoint, images, out, *, size=None) -> dict:
  """Everything the CLI does; returns a summary dict."""
  start = time.perf_counter()
  run = method_run(checkpoint)
  workdir, checkpoints = locate_run(str(run))
  config = stored_config(workdir)
  if config is None or config.get("task") != "rewis3d":
    task = None if config is None else config.get("task")
    hint = (f" ({workdir} is a {task} run: reconstruct with python -m jaxrecon.reconstruct)"
            if task == "reliev3r" else " (train with configs/rewis3d.py)")
    raise UserError(f"{workdir}: no Rewis3d config.json{hint}")
  if size is not None and min(size) <= 0:
    raise UserError(f"--height/--width: expected positive sizes, got {size}")
  if not any(p.name.isdigit() for p in checkpoints.iterdir()):
    raise FileNotFoundError(f"{checkpoints}: no checkpoint to restore (no step folders)")
  paths = check_images(images)
  staged = staging.StagedOutput(out, OUTPUTS, label="segment")
  _say(start, f"checked {len(paths)} images in {images}")

  method = config.methods
  graphdefs, _, init_state = build_seg(config, method)
  state, step = restore_latest(checkpoints, init_state)
  branch = state.branches["2d"]
  graphdef = dict(graphdefs)["2d"]
  num_classes = int(config.model2d.num_classes)
  window = (int(config.pipeline.height), int(config.pipeline.width))
  colours = palette(num_classes)
  _say(start, f"restored the {method} run's step {step} from {checkpoints}; the first image "
              f"compiles the model")

  with staged as stage:
    for i, path in enumerate(paths):
      rgb = files.read_rgb(path)
      small = rgb if size is None else resize_images(rgb[None], size)[0]
      logits = predict_logits(graphdef, branch.params, branch.rest, small, window, num_classes)
      labels = logits.argmax(-1).astype(np.uint8)
      if labels.shape != rgb.shape[:2]:
        labels = resize_nearest(labels[None], rgb.shape[:2])[0]
      files.write_png(stage.path / "labels" / f"{path.stem}.png", labels)
      files.write_png(stage.path / "color" / f"{path.stem}.png", colorize(labels, colours))
      print(f"\r[{i + 1}/{len(paths)}] {path.name} ({time.perf_counter() - start:.1f} s)", end="",
            file=sys.stderr, flush=True)
    print(file=sys.stderr)
    (stage.path / "classes.json").write_text(json.dumps(
        {"classes": list(config.class_names), "palette": colours.tolist(),
         "checkpoint": str(checkpoints), "step": step, "method": method}, indent=2))
  for line in stage.notes():
    print(line, file=sys.stderr)
  return {"images": len(paths), "method": method, "step": step, "out": str(stage.out)}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  size = None
  if _HEIGHT.value or _WIDTH.value:
    size = (_HEIGHT.value, _WIDTH.value)
  summary = segment(_CHECKPOINT.value, _IMAGES.value, _OUT.value, size=size)
  print(f"segmented {summary['images']} images with the {summary['method']} run (step "
        f"{summary['step']}) -> {summary['out']}", file=sys.stderr)


if __name__ == "__main__":
  cli.run(main, "segment")
