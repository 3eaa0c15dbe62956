"""The `--method=fit` path of `python -m jaxrecon.reconstruct`: tracks -> per-scene fit -> files.

No trained model: feature tracks of the images (`jaxrecon.experts`, e.g. SIFT) are fitted by
`jaxrecon.fit.fit_scene`, which places the views it can and says which it cannot.

Outputs in --out (the fit's gauge: camera 0 at the origin, world units set by the fit, not metric)
  poses.json     as the FFRM path, plus "registered" per image; an unregistered image has null
                 cam_from_world / world_from_cam (never a guessed pose)
  points.ply     the model's triangulated tracks (see `io.colmap_sparse.model_observations`):
                 x y z float32, red green blue uchar = image colour at the track's first inlier
                 observation, confidence float32 = number of inlier observations (track length)
  colmap/images/ copies of the input images (whitespace in names -> "_", see colmap/renamed.json)
  colmap/sparse/0/ cameras.txt, images.txt with POINTS2D (registered views only), points3D.txt
                 with ERROR and TRACK[]: COLMAP's bundle adjuster and MVS can run on it
  report.json, report.md  per view: registered, inlier observations, median residual (px),
                 view-graph component; per fit stage; warnings; timings
With dense=True (--dense), for the registered views (`jaxrecon.mvs`, the fitted cameras and the
fit's points choosing neighbours and depth range):
  depth/<stem>.npy       float32 (h, w) camera z in the fit's units at the image resolution; NaN
                         where the plane sweep kept nothing (confidence 0), + .png (turbo)
  confidence/<stem>.npy  float32 (h, w) in [0, 1] (photometric x fraction of confirming
                         neighbours), + .png (viridis)
  dense.ply              the fused cloud: x y z float32, red green blue uchar, confidence float32
  report.json gets "dense_points" and "dense_ground_plane" (whether a ground plane was found in
  the fit's points and swept as a second direction, `mvs.ground`).
With mono_depth=DIR (--mono_depth, needs --dense), the same files come from monocular depth maps
instead of the plane sweep: `<DIR>/<stem>.npy|.pfm|.png` per image (`experts.FileDepthExpert`;
--mono_disparity when they hold affine-invariant disparity, e.g. MiDaS / Depth Anything), each
registered view's map aligned by a robust scale and shift to the fit's points it observed (in
inverse depth for disparity, in depth otherwise) and kept where neighbouring views' aligned maps
agree (`mvs.dense_from_mono`); report.json gets each view's alignment under "mono_alignment".
"""
from __future__ import annotations

import pathlib
import sys
import time
import warnings

import numpy as np

from jaxrecon import experts, export
from jaxrecon.errors import UserError
from jaxrecon.export import report as report_lib
from jaxrecon.io import colmap_sparse, ply, poses, staging

UNITS = ("the fit's gauge: camera 0 is the world frame, the scale is set by the fit (not metric); "
         "compare to other poses after a similarity alignment")


def trackers() -> tuple[str, ...]:
  """The --tracker values `jaxrecon.experts` offers: "sift" always, plus those its TRACKERS list
  names (e.g. the learned XFeat trackers), so a tracker added there needs no change here."""
  offered = getattr(experts, "TRACKERS", None) or getattr(experts.tracks, "TRACKERS", ())
  return tuple(dict.fromkeys(("sift",) + tuple(offered)))


def track(images: np.ndarray, intrinsics: np.ndarray, tracker: str):
  """`experts.Tracks` of the images (v, h, w, 3) uint8 with K (v, 3, 3), by the named tracker."""
  if tracker not in trackers():
    raise UserError(f"--tracker={tracker} is not one of {', '.join(trackers())}")
  if tracker == "sift":
    return experts.track_images(list(images), intrinsics)
  return experts.track_images(list(images), intrinsics, tracker=tracker)


def _fit(tracks, intrinsics, files):
  """fit_scene on the tracks; its FitWarnings are caught here (they are in result.warnings, which
  the command prints and reports once)."""
  from jaxrecon import fit   # only this path needs the fitting stack
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", fit.FitWarning)
    return fit.fit_scene(tracks.pixels, tracks.visible & tracks.mask[:, None], intrinsics,
                         view_names=files)


