"""Per-scene fitting vs COLMAP on the fit test cases (`jaxrecon.evaluate.fit_cases`), issue #12.

Usage:
  python experiments/bench_fit_colmap.py [--cases temple_all,lego,...]
      [--methods colmap_incremental,colmap_global,jaxrecon] [--data ../shared/data]
      [--timeout 1200] [--out experiments/bench_fit_colmap.md]

For each case, every method gets the same images and the same fixed intrinsics:
* colmap_incremental / colmap_global: pycolmap (a benchmark reference only, never a jaxrecon
  dependency): SIFT extraction (one PINHOLE camera from K; COLMAP puts the top-left pixel centre
  at (0.5, 0.5), so cx, cy + 0.5), exhaustive matching with geometric verification, then
  `pycolmap.incremental_mapping` or `pycolmap.global_mapping` (GLOMAP), intrinsics held fixed
  (no focal / principal point / extra parameter refinement), 2 threads, seed 0, COLMAP defaults
  otherwise except min_model_size 3 (the incremental default, 10, would drop any model of a
  small case's second view group). COLMAP may return several models (view groups); the largest
  one is scored, the others are listed.
* jaxrecon: `experts.track_images(images, K)` then `fit.fit_scene(tracks.pixels,
  tracks.visible & tracks.mask[:, None], K)` with default settings, in a fresh process without a
  persistent compilation cache (every XLA program compiled: a first run).
* jaxrecon_warm: the same with the persistent compilation cache the commands use
  (`jaxrecon.cli.use_compile_cache`), in a folder of this bench run that one untimed run of the
  same case filled first: a repeated run on inputs of these shapes.
Each (case, method) runs in its own process (a crash or a --timeout is a row, not the end).

Scores, over the views a method registered that have ground truth (blank / foreign views have
none; registration of those is shown in the "extra" column):
  reg: registered views / all views.
  rot med: median per-camera rotation error (deg) after a sim(3) alignment of the camera centres
    (`evaluate.metrics.align_cameras_sim3`); where the ground-truth centres coincide (rotation
    only) the centres cannot fix the similarity and the single best rotation is used instead
    (marked "R").
  bad: registered views whose median relative rotation error against the other registered views
    exceeds 5 deg (gross mis-registrations, e.g. a view placed on the wrong side of a symmetric
    object; one such view also spoils the sim(3) alignment, hence rot med).
  rel rot med: median relative rotation error (deg) over registered pairs (gauge-free).
  AUC@30 reg: pose AUC@30 (`metrics.pose_auc`, max of rotation and translation-direction error)
    over registered pairs; AUC@30 all: over all ground-truth pairs, a pair with an unregistered
    view counting as a miss. A duplicate and its source have no ground-truth baseline: the pair
    scores only if the method puts both at the very same centre (`relative_pose_errors`).
  time: wall seconds of the whole method (COLMAP: extraction + matching + mapping; jaxrecon:
    tracking + fit), on the machine named in the output (times are 2-core CPU times).
Raw results accumulate in experiments/bench_fit_colmap.json (one entry per case and method, the
latest run wins); the markdown table is regenerated from it after every run.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
METHODS = ("colmap_incremental", "colmap_global", "jaxrecon", "jaxrecon_warm")
THREADS = 2
BAD_DEG = 5.0      # a registered view whose median relative rotation error exceeds this is "bad"


# ------------------------------------------------------------------------------------- workers
def _colmap(method: str, images, intrinsics, names, work: pathlib.Path):
  """Runs one COLMAP pipeline. Returns (cam_from_world (v, 4, 4) NaN where unregistered, info)."""
  import cv2
  import pycolmap
  image_dir = work / "images"
  image_dir.mkdir()
  for image, name in zip(images, names):
    cv2.imwrite(str(image_dir / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
  database = work / "database.db"
  k = intrinsics[0]
  if not np.allclose(intrinsics, k):
    raise ValueError("this benchmark gives COLMAP one camera: all views must share K")
  params = ",".join(repr(float(x)) for x in (k[0, 0], k[1, 1], k[0, 2] + 0.5, k[1, 2] + 0.5))
  reader = pycolmap.ImageReaderOptions(camera_model="PINHOLE", camera_params=params)
  extraction = pycolmap.FeatureExtractionOptions(num_threads=THREADS, use_gpu=False)
  start = time.perf_counter()
  pycolmap.extract_features(database, image_dir, image_names=list(names),
                            camera_mode=pycolmap.CameraMode.SINGLE, reader_options=reader,
                            extraction_options=extraction, device=pycolmap.Device.cpu)
  matching = pycolmap.FeatureMatchingOptions(num_threads=THREADS, use_gpu=False)
  verification = pycolmap.TwoViewGeometryOptions()
  verification.ransac.random_seed = 0
  pycolmap.match_exhaustive(database, matching_options=matching,
                            verification_options=verification, device=pycolmap.Device.cpu)
  features_seconds = time.perf_counter() - start
  out = work / "sparse"
  out.mkdir()
  if method == "colmap_incremental":
    options = pycolmap.IncrementalPipelineOptions(
        num_threads=THREADS, random_seed=0, min_model_size=3, ba_refine_focal_length=False,
        ba_refine_principal_point=False, ba_refine_extra_params=False)
    options.mapper.abs_pose_refine_focal_length = False
    options.mapper.abs_pose_refine_extra_params = False
    models = pycolmap.incremental_mapping(database, image_dir, out, options)
  else:
    options = pycolmap.GlobalPipelineOptions(num_threads=THREADS, random_seed=0)
    ba = options.mapper.bundle_adjustment
    ba.refine_focal_length = False
    ba.refine_principal_point = False
    ba.refine_extra_params = False
    ba.ceres.use_gpu = False
    options.mapper.global_positioning.use_gpu = False
    models = pycolmap.global_mapping(database, image_dir, out, options)
  seconds = time.perf_counter() - start
  index = {name: i for i, name in enumerate(names)}
  poses = np.full((len(names), 4, 4), np.nan)
  sizes = sorted((m.num_reg_images() for m in models.values()), reverse=True)
  if models:
    best = max(models.values(), key=lambda m: m.num_reg_images())
    for image in best.images.values():
      if image.has_pose:
        pose = image.cam_from_world
        pose = pose() if callable(pose) else pose
        poses[index[image.name], :3] = np.asarray(pose.matrix())
        poses[index[image.name], 3] = [0, 0, 0, 1]
  info = {"seconds": seconds, "features_seconds": features_seconds, "models": sizes,
          "warnings": []}
  return poses, info


def _jaxrecon(images, intrinsics):
  """track_images + fit_scene. Returns (cam_from_world (v, 4, 4) NaN where unregistered, info)."""
  from jaxrecon.experts import track_images
  from jaxrecon.fit import fit_scene
  start = time.perf_counter()
  tracks = track_images(list(images), intrinsics)
  track_seconds = time.perf_counter() - start
  result = fit_scene(tracks.pixels, tracks.visible & tracks.mask[:, None], intrinsics)
  seconds = time.perf_counter() - start
  poses = np.array(result.cam_from_world, np.float64)
  registered = np.asarray(getattr(result, "registered",
                                  np.all(np.isfinite(poses[:, :3, :3]), (1, 2))), bool)
  poses[~registered] = np.nan
  info = {"seconds": seconds, "track_seconds": track_seconds,
          "fit_seconds": float(getattr(result, "fit_seconds", np.nan)),
          "init_seconds": float(getattr(result, "init_seconds", np.nan)),
          "tracks": int(tracks.mask.sum()),
          "warnings": [str(w) for w in getattr(result, "warnings", ())]}
  return poses, info


def worker(method: str, case_file: str, out_file: str):
  data = np.load(case_file)
  names = [str(n) for n in data["names"]]
  if method.startswith("jaxrecon"):
    if method == "jaxrecon_warm":
      from jaxrecon import cli
      cli.use_compile_cache()    # JAXRECON_COMPILE_CACHE: the bench run's own folder
    poses, info = _jaxrecon(data["images"], data["intrinsics"])
  else:
    with tempfile.TemporaryDirectory(prefix="bench_colmap_") as work:
      poses, info = _colmap(method, data["images"], data["intrinsics"], names,
                            pathlib.Path(work))
  np.savez(out_file, cam_from_world=poses, info=json.dumps(info))


# ------------------------------------------------------------------------------------- scoring
def _rotation_angle_deg(rel):
  """Angle (deg) of (..., 3, 3) near-rotations, from atan2 of the skew part and the trace (arccos
  of the trace alone turns a 1e-8 non-orthonormality of stored rotations into 0.02 deg)."""
  cos = 0.5 * (np.trace(rel, axis1=-2, axis2=-1) - 1.0)
  vee = np.stack([rel[..., 2, 1] - rel[..., 1, 2], rel[..., 0, 2] - rel[..., 2, 0],
                  rel[..., 1, 0] - rel[..., 0, 1]], -1)
  return np.degrees(np.arctan2(0.5 * np.linalg.norm(vee, axis=-1), cos))


def per_camera_rotation_errors(pred, gt):
  """(n,) rotation errors (deg) of n cameras after aligning pred's world to gt's, and the
  alignment used: "sim3" (camera centres) or "R" (best single rotation, when the ground-truth
  centres coincide and cannot fix a similarity)."""
  from jaxrecon.evaluate.metrics import align_cameras_sim3, camera_centers_np
  centres = camera_centers_np(gt)
  spread = np.sqrt(np.mean(np.sum((centres - centres.mean(0)) ** 2, -1)))
  if spread > 1e-9 * (1.0 + np.abs(centres).max()) and len(gt) >= 3:
    aligned = align_cameras_sim3(pred, gt)
    return _rotation_angle_deg(aligned[:, :3, :3] @ np.swapaxes(gt[:, :3, :3], 1, 2)), "sim3"
  # R_pred_i = R_gt_i A for a world rotation A: average R_gt_i^T R_pred_i, project onto SO(3).
  u, _, vt = np.linalg.svd(np.sum(np.swapaxes(gt[:, :3, :3], 1, 2) @ pred[:, :3, :3], 0))
  a = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
  return _rotation_angle_deg(pred[:, :3, :3] @ a.T @ np.swapaxes(gt[:, :3, :3], 1, 2)), "R"


def score(pred, gt, kind):
  """Scores of one prediction (see the module docstring)."""
  from jaxrecon.evaluate.metrics import pose_auc, relative_pose_errors
  registered = np.all(np.isfinite(pred), (1, 2))
  has_gt = np.all(np.isfinite(gt), (1, 2))
  sel = registered & has_gt
  out = {"registered": int(registered.sum()), "views": len(pred),
         "extra_registered": [k for k, r in zip(kind, registered) if r and k in ("blank",
                                                                                 "foreign")],
         "rot_med": None, "rel_rot_med": None, "auc_reg": None, "auc_all": None, "align": "",
         "bad": None}
  n_gt = int(has_gt.sum())
  if sel.sum() >= 2:
    errors, out["align"] = per_camera_rotation_errors(pred[sel], gt[sel])
    out["rot_med"] = float(np.median(errors))
    rot, trans = relative_pose_errors(pred[sel], gt[sel])
    out["rel_rot_med"] = float(np.median(rot))
    out["auc_reg"] = pose_auc(rot, trans, 30)
    n = int(sel.sum())
    if n >= 3:
      table = np.zeros((n, n))
      table[np.triu_indices(n, 1)] = rot
      table = table + table.T
      per_view = np.array([np.median(np.delete(table[i], i)) for i in range(n)])
      out["bad"] = int(np.sum(per_view > BAD_DEG))
  # All ground-truth pairs: unregistered views get a placeholder pose, their pairs a miss.
  filled = np.where(registered[:, None, None], pred, np.eye(4))[has_gt]
  rot, trans = relative_pose_errors(filled, gt[has_gt])
  reg_gt = registered[has_gt]
  i, j = np.triu_indices(n_gt, 1)
  miss = ~(reg_gt[i] & reg_gt[j])
  out["auc_all"] = pose_auc(np.where(miss, 180.0, rot), np.where(miss, 180.0, trans), 30)
  return out


# ------------------------------------------------------------------------------------- report
def _fmt(x, spec=".2f"):
  return "-" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, spec)


def write_markdown(results: dict, meta: dict, path: pathlib.Path, cases, methods):
  lines = ["# Per-scene fitting vs COLMAP on the fit test cases (issue #12)", "",
           "Generated by `experiments/bench_fit_colmap.py` (see its docstring for the protocol and "
           "the scores). Commands run, latest last:", ""]
  lines += [f"    {c['command']}    # {c['date']}, jaxrecon {c.get('code', '?')}, load average "
            f"before/after {c['load_before']} / {c['load_after']}" for c in meta["commands"]]
  lines += ["", f"Machine: {meta['machine']}. All times are wall seconds on 2 CPU cores shared "
            "with other jobs (see the load averages), so they are rough.", "",
            "| case | views | method | reg | extra reg | bad | rot med (deg) | rel rot med (deg) | "
            "AUC@30 reg | AUC@30 all | time (s) | models / notes |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  warnings = {}       # (case, warnings) -> the methods that gave them (cold and warm runs agree)
  for case in cases:
    for method in methods:
      r = results.get(f"{case}/{method}")
      if r is None:
        continue
      if "error" in r:
        lines.append(f"| {case} | {r.get('views', '-')} | {method} | failed | | | | | | | "
                     f"{_fmt(r.get('seconds'), '.1f')} | {r['error'][:160]} |")
        continue
      s, info = r["score"], r["info"]
      note = ("models " + "+".join(map(str, info["models"]))) if "models" in info else (
          f"{info.get('tracks', '?')} tracks; tracking {_fmt(info.get('track_seconds'), '.1f')} s, "
          f"fit {_fmt(info['seconds'] - info.get('track_seconds', np.nan), '.1f')} s")
      if info.get("warnings"):
        note += f", {len(info['warnings'])} warnings"
        warnings.setdefault((case, tuple(info["warnings"])), []).append(method)
      rot = _fmt(s["rot_med"], ".3f") + (" R" if s["align"] == "R" else "")
      extra = ",".join(s["extra_registered"]) or "-"
      lines.append(f"| {case} | {s['views']} | {method} | {s['registered']}/{s['views']} | "
                   f"{extra} | {_fmt(s.get('bad'), 'd')} | {rot} | "
                   f"{_fmt(s['rel_rot_med'], '.3f')} | {_fmt(s['auc_reg'])} | "
                   f"{_fmt(s['auc_all'])} | {_fmt(info['seconds'], '.1f')} | {note} |")
  notes = meta.get("cases", {})
  if notes:
    lines += ["", "## Cases", ""] + [f"* {c}: {notes[c]}" for c in cases if c in notes]
  if warnings:
    lines += ["", "## jaxrecon warnings", ""]
    lines += [f"* {case} ({', '.join(by)}): " + " / ".join(w) for (case, w), by in warnings.items()]
  path.write_text("\n".join(lines) + "\n")


def _code_version():
  """The commit the jaxrecon code comes from: $BENCH_COMMIT (set when running a snapshot), else
  git HEAD of the checkout, marked when jaxrecon/ has uncommitted changes."""
  if os.environ.get("BENCH_COMMIT"):
    return os.environ["BENCH_COMMIT"]
  try:
    git = lambda *a: subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True,
                                    check=True).stdout.strip()
    dirty = git("status", "--porcelain", "--", "jaxrecon")
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if dirty else "")
  except (OSError, subprocess.CalledProcessError):
    return "unknown"


def _machine():
  cpu = platform.processor() or platform.machine()
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
  except OSError:
    pass
  import pycolmap
  import jax
  return (f"{os.cpu_count()} CPU cores ({cpu}), Python {platform.python_version()}, "
          f"jax {jax.__version__}, pycolmap {pycolmap.__version__}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cases", default=None, help="comma-separated; default: all")
  parser.add_argument("--methods", default=",".join(METHODS))
  parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
  parser.add_argument("--timeout", type=float, default=1200.0, help="seconds per case+method")
  parser.add_argument("--out", default=str(ROOT / "experiments" / "bench_fit_colmap.md"))
  parser.add_argument("--worker", nargs=3, metavar=("METHOD", "CASE_NPZ", "OUT_NPZ"),
                      help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    worker(*args.worker)
    return
  from jaxrecon.evaluate.fit_cases import CASES, make_case
  cases = args.cases.split(",") if args.cases else list(CASES)
  methods = args.methods.split(",")
  unknown = [m for m in methods if m not in METHODS] + [c for c in cases if c not in CASES]
  if unknown:
    parser.error(f"unknown methods / cases: {unknown}")
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  store = out.with_suffix(".json")
  saved = json.loads(store.read_text()) if store.exists() else {"results": {}, "commands": []}
  command = "python experiments/bench_fit_colmap.py " + " ".join(sys.argv[1:])
  entry = {"command": command.strip(), "date": datetime.datetime.now(
      datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
      "load_before": " ".join(f"{x:.1f}" for x in os.getloadavg())}
  saved["machine"] = _machine()
  entry["code"] = _code_version()
  with tempfile.TemporaryDirectory(prefix="bench_fit_") as tmp:
    tmp = pathlib.Path(tmp)
    for case_name in cases:
      try:
        case = make_case(case_name, args.data)
      except FileNotFoundError as error:
        print(f"{case_name}: skipped ({error})", flush=True)
        continue
      saved.setdefault("cases", {})[case_name] = case.notes
      case_file = tmp / f"{case_name}.npz"
      np.savez(case_file, images=case.images, intrinsics=case.intrinsics,
               names=np.array(case.names))
      for method in methods:
        result_file = tmp / f"{case_name}_{method}.npz"
        start = time.perf_counter()
        log = tmp / f"{case_name}_{method}.log"
        env = dict(os.environ, JAXRECON_COMPILE_CACHE=str(tmp / "xla"))
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
        worker_args = [sys.executable, __file__, "--worker", method, str(case_file),
                       str(result_file)]
        try:
          with open(log, "w") as stream:
            failed = False
            if method == "jaxrecon_warm":     # fills the cache; not timed
              prime = subprocess.run(worker_args, stdout=stream, stderr=subprocess.STDOUT,
                                     timeout=args.timeout, cwd=ROOT, env=env)
              # A failed priming run leaves the cache empty: the timed run would be a cold one.
              failed = prime.returncode != 0 and (f"the untimed run that fills the cache: "
                                                  f"exit code {prime.returncode}")
            if not failed:
              proc = subprocess.run(worker_args, stdout=stream, stderr=subprocess.STDOUT,
                                    timeout=args.timeout, cwd=ROOT, env=env)
              failed = proc.returncode != 0 and f"exit code {proc.returncode}"
        except subprocess.TimeoutExpired:
          failed = f"timed out after {args.timeout:.0f} s"
        seconds = time.perf_counter() - start
        if failed:
          tail = [l for l in log.read_text(errors="replace").splitlines() if l.strip()][-1:]
          row = {"error": f"{failed}: {' '.join(tail)}".replace("|", "/"),
                 "seconds": seconds, "views": len(case.names)}
        else:
          data = np.load(result_file)
          info = json.loads(str(data["info"]))
          row = {"info": info, "score": score(data["cam_from_world"], case.cam_from_world,
                                              case.kind),
                 "cam_from_world": np.round(data["cam_from_world"], 9).tolist()}
        row["date"] = entry["date"]
        saved["results"][f"{case_name}/{method}"] = row
        print(f"{case_name} {method}: " + json.dumps(row.get("score", row.get("error"))),
              flush=True)
        entry["load_after"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
        saved["commands"] = [c for c in saved["commands"] if c["command"] != entry["command"]]
        saved["commands"].append(entry)
        store.write_text(json.dumps(saved, indent=1))
        write_markdown(saved["results"], saved, out, CASES, METHODS)
  print(out.read_text())


if __name__ == "__main__":
  main()
