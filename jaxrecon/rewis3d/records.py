"""Segmentation records (Rewis3d): one .npz per scene of images, labels and a reconstruction.

A *segmentation record* is one scene as a dict of numpy arrays (no pickle; written by
`cache.cache_scenes`, read by `jaxrecon.rewis3d.pipeline.SegNpzSource`), v views of h x w pixels:

    images (v, h, w, 3) uint8               dense_labels (v, h, w) uint8 (255 = unknown)
    sparse_labels (v, h, w) uint8 (255 = unlabelled; `sparse_labels.make_sparse` of dense_labels)
    intrinsics (v, 3, 3) float64 K in pixels (top-left pixel centre at (0, 0))
    recon_depth (v, h, w) float32 camera z in the reconstruction's units (0 = no point, e.g. sky)
    recon_confidence (v, h, w) float32 >= 0 (higher = more reliable; any scale, only the per-view
      ranks matter to `pointcloud.lift`)
    recon_world_from_cam (v, 4, 4) float64 camera-to-world poses of the reconstruction, OpenCV axes
    name () str, the scene's name;  view_names (v,) str

dense_labels are for monitoring and evaluation only; training sees sparse_labels. The
reconstruction is what the point cloud is lifted from: "gt" (`gt_reconstruction`: ground-truth
depth and poses, the "real 3D" row), "simulated" (`simulated_reconstruction`: ground truth degraded
the way a feed-forward reconstruction model errs, with a correlated confidence), "ffrm" (a real
feed-forward model, `ffrm_records`) or "mvs" (tracks, per-scene fit and multi-view stereo of the
images alone, `mvs_records`); the last two are made by their modules, not here.

`build_seg_jobs(settings)` turns a plain settings dict (`default_seg_settings()`) into
(name, function) jobs for `cache.cache_scenes`; `seg_provenance(settings)` is what a cache of them
records (the settings, with the label rule's options only where they differ from its defaults).
Host-side numpy; randomness comes only from seeded numpy Generators.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import pathlib
from typing import Callable, Mapping

import cv2
import numpy as np

from jaxrecon.data.formats.camvid import read_camvid
from jaxrecon.data.scene import Scene
from jaxrecon.data import sparse_labels
from jaxrecon.data.sparse_labels import KINDS, make_sparse
from jaxrecon.data.synthetic import MIRROR, intrinsics_from_fov, make_scene

SOURCES = ("synthetic", "camvid")
RECONS = ("gt", "simulated", "ffrm", "mvs")
# Made outside `build_seg_jobs`: "ffrm" by `ffrm_records` (a Reliev3R run), "mvs" by `mvs_records`.
ESTIMATED = ("ffrm", "mvs")
KEYS = ("images", "dense_labels", "sparse_labels", "intrinsics", "recon_depth",
        "recon_confidence", "recon_world_from_cam", "name")


# --- records ------------------------------------------------------------------------------------


def check_seg_record(record: Mapping[str, np.ndarray], name: str = "record") -> None:
  """Raises ValueError naming the record and key when keys are missing or shapes / dtypes /
  values are wrong (see the module docstring for the layout)."""
  missing = [k for k in KEYS if k not in record]
  if missing:
    raise ValueError(f"{name}: missing {missing}")
  images = np.asarray(record["images"])
  if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
    raise ValueError(f"{name}: images: expected uint8 (v, h, w, 3), got {images.dtype} "
                     f"{images.shape}")
  v, h, w = images.shape[:3]
  want = {"dense_labels": ((v, h, w), np.uint8), "sparse_labels": ((v, h, w), np.uint8),
          "intrinsics": ((v, 3, 3), None), "recon_depth": ((v, h, w), None),
          "recon_confidence": ((v, h, w), None), "recon_world_from_cam": ((v, 4, 4), None)}
  for key, (shape, dtype) in want.items():
    value = np.asarray(record[key])
    if value.shape != shape:
      raise ValueError(f"{name}: {key} has shape {value.shape}, expected {shape}")
    if dtype is not None and value.dtype != dtype:
      raise ValueError(f"{name}: {key} has dtype {value.dtype}, expected {np.dtype(dtype).name}")
    if dtype is None and not np.all(np.isfinite(value)):
      raise ValueError(f"{name}: {key} has non-finite values")
  if np.any(np.asarray(record["recon_depth"]) < 0):
    raise ValueError(f"{name}: recon_depth has negative values (0 marks pixels without a point)")
  if np.any(np.asarray(record["recon_confidence"]) < 0):
    raise ValueError(f"{name}: recon_confidence has negative values (expected >= 0)")


def seg_record(scene: Scene, *, label_kind: str, label_seed, recon_depth, recon_confidence,
               recon_world_from_cam, up=None, **sparse_options) -> dict:
  """The segmentation record of a scene and its reconstruction.

  Args:
    scene: `Scene` with images (v, h, w, 3) uint8, labels (v, h, w) uint8 (dense ground truth,
      IGNORE_LABEL = unknown) and intrinsics (v, 3, 3) (CamVid: attach them, `camvid_scene`).
    label_kind: one of sparse_labels.KINDS ("points", "scribbles", "coarse", "dense").
    label_seed: int or sequence of ints seeding the numpy Generator of the sparse labels (one
      Generator per scene, views in order); the same seed gives the same labels.
    recon_depth: (v, h, w) camera z of the reconstruction, >= 0, finite; 0 = no point.
    recon_confidence: (v, h, w) >= 0, finite.
    recon_world_from_cam: (v, 4, 4) camera-to-world poses of the reconstruction, OpenCV axes.
    up: optional (3,) "up" of the reconstruction's world frame, stored as record["up"] (the 3D
      augmentation's rotation axis; without it the pipeline's configured `up` is used). Give it
      where the world frame is the reconstruction's own gauge (`geometry.up_from_cameras`).
    sparse_options: extra keyword options of the chosen `sparse_labels` rule.
  Returns:
    dict of arrays as in the module docstring (dtypes converted, every check passed).
  """
  if label_kind not in KINDS:
    raise ValueError(f"label_kind: expected one of {KINDS}, got {label_kind!r}")
  if scene.labels is None:
    raise ValueError(f"{scene.name}: a segmentation record needs dense labels (scene.labels)")
  if scene.intrinsics is None:
    raise ValueError(f"{scene.name}: a segmentation record needs intrinsics (scene.intrinsics)")
  dense = np.asarray(scene.labels, np.uint8)
  rng = np.random.default_rng(label_seed)
  sparse = np.stack([make_sparse(d, label_kind, rng, **sparse_options) for d in dense])
  record = {"images": np.asarray(scene.images, np.uint8), "dense_labels": dense,
            "sparse_labels": sparse.astype(np.uint8),
            "intrinsics": np.asarray(scene.intrinsics, np.float64),
            "recon_depth": np.asarray(recon_depth, np.float32),
            "recon_confidence": np.asarray(recon_confidence, np.float32),
            "recon_world_from_cam": np.asarray(recon_world_from_cam, np.float64),
            "name": np.asarray(str(scene.name)), "view_names": np.asarray(scene.names, str)}
  if up is not None:
    up = np.asarray(up, np.float64)
    if up.shape != (3,) or not np.all(np.isfinite(up)) or np.linalg.norm(up) < 1e-9:
      raise ValueError(f"{scene.name}: up: expected a finite non-zero (3,) vector, got {up}")
    record["up"] = up / np.linalg.norm(up)
  check_seg_record(record, scene.name)
  return record


# --- reconstructions ----------------------------------------------------------------------------


def gt_reconstruction(scene: Scene):
  """The ground truth as a reconstruction (the "real 3D" row).

  Args:
    scene: `Scene` with depth (v, h, w) (0 on sky) and cam_from_world (v, 4, 4).
  Returns:
    depth (v, h, w) float32 (the scene's, 0 kept), confidence (v, h, w) float32 all ones,
    world_from_cam (v, 4, 4) float64 = inverse of cam_from_world (camera-to-world, OpenCV axes).
  """
  if scene.depth is None or scene.cam_from_world is None:
    raise ValueError(f"{scene.name}: the 'gt' reconstruction needs ground-truth depth and poses "
                     f"(scene.depth, scene.cam_from_world)")
  depth = np.asarray(scene.depth, np.float32)
  return (depth, np.ones_like(depth),
          np.linalg.inv(np.asarray(scene.cam_from_world, np.float64)))


def _camera_points(depth: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
  """(v, h, w, 3) camera-frame points of every pixel (float64)."""
  v, h, w = depth.shape
  u, r = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
  pixels = np.stack([u, r, np.ones_like(u)], -1)
  rays = np.einsum("vij,hwj->vhwi", np.linalg.inv(intrinsics), pixels)
  return rays * depth[..., None]


def reconstruction_difficulty(depth, intrinsics, labels=None, *, edge_scale: float = 0.1,
                              grazing_cos: float = 0.5) -> np.ndarray:
  """The hidden per-pixel difficulty of `simulated_reconstruction`, in [0, 1] (0 on sky).

  difficulty = max(edge, grazing, mirror), each in [0, 1]:
  - edge: largest |log-depth| jump to a 4-neighbour divided by `edge_scale` (a jump to sky counts
    as infinite), clipped to 1, then dilated by one pixel (reconstructions blur depth edges);
  - grazing: clip((grazing_cos - cos a) / grazing_cos, 0, 1), a = angle between the viewing ray
    and the surface normal (normals from finite differences of the camera-frame points), so 0 for
    incidence below arccos(grazing_cos) and 1 at 90 degrees;
  - mirror: 1 on class `synthetic.MIRROR` (when labels are given).

  Args:
    depth: (v, h, w) camera z in world units, 0 on sky.
    intrinsics: (v, 3, 3) K in pixels.
    labels: optional (v, h, w) class map of `jaxrecon.data.synthetic.CLASSES`.
    edge_scale: relative depth jump (log units) of full difficulty, > 0.
    grazing_cos: cosine of the incidence where grazing difficulty starts, in (0, 1].
  Returns:
    (v, h, w) float32.
  """
  if not edge_scale > 0 or not 0 < grazing_cos <= 1:
    raise ValueError(f"edge_scale must be > 0 and grazing_cos in (0, 1], got {edge_scale}, "
                     f"{grazing_cos}")
  depth = np.asarray(depth, np.float64)
  valid = depth > 0
  logd = np.log(np.where(valid, depth, 1.0))
  jump = np.zeros_like(depth)
  for axis in (1, 2):
    a = [slice(None)] * 3
    b = [slice(None)] * 3
    a[axis], b[axis] = slice(1, None), slice(None, -1)
    a, b = tuple(a), tuple(b)
    d = np.abs(logd[a] - logd[b])
    d = np.where(valid[a] != valid[b], np.inf, d)
    jump[a] = np.maximum(jump[a], d)
    jump[b] = np.maximum(jump[b], d)
  edge = np.clip(jump / edge_scale, 0.0, 1.0).astype(np.float32)
  edge = np.stack([cv2.dilate(e, np.ones((3, 3), np.uint8)) for e in edge])
  points = _camera_points(depth, np.asarray(intrinsics, np.float64))
  du = np.gradient(points, axis=2)
  dv = np.gradient(points, axis=1)
  normal = np.cross(du, dv)
  norm = np.linalg.norm(normal, axis=-1) * np.linalg.norm(points, axis=-1)
  cos = np.abs(np.sum(normal * points, -1)) / np.where(norm > 0, norm, 1.0)
  grazing = np.clip((grazing_cos - cos) / grazing_cos, 0.0, 1.0)
  out = np.maximum(edge, grazing)
  if labels is not None:
    out = np.maximum(out, (np.asarray(labels) == MIRROR).astype(np.float64))
  return np.where(valid, out, 0.0).astype(np.float32)


def simulated_reconstruction(scene: Scene, rng: np.random.Generator, *,
                             smooth_sigma: float = 0.03, smooth_cells: int = 4,
                             noise_sigma: float = 0.01, hard_noise_sigma: float = 0.15,
                             mirror_factor=(1.2, 2.0), edge_scale: float = 0.1,
                             grazing_cos: float = 0.5, confidence_gain: float = 3.0,
                             mirror_awareness: float = 0.5, confidence_blur: float = 1.0,
                             confidence_noise: float = 0.3, pose_rotation_deg: float = 0.3,
                             pose_translation: float = 0.005):
  """A stand-in for a feed-forward reconstruction of a synthetic scene: degraded ground truth.

  Depth (log units, per view i, on valid pixels depth > 0; sky stays exactly 0):
    log D_i = log D*_i + S_i + n * (noise_sigma + hard_noise_sigma * difficulty)
              + [mirror] log m_i,
  with S_i a smooth field (a smooth_cells x smooth_cells grid of N(0, smooth_sigma) values,
  bicubically upsampled: the low-frequency scale / shape error of a network), n ~ N(0, 1) per
  pixel, difficulty from `reconstruction_difficulty` (depth edges, grazing angles, mirrors) and
  m_i ~ U(mirror_factor) per view: on mirrors (class 6) the model places the reflected scene
  behind the glass, so their depth is badly wrong (too far), on top of the noise.

  Confidence (what the model believes about itself; correlated with the error, not an oracle):
    c = exp(-confidence_gain * blur(d_hat)) * exp(N(0, confidence_noise)),
  d_hat = the difficulty with the mirror term scaled by `mirror_awareness` (the model only half
  notices mirrors), blurred by a Gaussian of sigma `confidence_blur` pixels; c knows neither the
  smooth error S nor the realised noise draw, only its expected size. Values are in (0, ~3], 0 on
  sky. Measured on 3 views of 64 x 64 orbit scenes with the defaults: Spearman correlation
  between c and -|relative depth error| 0.42 (make_scene(0)) to 0.50 (make_scene(0,
  mirror_prob=0.5), printed by tests/rewis3d/test_rewis3d_records.py), median relative error ~0.05.

  Poses: world_from_cam_i = inv(cam_from_world_i) @ delta_i, delta_i a camera-frame rigid motion:
  rotation by N(0, pose_rotation_deg) degrees about a random axis, translation N(0,
  pose_translation * median depth) per axis (world units).

  Args:
    scene: `Scene` with depth (v, h, w) (0 on sky), intrinsics (v, 3, 3), cam_from_world (v, 4,
      4) and optionally labels (v, h, w) of `synthetic.CLASSES` (for the mirror term).
    rng: numpy Generator, the only source of randomness.
    All other arguments: as in the formulas above (sigmas in log-depth units, >= 0).
  Returns:
    depth (v, h, w) float32 (0 where the ground truth is 0), confidence (v, h, w) float32 >= 0,
    world_from_cam (v, 4, 4) float64 (camera-to-world, OpenCV axes).
  """
  if scene.depth is None or scene.cam_from_world is None or scene.intrinsics is None:
    raise ValueError(f"{scene.name}: the 'simulated' reconstruction needs ground-truth depth, "
                     f"poses and intrinsics")
  for name, value in (("smooth_sigma", smooth_sigma), ("noise_sigma", noise_sigma),
                      ("hard_noise_sigma", hard_noise_sigma), ("confidence_gain", confidence_gain),
                      ("confidence_blur", confidence_blur), ("confidence_noise", confidence_noise),
                      ("pose_rotation_deg", pose_rotation_deg),
                      ("pose_translation", pose_translation)):
    if not value >= 0:
      raise ValueError(f"{name} must be >= 0, got {value}")
  if not 0 < mirror_factor[0] <= mirror_factor[1]:
    raise ValueError(f"mirror_factor: expected 0 < lo <= hi, got {mirror_factor}")
  if not 0 <= mirror_awareness <= 1:
    raise ValueError(f"mirror_awareness must be in [0, 1], got {mirror_awareness}")
  if int(smooth_cells) < 1:
    raise ValueError(f"smooth_cells must be >= 1, got {smooth_cells}")
  depth = np.asarray(scene.depth, np.float64)
  v, h, w = depth.shape
  valid = depth > 0
  difficulty = reconstruction_difficulty(depth, scene.intrinsics, None, edge_scale=edge_scale,
                                         grazing_cos=grazing_cos).astype(np.float64)
  mirror = (np.zeros(depth.shape, bool) if scene.labels is None
            else (np.asarray(scene.labels) == MIRROR) & valid)
  full = np.maximum(difficulty, mirror)
  cells = int(smooth_cells)
  smooth = np.stack([cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC) for g in
                     rng.normal(0.0, smooth_sigma, (v, cells, cells)).astype(np.float32)])
  noise = rng.normal(0.0, 1.0, depth.shape) * (noise_sigma + hard_noise_sigma * full)
  log_mirror = np.log(rng.uniform(*mirror_factor, (v, 1, 1))) * mirror
  out_depth = np.where(valid, depth * np.exp(smooth + noise + log_mirror), 0.0)

  believed = np.maximum(difficulty, mirror_awareness * mirror).astype(np.float32)
  if confidence_blur > 0:
    believed = np.stack([cv2.GaussianBlur(b, (0, 0), sigmaX=confidence_blur) for b in believed])
  confidence = (np.exp(-confidence_gain * believed)
                * np.exp(rng.normal(0.0, confidence_noise, depth.shape)))
  confidence = np.where(valid, confidence, 0.0)

  scale = float(np.median(depth[valid])) if valid.any() else 1.0
  world_from_cam = np.linalg.inv(np.asarray(scene.cam_from_world, np.float64))
  for i in range(v):
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.normal(0.0, pose_rotation_deg))
    delta = np.eye(4)
    delta[:3, :3] = cv2.Rodrigues(axis * angle)[0]
    delta[:3, 3] = rng.normal(0.0, pose_translation * scale, 3)
    world_from_cam[i] = world_from_cam[i] @ delta
  return out_depth.astype(np.float32), confidence.astype(np.float32), world_from_cam


# --- jobs ---------------------------------------------------------------------------------------


def camvid_scene(root, *, intrinsics_fov_deg: float) -> Scene:
  """`formats.camvid.read_camvid(root)` with the pinhole intrinsics of a horizontal field of view
  `intrinsics_fov_deg` (degrees, centred principal point) attached: CamVid has none."""
  if not 0 < intrinsics_fov_deg < 180:
    raise ValueError(f"intrinsics_fov_deg must be in (0, 180), got {intrinsics_fov_deg}")
  scene = read_camvid(root)
  h, w = scene.image_size
  k = intrinsics_from_fov(h, w, intrinsics_fov_deg)
  return dataclasses.replace(scene, intrinsics=np.tile(k, (scene.num_views, 1, 1)))


def _keyword_defaults(fn, skip=()) -> dict:
  """{name: default} of fn's keyword-only parameters (tuples as lists: JSON / ConfigDict safe)."""
  return {k: (list(p.default) if isinstance(p.default, tuple) else p.default)
          for k, p in inspect.signature(fn).parameters.items()
          if p.kind == inspect.Parameter.KEYWORD_ONLY and k not in skip}


_SIMULATED_DEFAULTS = _keyword_defaults(simulated_reconstruction)
# The options of each label rule a config may set (void_label is the source's business: the
# records' dense labels already mark unknown pixels 255).
LABEL_OPTION_DEFAULTS = {kind: _keyword_defaults(getattr(sparse_labels, kind), skip=("void_label",))
                         for kind in ("points", "scribbles", "coarse")}


def label_options(settings: Mapping) -> dict:
  """The keyword options of settings["label_kind"]'s `sparse_labels` rule: its defaults updated by
  settings["label_options"][kind] (absent: the defaults). ValueError on an option the rule does not
  take."""
  kind = settings["label_kind"]
  given = dict((settings.get("label_options") or {}).get(kind) or {})
  defaults = LABEL_OPTION_DEFAULTS.get(kind, {})
  unknown = sorted(set(given) - set(defaults))
  if unknown:
    raise ValueError(f"label_options.{kind}: unknown option(s) {unknown}; the {kind!r} rule takes "
                     f"{sorted(defaults) or 'none'}")
  return {**defaults, **given}


def seg_provenance(settings: Mapping) -> dict:
  """What a cache of `build_seg_jobs(settings)` records as its provenance: the settings without
  "label_options" (and "mvs" unless recon is "mvs"), plus the chosen rule's options only where they
  differ from its defaults (so a cache made before the options were configurable keeps matching
  its settings); with recon "mvs", also the fit / plane-sweep / matcher settings the records are
  made with ("mvs_library": a reconstruction depends on them as much as on settings["mvs"])."""
  # Options of a reconstruction source that is not used are left out too (a cache made before
  # the "mvs" source existed keeps matching).
  out = {k: v for k, v in settings.items()
         if k != "label_options" and not (k == "mvs" and settings.get("recon") != "mvs")}
  if settings.get("recon") == "mvs":
    from jaxrecon.rewis3d import mvs_records   # the fitting stack, only for this source
    out["mvs_library"] = mvs_records.code_settings(settings["mvs"])
  options = label_options(settings)
  changed = {k: v for k, v in options.items()
             if v != LABEL_OPTION_DEFAULTS.get(settings["label_kind"], {}).get(k)}
  if changed:
    out["label_options"] = {settings["label_kind"]: changed}
  return out


def _synthetic_seg_record(seed: int, settings: Mapping) -> dict:
  synth = settings["synthetic"]
  scene = make_scene(seed, num_views=synth["num_views"], height=synth["height"],
                     width=synth["width"], path=synth["path"])
  if settings["recon"] == "gt":
    depth, confidence, world_from_cam = gt_reconstruction(scene)
  else:
    options = dict(settings.get("simulated", {}))
    recon_seed = options.pop("seed", 0)
    depth, confidence, world_from_cam = simulated_reconstruction(
        scene, np.random.default_rng([int(recon_seed), int(seed)]), **options)
  return seg_record(scene, label_kind=settings["label_kind"],
                    label_seed=[int(settings["label_seed"]), int(seed)], recon_depth=depth,
                    recon_confidence=confidence, recon_world_from_cam=world_from_cam,
                    **label_options(settings))


def build_seg_jobs(settings: Mapping) -> list[tuple[str, Callable[[], dict]]]:
  """(scene name, record function) pairs for `cache.cache_scenes`.

  settings: a plain dict like `default_seg_settings()`: source ("synthetic" | "camvid"),
  synthetic (num_scenes, seed, num_views, height, width, path), camvid (root,
  intrinsics_fov_deg), label_kind, label_seed, label_options ({kind: options of that
  `sparse_labels` rule}; only label_kind's are used), recon ("gt" | "simulated"; "ffrm" and "mvs"
  are made by their modules) and simulated (seed plus `simulated_reconstruction` options). Scene
  s of the synthetic source is `make_scene(s)`, named synthetic-<path>-<s:05d>; its labels are
  seeded by (label_seed, s) and its simulated reconstruction by (simulated.seed, s).
  """
  source, recon, kind = settings["source"], settings["recon"], settings["label_kind"]
  if recon in ESTIMATED:
    raise ValueError(f"recon: {recon!r} records are made by jaxrecon.rewis3d.{recon}_records, not "
                     f"by build_seg_jobs; use 'gt' or 'simulated' here")
  if recon not in RECONS:
    raise ValueError(f"recon: expected one of {RECONS}, got {recon!r}")
  if kind not in KINDS:
    raise ValueError(f"label_kind: expected one of {KINDS}, got {kind!r}")
  label_options(settings)  # an unknown option fails here, before any scene is made
  if source == "synthetic":
    synth = settings["synthetic"]
    seeds = range(synth["seed"], synth["seed"] + synth["num_scenes"])
    return [(f"synthetic-{synth['path']}-{s:05d}",
             functools.partial(_synthetic_seg_record, s, settings)) for s in seeds]
  if source == "camvid":
    root = pathlib.Path(settings["camvid"]["root"])
    raise ValueError(f"recon: {recon!r} needs ground-truth depth and poses, and CamVid ({root}) "
                     f"has none; CamVid records need an estimated reconstruction ('mvs' or "
                     f"'ffrm')")
  raise ValueError(f"source: expected one of {SOURCES}, got {source!r}")


def default_seg_settings() -> dict:
  """Segmentation record settings at their defaults (a plain, JSON-serialisable dict)."""
  return {"source": "synthetic",
          "synthetic": {"num_scenes": 16, "seed": 0, "num_views": 8, "height": 128,
                        "width": 128, "path": "orbit"},
          "camvid": {"root": "", "intrinsics_fov_deg": 60.0, "height": 96, "width": 128,
                     "held_out_frames": 6},
          "label_kind": "scribbles", "label_seed": 0,
          # options of each label rule (jaxrecon.data.sparse_labels), e.g. coarse.margin in pixels
          "label_options": {k: dict(v) for k, v in LABEL_OPTION_DEFAULTS.items()},
          "recon": "simulated",
          "ffrm": {"checkpoint": ""},      # a Reliev3R run, for recon "ffrm" (jaxrecon.train)
          # recon "mvs": tracker, working size (pixels), refine the focal (rewis3d.mvs_records)
          "mvs": {"tracker": "sift", "height": 360, "width": 480, "approximate_intrinsics": True,
                  "num_hypotheses": 48},
          "simulated": {"seed": 0, **_SIMULATED_DEFAULTS}}