def reconstruct_fit(images, out, *, intrinsics=None, tracker: str = "sift", dense: bool = False,
                    mono_depth=None, mono_disparity: bool = False, progress=None) -> dict:
  """Everything `--method=fit` does (see the module docstring).

  Inputs and outputs are checked before any work: UserError / FileNotFoundError with one line
  naming the folder, image or flag (no images, mixed sizes, no intrinsics file -> --intrinsics,
  unknown tracker, --out not a folder, two names equal once COLMAP-safe). Outputs are staged
  (`io.staging`): a failure leaves an earlier run's outputs as they were.
  Returns:
    the report dict (`export.report.registration_report`) plus "out" and "replaced".
  """
  progress = progress or (lambda stage: None)
  timings, clock = {}, time.perf_counter()
  image_dir = pathlib.Path(images)
  paths, rgb = export.read_images(image_dir)
  names, files = [p.stem for p in paths], [p.name for p in paths]
  k_path = export.views.find_intrinsics(image_dir, intrinsics)
  k = export.read_intrinsics(k_path, names)
  if len(paths) < 2:
    raise UserError(f"{image_dir}: a fit needs at least 2 images, found {len(paths)}")
  if tracker not in trackers():
    raise UserError(f"--tracker={tracker} is not one of {', '.join(trackers())}")
  mono = _read_mono(mono_depth, mono_disparity, dense, files, rgb.shape[1:3])
  colmap_names = export.views.colmap_names(files)
  staged = staging.StagedOutput(out, export.views.OUTPUTS, label="reconstruct")
  size = rgb.shape[1:3]
  timings["read_s"] = time.perf_counter() - clock
  progress(f"read {len(paths)} images of {size[1]}x{size[0]} and {k_path}")

  clock = time.perf_counter()
  note = getattr(progress, "note", None)
  if note and tracker != "sift":   # the learned trackers convert their weights on first use
    note(f"tracking with {tracker} (the first use converts and caches its weights)")
  tracks = track(rgb, k, tracker)
  timings["tracks_s"] = time.perf_counter() - clock
  progress(f"{tracker} tracks: {int(tracks.mask.sum())} tracks, "
           f"{int((tracks.visible & tracks.mask[:, None]).sum())} observations")
  # Input, not a bug: images without overlap (or texture) give the fit nothing to work with.
  if not np.any((tracks.visible & tracks.mask[:, None]).sum(1) >= 2):
    raise UserError(f"{image_dir}: the {tracker} tracker found no feature seen in two or more "
                    f"images, so there is nothing to fit (images of one scene, with overlap "
                    f"and texture, are needed)")

  result = _fit(tracks, k, files)
  timings["init_s"], timings["fit_s"] = float(result.init_seconds), float(result.fit_seconds)
  # A view is registered when the fit says so AND its pose is finite (one truth for all outputs).
  registered = np.asarray(result.registered, bool) & np.all(
      np.isfinite(result.cam_from_world), axis=(1, 2))
  result = result._replace(registered=registered)
  progress(f"fitted: {int(registered.sum())}/{len(names)} views registered")

  clock = time.perf_counter()
  with staged as stage:
    written = _write_outputs(stage.path, paths, colmap_names, rgb, k, tracks, result, registered,
                             progress, extra={"method": "fit", "tracker": tracker,
                                              "intrinsics_file": str(k_path)})
    timings["write_s"] = time.perf_counter() - clock
    if dense:
      clock = time.perf_counter()
      dense_points, alignment, ground = _write_dense(stage.path, names, rgb, k, result,
                                                     registered, progress, mono)
      timings["dense_s"] = time.perf_counter() - clock
    report = report_lib.registration_report(
        files, result, points=written["points"], observations=written["observations"],
        timings=timings, extra={"inputs": {"images": str(image_dir), "intrinsics": str(k_path)},
                                "tracker": tracker,
                                "tracks": {"tracks": int(tracks.mask.sum()),
                                           "conflicting_dropped": int(tracks.num_conflicting)},
                **({"dense_points": dense_points} if dense else {}),
                **({"dense_ground_plane": ground} if dense and mono is None else {}),
                **({"mono_alignment": alignment} if mono is not None else {})})
    report_lib.write_report(stage.path, report)
    progress("wrote report.json, report.md")
  for line in stage.notes():
    print(line, file=sys.stderr)
  return {**report, "out": str(stage.out), "replaced": stage.replaced}


