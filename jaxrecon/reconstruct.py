"""`python -m jaxrecon.reconstruct --images=DIR --out=OUT [--method=ffrm|fit] [--intrinsics=FILE]`.

--method=ffrm (default; needs --checkpoint=RUN): runs a trained Reliev3R model on all images of a
folder at once (one scene, b = 1, v = number of images) and writes depth, confidence, poses, a fused
point cloud and a COLMAP text model.
--method=fit [--tracker=sift] [--dense [--mono_depth=DIR [--mono_disparity]]]: no model; tracks the images and fits the scene to them
(`jaxrecon.reconstruct_fit`, whose docstring lists its outputs: poses.json with "registered",
points.ply of the triangulated tracks, a COLMAP model with tracks, report.json / report.md; with
--dense also plane-sweep MVS depth/ and confidence/ of the registered views and dense.ply; with
--mono_depth those come from an external model's monocular depth maps aligned to the fit instead).

Every input and output constraint is checked before the model runs or a file is written (one
line on stderr and exit status 2 otherwise, `jaxrecon.cli`). Outputs are written into a hidden
staging folder in --out and moved into place only when all are complete (`io.staging`): a failure
leaves an earlier run's outputs as they were; on success the earlier outputs (the names in
`export.views.OUTPUTS`) are replaced, and the command says so; other files there are left alone.
Image names with whitespace (which COLMAP's images.txt cannot hold) get `_` in colmap/; the
mapping is in colmap/renamed.json.

Inputs of --method=ffrm
  --checkpoint  a run's workdir (holding checkpoints/) or its checkpoints/ folder; the latest step
                is restored. The architecture comes from the run's own `config.json` (written by
                `jaxrecon.reliev3r.task.train`) when the workdir has one; otherwise from --config
                (default configs/reliev3r.py, overridable as --config.model.depth=...). When
                config.json exists, --config is ignored (it would have to match the checkpoint).
  --images      folder of .png/.jpg/... images, sorted by file name, all of one size.
  --intrinsics  intrinsics.json / .txt in the generic folder format (jaxrecon.data.formats.folder,
                K of the original images, top-left pixel centre at (0, 0)); default: the file of
                that name in the images folder, else in its parent.
Images are resized (whole frame, no crop; the aspect ratio may change) to the model input size
config.pipeline.(height, width), K rescaled with them.

Outputs of --method=ffrm in --out (model units; the world frame and scale are the network's gauge)
  depth/<stem>.npy         float32 (h, w) camera-frame z at the ORIGINAL image resolution
                           (bilinearly upsampled from the model's), + <stem>.png (turbo colours,
                           2-98 % percentiles of that view)
  confidence/<stem>.npy    float32 (h, w) confidence W in (0, 2), same resolution, + .png (viridis)
  poses.json               per image cam_from_world, world_from_cam (4x4), K (3x3); conventions
                           named in the file
  points.ply               fused coloured points from the model-resolution maps: x y z float32,
                           red green blue uchar, confidence float32; per view, pixels under the
                           --min_confidence_percentile-th confidence percentile are dropped
  colmap/images/           copies of the input images (COLMAP-safe names, see above)
  colmap/sparse/0/         cameras.txt (PINHOLE, original resolution), images.txt, points3D.txt
                           (the fused points, empty tracks)
"""
from __future__ import annotations

import importlib.util
import pathlib
import sys
import time

import ml_collections
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from jaxrecon import cli, export
from jaxrecon.data.transforms import crop_resize_camera, resize_images
from jaxrecon.errors import UserError
from jaxrecon.io import colmap_text, ply, poses, staging

# The model's modules (flax, orbax, grain, the trainer) are imported where --method=ffrm uses them:
# they are 0.6 s of a --method=fit run's start-up that it never needs.

DEFAULT_CONFIG = pathlib.Path(__file__).resolve().parents[1] / "configs" / "reliev3r.py"

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "model config when the run has no config.json (default configs/reliev3r.py)")
_METHOD = flags.DEFINE_enum("method", "ffrm", ["ffrm", "fit"], "ffrm: a trained model "
                            "(--checkpoint); fit: tracks + per-scene fit, no model")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "run workdir or its checkpoints/ folder "
                                  "(--method=ffrm)")
_TRACKER = flags.DEFINE_string("tracker", "sift", "feature tracker of --method=fit (sift, or what "
                               "jaxrecon.experts offers)")