def _write_outputs(out: pathlib.Path, paths, colmap_names, rgb, k, tracks, result, registered,
                   progress, extra: dict) -> dict:
  """poses.json, points.ply and colmap/ of a fit into `out`; returns write_colmap_sparse's
  counts."""
  names, files, size = [p.stem for p in paths], [p.name for p in paths], rgb.shape[1:3]
  # (fit_scene's rotations are exact: re-orthonormalised in float64.)
  cam_from_world = np.where(registered[:, None, None], result.cam_from_world, np.nan)
  world_from_cam = poses.rigid_inverse(np.where(registered[:, None, None], cam_from_world,
                                                np.eye(4)))
  poses.write_poses_json(out / "poses.json", names, files, k, world_from_cam, size,
                         registered=registered, units=UNITS, extra=extra)
  progress("wrote poses.json")

  observed = tracks.visible & tracks.mask[:, None]
  use = colmap_sparse.model_observations(tracks.pixels, observed, result.inlier, result.points,
                                         k, cam_from_world)
  keep = use.any(1)
  colors = colmap_sparse.track_colors(rgb, tracks.pixels, use)
  ply.write_ply(out / "points.ply", result.points[keep], colors[keep],
                use[keep].sum(1).astype(np.float32))
  progress(f"wrote points.ply ({int(keep.sum())} points)")

  export.views.write_colmap_images(out / "colmap" / "images", paths, colmap_names)
  written = colmap_sparse.write_colmap_sparse(
      out / "colmap" / "sparse" / "0", colmap_names, k, cam_from_world, size,
      pixels=tracks.pixels, observed=observed, points=result.points, inlier=result.inlier,
      colors=colors)
  progress(f"wrote colmap/ ({written['images']} images, {written['points']} points, "
           f"{written['observations']} observations)")
  return written


def _read_mono(directory, disparity: bool, dense: bool, files, size):
  """(depth (v, h, w), valid, space) of the monocular maps of every image, or None without a
  directory; UserError naming the flag, folder or file when they cannot serve (before any work)."""
  if directory is None:
    if disparity:
      raise UserError("--mono_disparity says how to read --mono_depth, which is not given")
    return None
  if not dense:
    raise UserError("--mono_depth gives the dense maps: it needs --dense")
  if not pathlib.Path(directory).is_dir():
    raise UserError(f"--mono_depth={directory} is not a folder")
  try:
    maps = experts.FileDepthExpert(directory, disparity=disparity)(files)
  except (FileNotFoundError, ValueError) as err:
    raise UserError(f"--mono_depth: {err}") from None
  if maps.depth.shape[1:] != tuple(size):
    raise UserError(f"--mono_depth: the maps are {maps.depth.shape[2]}x{maps.depth.shape[1]}, "
                    f"the images {size[1]}x{size[0]}")
  return maps.depth, maps.valid, "inverse" if disparity else "depth"


def _write_dense(out: pathlib.Path, names, rgb, k, result, registered, progress, mono=None):
  """depth/, confidence/ and dense.ply of the registered views (module docstring), by the plane
  sweep or, given mono = (depth, valid, space), from the aligned monocular maps. Returns the
  number of fused points, the per-view alignments (None for the sweep) and whether the sweep
  found and swept a ground plane (None for mono or nothing swept). Fewer than 2 registered
  views: nothing to match, nothing written."""
  from jaxrecon import mvs   # only this path needs the plane sweep
  views = np.nonzero(registered)[0]
  if len(views) < 2:
    progress("dense: fewer than 2 registered views, no depth maps")
    return 0, None, None
  points, observed = result.model_points(views)
  alignment = None
  if mono is None:
    dense = mvs.reconstruct_dense(rgb[views], k[views], result.cam_from_world[views], points,
                                  settings=mvs.MVSSettings(**mvs.VALIDATED),
                                  point_views=observed)
  else:
    depth_maps, valid, space = mono
    dense = mvs.dense_from_mono(rgb[views], depth_maps[views], valid[views], k[views],
                                result.cam_from_world[views], points, observed,
                                mvs.MonoSettings(space=space))
    alignment = {names[i]: {key: (None if isinstance(val, float) and not np.isfinite(val)
                                  else val) for key, val in a._asdict().items()}
                 for i, a in zip(views, dense.alignments)}
    fitted = sum(np.isfinite(a.scale) for a in dense.alignments)
    progress(f"mono: {fitted}/{len(views)} views aligned ({space} space)")
  depth = np.where(dense.confidence > 0, dense.depth, np.nan)
  kept = [names[i] for i in views]
  export.views.write_maps(out / "depth", kept, depth, "turbo")
  export.views.write_maps(out / "confidence", kept, dense.confidence, "viridis")
  ply.write_ply(out / "dense.ply", dense.points, dense.colors, dense.point_confidence)
  ground, said = None, ""
  if mono is None:
    # Whether the second sweep direction ran: it decides how well a ground is covered.
    ground = dense.ground is not None
    said = ("; ground plane found and swept" if ground
            else "; no ground plane found (fronto-parallel sweep only)")
  progress(f"dense: depth/, confidence/ of {len(views)} views, dense.ply "
           f"({len(dense.points)} points){said}")
  return int(len(dense.points)), alignment, ground


def print_outcome(report: dict, stream=sys.stderr) -> None:
  """The fit's warnings, then the one-line summary, on `stream`."""
  for warning in report["warnings"]:
    print(f"warning: {warning}", file=stream)
  print(f"{report_lib.summary_line(report)} -> {report['out']}", file=stream)