_IMAGES = flags.DEFINE_string("images", None, "folder of the scene's images (one size)")
_INTRINSICS = flags.DEFINE_string("intrinsics", None, "intrinsics.json/.txt (default: found next "
                                  "to the images)")
_OUT = flags.DEFINE_string("out", None, "output folder")
_DENSE = flags.DEFINE_bool("dense", False, "--method=fit: also plane-sweep MVS depth and confidence "
                           "maps of the registered views and their fused cloud (dense.ply)")
_MONO_DEPTH = flags.DEFINE_string("mono_depth", None, "--method=fit --dense: folder of monocular "
                                  "depth maps <stem>.npy|.pfm|.png, aligned to the fit instead of "
                                  "the plane sweep")
_MONO_DISPARITY = flags.DEFINE_bool("mono_disparity", False, "--mono_depth holds affine-invariant "
                                    "disparity (MiDaS / Depth Anything), not depth")
_MIN_PERCENTILE = flags.DEFINE_float("min_confidence_percentile", 10.0, "per view, drop points "
                                     "under this confidence percentile from the point cloud")
flags.mark_flags_as_required(["images", "out"])


class Progress:
  """Stage counter on stderr: `[k/n] stage (elapsed s)`; `note` announces a long stage first."""

  def __init__(self, total: int):
    self.total, self.done, self.start = total, 0, time.perf_counter()

  def __call__(self, stage: str) -> None:
    self.done += 1
    print(f"[{self.done}/{self.total}] {stage} ({time.perf_counter() - self.start:.1f} s)",
          file=sys.stderr, flush=True)

  def note(self, what: str) -> None:
    print(f"      {what} ...", file=sys.stderr, flush=True)


def load_config(workdir: pathlib.Path, flag_config) -> tuple[ml_collections.ConfigDict, str]:
  """(config, where from): <workdir>/config.json, else the --config flag, else the default.
  UserError when the run is not a Reliev3R run (e.g. a Rewis3d segmentation run)."""
  from jaxrecon.train.runs import stored_config
  rewis3d = [m for m in ("rewis3d", "ema") if (workdir / m / "checkpoints").is_dir()]
  stored = stored_config(workdir)
  task = stored.get("task") if stored is not None else None
  if rewis3d or task == "rewis3d":
    raise UserError(f"{workdir} is a Rewis3d (segmentation) run: segment images with "
                    f"python -m jaxrecon.segment --checkpoint={workdir}; reconstruct needs a "
                    f"Reliev3R run (configs/reliev3r.py)")
  if stored is not None:
    if task not in (None, "reliev3r"):
      raise UserError(f"{workdir / 'config.json'}: task {task!r}; reconstruct needs a Reliev3R run")
    return stored, str(workdir / "config.json")
  if flag_config is not None:
    return flag_config, "--config"
  spec = importlib.util.spec_from_file_location("reliev3r_config", DEFAULT_CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(), str(DEFAULT_CONFIG)


def load_model(config, checkpoints: pathlib.Path):
  """(graphdef, train state, step) of the latest checkpoint in `checkpoints`."""
  from jaxrecon.reliev3r.task import build
  from jaxrecon.train.runs import restore_latest
  graphdef, _, init_state = build(config)
  state, step = restore_latest(checkpoints, init_state)
  return graphdef, state, step


def reconstruct(checkpoint, images, out, *, intrinsics=None, flag_config=None,
                min_confidence_percentile: float = 10.0) -> dict:
  """Everything the CLI does (see the module docstring); returns a summary dict.

  Raises UserError / FileNotFoundError naming the input at fault before the model runs; writes
  nothing unless every output is complete."""
  from jaxrecon.reliev3r.task import predict
  from jaxrecon.train.runs import locate_run
  progress = Progress(7)
  image_dir = pathlib.Path(images)
  paths, rgb = export.read_images(image_dir)
  names = [p.stem for p in paths]
  k_path = export.views.find_intrinsics(image_dir, intrinsics)
  k = export.read_intrinsics(k_path, names)
  colmap_names = export.views.colmap_names([p.name for p in paths])
  size = rgb.shape[1:3]
  workdir, checkpoints = locate_run(checkpoint)
  config, config_source = load_config(workdir, flag_config)
  # Checked here, not by the restore: before any work, and without starting Orbax's threads.
  if not any(p.name.isdigit() for p in checkpoints.iterdir()):
    raise FileNotFoundError(f"{checkpoints}: no checkpoint to restore (no step folders)")
  staged = staging.StagedOutput(out, export.views.OUTPUTS, label="reconstruct")
  progress(f"read {len(paths)} images of {size[1]}x{size[0]} and {k_path}")

  progress.note(f"restoring the model from {checkpoints}")
  graphdef, state, step = load_model(config, checkpoints)
  progress(f"restored step {step} from {checkpoints} (config {config_source})")

  model_hw = (int(config.pipeline.height), int(config.pipeline.width))
  small = resize_images(rgb, model_hw)
  k_small, _ = crop_resize_camera(k, None, (0, 0, size[0], size[1]), model_hw)
  progress.note(f"compiling and running the model on {len(names)} views")
  pred = predict(graphdef, state, (small.astype(np.float32) / 255.0)[None])
  depth, confidence = np.asarray(pred["depth"][0]), np.asarray(pred["confidence"][0])
  world_from_cam = np.asarray(pred["world_from_cam"][0], np.float64)
  progress(f"ran the model on {len(names)} views at {model_hw[1]}x{model_hw[0]}")

  with staged as stage:
    tmp = stage.path
    export.views.write_maps(tmp / "depth", names, export.resize_maps(depth, size), "turbo")
    export.views.write_maps(tmp / "confidence", names, export.resize_maps(confidence, size),
                            "viridis")
    progress("wrote depth/ and confidence/")

    poses.write_poses_json(tmp / "poses.json", names, [p.name for p in paths], k, world_from_cam,
                           size, extra={"checkpoint": str(checkpoints), "step": step,
                                        "model_input_size": list(model_hw)})
    progress("wrote poses.json")

    xyz, colors, conf, _ = export.fuse_points(
        depth, confidence, small, k_small, world_from_cam,
        min_confidence_percentile=min_confidence_percentile)
    ply.write_ply(tmp / "points.ply", xyz, colors, conf)
    progress(f"wrote points.ply ({len(xyz)} points)")

    export.views.write_colmap_images(tmp / "colmap" / "images", paths, colmap_names)
    colmap_text.write_colmap_text(tmp / "colmap" / "sparse" / "0", colmap_names, k,
                                  poses.rigid_inverse(world_from_cam), size,
                                  points=(xyz, colors))
    progress("wrote colmap/ (images, sparse/0)")
  for line in stage.notes():
    print(line, file=sys.stderr)
  return {"views": len(names), "points": int(len(xyz)), "step": step, "out": str(stage.out)}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  # A flag of the other method would be ignored silently: say so instead.
  misplaced = ("--checkpoint" if _METHOD.value == "fit" and _CHECKPOINT.value else
               "--tracker" if _METHOD.value == "ffrm" and _TRACKER.present else
               "--dense" if _METHOD.value == "ffrm" and _DENSE.value else
               "--mono_depth" if _METHOD.value == "ffrm" and _MONO_DEPTH.value else None)
  if misplaced:
    raise UserError(f"{misplaced} does not apply to --method={_METHOD.value}")
  if _METHOD.value == "fit":
    return _main_fit()
  if not _CHECKPOINT.value:
    raise UserError("--method=ffrm needs --checkpoint=RUN (a trained run); --method=fit needs none")
  summary = reconstruct(_CHECKPOINT.value, _IMAGES.value, _OUT.value,
                        intrinsics=_INTRINSICS.value, flag_config=_CONFIG.value,
                        min_confidence_percentile=_MIN_PERCENTILE.value)
  print(f"reconstructed {summary['views']} views ({summary['points']} points) -> "
        f"{summary['out']}", file=sys.stderr)
  return 0


def _main_fit() -> int:
  from jaxrecon import reconstruct_fit
  report = reconstruct_fit.reconstruct_fit(_IMAGES.value, _OUT.value,
                                           intrinsics=_INTRINSICS.value,
                                           tracker=_TRACKER.value, dense=_DENSE.value,
                                           mono_depth=_MONO_DEPTH.value,
                                           mono_disparity=_MONO_DISPARITY.value,
                                           progress=Progress(7 + bool(_DENSE.value)
                                                             + bool(_MONO_DEPTH.value)))
  reconstruct_fit.print_outcome(report)
  return 0


if __name__ == "__main__":
  cli.run(main, "reconstruct")
