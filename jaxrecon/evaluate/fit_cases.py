"""Test cases for per-scene fitting (SIFT tracks -> cameras): real and procedural scenes, each
built to probe one property (order, baseline, degenerate views, a split view graph, rotation only).

`make_case(name, shared_data)` -> `FitCase`; `CASES` lists the names. Every case has images,
fixed intrinsics and ground-truth cameras where they exist; nothing here is tuned to one scene
(one orbit radius / height serves every orbit, chosen so that 45-degree neighbours still share
SIFT matches on several procedural worlds, not just the one used here).

Conventions are the package's (`jaxrecon.geometry`): OpenCV camera axes, pixel centres at integer
coordinates (top-left pixel centre (0, 0)), `cam_from_world` 4x4. World units: those of the data
set (templeRing: metres, lego: NeRF units, ICL: metres, procedural: metres).

Real cases read `shared_data` (the folder of `../shared/data/README.md`):
  temple_*        templeRing/ (19 views, GT K, R, t), lego/ (the foreign view of temple_foreign)
  lego            lego/ (20 NeRF-synthetic views on white)
  icl_livingroom  icl_livingroom/ (5 frames; its poses are off by about 0.3-1.2 degrees)
Procedural cases render `jaxrecon.data.synthetic` worlds from fixed seeds (a few seconds each on
two CPU cores, cached in process).
"""
from __future__ import annotations

import functools
import pathlib
from typing import NamedTuple

import cv2
import numpy as np

from jaxrecon.data import synthetic as syn
from jaxrecon.data.formats import read_middlebury, read_nerf, read_tum
from jaxrecon.data.formats.tum import DEPTH_SCALE
from jaxrecon.data.synthetic import world as world_lib

CASES = ("temple_all", "temple_every2", "temple_every3", "temple_shuffled", "temple_duplicate",
         "temple_blank", "temple_foreign", "synth_orbit8", "synth_orbit12", "synth_orbit16",
         "synth_orbit_repeat", "synth_lowtexture", "synth_rotation", "lego", "icl_livingroom")

KINDS = ("normal", "duplicate", "blank", "foreign")

# Procedural settings, shared by every synthetic case.
SYNTH_SIZE = (240, 320)            # (h, w) pixels
SYNTH_FOV_DEGREES = 60.0           # horizontal
SYNTH_SEED = 0                     # the world of the orbits and of the rotation case
ORBIT_RADIUS, ORBIT_HEIGHT = 6.5, 6.0   # metres; 45-degree neighbours overlap on seeds 0, 1, 2
LOWTEXTURE_SEED = 1
SHUFFLE_SEED = 0
ICL_INTRINSICS = np.array([[481.2, 0.0, 319.5], [0.0, -480.0, 239.5], [0.0, 0.0, 1.0]])
BLANK_GREY = 128


class FitCase(NamedTuple):
  """One fitting test case: v views of one scene (plus any constructed extra view).

  name: the case's name (one of CASES).
  images: (v, h, w, 3) uint8 RGB.
  intrinsics: (v, 3, 3) float64 K, pixels, top-left pixel centre (0, 0).
  cam_from_world: (v, 4, 4) float64 ground truth, OpenCV axes, the data set's world units; rows
    all NaN where there is no ground truth (a blank or foreign view).
  names: v unique file-like names ("templeR0013.png", "dup_of_templeR0020.png", ...).
  kind: v strings, one of KINDS: "normal", "duplicate" (the same pixels as another view: a
    zero-baseline pair), "blank" (uniform grey: no features), "foreign" (another scene).
  notes: one line, what the case tests.
  """
  name: str
  images: np.ndarray
  intrinsics: np.ndarray
  cam_from_world: np.ndarray
  names: tuple
  kind: tuple
  notes: str


def _require(path: pathlib.Path, case: str) -> pathlib.Path:
  if not path.exists():
    raise FileNotFoundError(f"case {case!r} needs {path} (see shared/data/README.md)")
  return path


@functools.lru_cache(maxsize=None)
def _temple(shared_data: pathlib.Path):
  scene = read_middlebury(_require(shared_data / "templeRing", "temple_*"))
  names = tuple(f"{n}.png" for n in scene.names)
  return scene.images, scene.intrinsics, scene.cam_from_world, names


@functools.lru_cache(maxsize=None)
def _lego(shared_data: pathlib.Path):
  scene = read_nerf(_require(shared_data / "lego" / "transforms_train.json", "lego"))
  names = tuple(f"{n}.png" for n in scene.names)
  return scene.images, scene.intrinsics, scene.cam_from_world, names


def _foreign_image(lego_image: np.ndarray, height: int, width: int) -> np.ndarray:
  """A lego render cropped to the aspect ratio height : width (centred) and resized to it."""
  h, w = lego_image.shape[:2]
  crop_h = min(h, int(round(w * height / width)))
  crop_w = min(w, int(round(crop_h * width / height)))
  top, left = (h - crop_h) // 2, (w - crop_w) // 2
  crop = lego_image[top:top + crop_h, left:left + crop_w]
  return cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)


def _insert(arrays, index, extra):
  """Each array (or tuple) of `arrays` with the matching item of `extra` inserted at `index`."""
  out = []
  for a, e in zip(arrays, extra):
    if isinstance(a, tuple):
      out.append(a[:index] + (e,) + a[index:])
    else:
      out.append(np.concatenate([a[:index], np.asarray(e, a.dtype)[None], a[index:]]))
  return out


def _temple_case(name: str, shared_data: pathlib.Path) -> FitCase:
  images, k, gt, names = _temple(shared_data)
  v = len(names)
  kind = ("normal",) * v
  nan_pose = np.full((4, 4), np.nan)
  middle = v // 2
  if name == "temple_all":
    rows, notes = np.arange(v), "templeRing, all 19 views in order (~7.5 deg apart): the baseline"
  elif name == "temple_every2":
    rows, notes = np.arange(0, v, 2), "templeRing every 2nd view (~15 deg apart): wider baselines"
  elif name == "temple_every3":
    rows, notes = np.arange(0, v, 3), "templeRing every 3rd view (~22 deg apart): widest baselines"
  elif name == "temple_shuffled":
    rows = np.random.default_rng(SHUFFLE_SEED).permutation(v)
    notes = "templeRing, all 19 views in a fixed random order: nothing may rely on file order"
  else:
    rows = np.arange(v)
  images, k, gt, names = images[rows], k[rows], gt[rows], tuple(names[i] for i in rows)
  kind = tuple(kind[i] for i in rows)
  if name == "temple_duplicate":
    source = 7                                          # templeR0020
    images, k, gt, names, kind = _insert(
        (images, k, gt, names, kind), middle + 1,
        (images[source], k[source], gt[source], f"dup_of_{names[source]}", "duplicate"))
    notes = (f"templeRing + a byte-identical copy of {names[source]} under another name, placed "
             f"after {names[middle]}: a zero-baseline pair")
  elif name == "temple_blank":
    h, w = images.shape[1:3]
    blank = np.full((h, w, 3), BLANK_GREY, np.uint8)
    images, k, gt, names, kind = _insert((images, k, gt, names, kind), middle,
                                         (blank, k[0], nan_pose, "blank.png", "blank"))
    notes = (f"templeRing + a uniform grey image (no features, no tracks) after {names[middle - 1]}"
             f", no GT")
  elif name == "temple_foreign":
    lego_images, _, _, lego_names = _lego(shared_data)
    h, w = images.shape[1:3]
    foreign = _foreign_image(lego_images[0], h, w)
    images, k, gt, names, kind = _insert(
        (images, k, gt, names, kind), middle,
        (foreign, k[0], nan_pose, f"foreign_lego_{lego_names[0]}", "foreign"))
    notes = (f"templeRing + one lego render cropped/resized to {w}x{h} with temple's K after "
             f"{names[middle - 1]}: a view of another scene, no GT")
  return FitCase(name, images, k, gt, names, kind, notes)


def _synth_intrinsics(v: int) -> np.ndarray:
  return np.tile(syn.intrinsics_from_fov(*SYNTH_SIZE, SYNTH_FOV_DEGREES), (v, 1, 1))


def _render(world, cam_from_world) -> np.ndarray:
  images, _, _ = syn.render(world, _synth_intrinsics(len(cam_from_world)), cam_from_world,
                            *SYNTH_SIZE)
  return images


def lowtexture_world(seed: int = LOWTEXTURE_SEED) -> world_lib.World:
  """A weakly textured world: two textured walls facing each other across the scene (x = +-9.5
  m, 10 m long, 5 m high), each with a textured box standing in front of it (so a view of a wall
  is not a view of one plane); the ground, the other boxes, spheres and cylinders are each one
  flat colour.

  An orbit around the centre then sees a wall only when looking across the scene at it, so views
  facing opposite walls share no texture, and views facing along the walls see almost none
  (`tests/evaluate/test_fit_cases.py` checks with `experts.match_views` that the 12-view orbit of
  "synth_lowtexture" splits into at least two groups with no verified match between them).
  """
  world = syn.random_world(seed, num_walls=(0, 0), mirror_prob=0.0)
  centre, half, yaw, active = (np.array(a) for a in (world.box_centre, world.box_half,
                                                     world.box_yaw, world.box_active))
  for row, x in enumerate((world_lib.WALL_DISTANCE, -world_lib.WALL_DISTANCE)):
    centre[row] = [x, 0.0, 2.5]
    half[row] = [5.0, 0.15, 2.5]                 # along the wall's own x axis, turned by yaw
    yaw[row] = np.pi / 2
    # A box (rows 2, 3: unused wall rows) between the wall and the orbit, off-centre and turned.
    centre[row + 2] = [0.83 * x, 2.0 if x > 0 else -2.0, 1.6]
    half[row + 2] = [0.6, 1.0, 1.6]
    yaw[row + 2] = 0.5
    active[[row, row + 2]] = True
  # The walls' and boxes' noise runs from near black to white, and the sun shines along y, so the
  # two walls (faces along x) get the same (ambient) light: neither is the poorly lit one.
  textured = (1, 2, 3, 4)                        # objects 1-4 = box rows 0-3
  colour_a, colour_b = np.array(world.colour_a), np.array(world.colour_b)
  colour_a[list(textured)], colour_b[list(textured)] = 0.05, 1.0
  f32 = lambda a: np.asarray(a, np.float32)
  world = world._replace(box_centre=f32(centre), box_half=f32(half), box_yaw=f32(yaw),
                         box_active=active, colour_a=f32(colour_a), colour_b=f32(colour_b),
                         sun=f32([0.0, 0.6, 0.8]))
  return syn.flatten_textures(world, keep=textured)


@functools.lru_cache(maxsize=None)
def _synth_arrays(name: str):
  """(images, cam_from_world, names, kind, notes) of a procedural case (cached: rendering costs
  seconds)."""
  world = syn.random_world(SYNTH_SEED, mirror_prob=0.0)
  orbit = functools.partial(syn.orbit, radius=ORBIT_RADIUS, height=ORBIT_HEIGHT,
                            arc_degrees=360.0)
  if name.startswith("synth_orbit") and name[len("synth_orbit"):].isdigit():
    v = int(name[len("synth_orbit"):])
    poses = orbit(v)
    notes = (f"procedural world, closed 360-deg orbit of {v} views ({360 / v:.0f} deg apart) "
             f"looking at the centre, {SYNTH_SIZE[1]}x{SYNTH_SIZE[0]} px, 60-deg fov")
    names = tuple(f"orbit{v}_{i:03d}.png" for i in range(v))
    return _render(world, poses), poses, names, ("normal",) * v, notes
  if name == "synth_orbit_repeat":
    images, poses, names, kind, _ = _synth_arrays("synth_orbit12")
    source, at = 4, 8
    again = _render(world, poses[source:source + 1])      # the same viewpoint, rendered again
    images = np.concatenate([images[:at], again, images[at:]])
    poses = np.concatenate([poses[:at], poses[source:source + 1], poses[at:]])
    names = names[:at] + (f"orbit12_{source:03d}_again.png",) + names[at:]
    kind = kind[:at] + ("duplicate",) + kind[at:]
    notes = (f"synth_orbit12 + view {source}'s viewpoint rendered a second time (identical "
             f"pixels) placed after view {at - 1}: a zero-baseline pair in a closed orbit")
    return images, poses, names, kind, notes
  if name == "synth_lowtexture":
    poses = syn.orbit(12, radius=ORBIT_RADIUS, height=2.0, arc_degrees=360.0)
    names = tuple(f"lowtex_{i:03d}.png" for i in range(12))
    notes = ("weak texture: flat-coloured ground and objects, two textured walls (each with a "
             "textured box) on opposite sides, 12-view orbit: the view graph splits into groups "
             "that share no tracks")
    return _render(lowtexture_world(), poses), poses, names, ("normal",) * 12, notes
  if name == "synth_rotation":
    poses = syn.pan(8, centre=(ORBIT_RADIUS, 0.0, 1.6), step_degrees=12.0, heading_degrees=180.0)
    names = tuple(f"pan_{i:03d}.png" for i in range(8))
    notes = ("rotation only: 8 views from one centre panning 12 deg apart across the scene "
             "(zero baseline everywhere: no translation direction, no triangulation)")
    return _render(world, poses), poses, names, ("normal",) * 8, notes
  raise ValueError(f"unknown case {name!r}; expected one of {CASES}")


def _synth_case(name: str) -> FitCase:
  images, poses, names, kind, notes = _synth_arrays(name)
  return FitCase(name, images.copy(), _synth_intrinsics(len(names)), poses.copy(), names, kind,
                 notes)


def make_case(name: str, shared_data: pathlib.Path | str | None = None) -> FitCase:
  """Builds the named case (deterministic: the same arrays on every call and in every process).

  Args:
    name: one of CASES.
    shared_data: the shared data folder (with templeRing/, lego/, icl_livingroom/); needed by the
      real cases only.
  Returns:
    FitCase (fresh arrays: the caller may modify them).
  Raises:
    ValueError for an unknown name; FileNotFoundError (one line, naming the missing path) when a
    real case's data is absent.
  """
  if name not in CASES:
    raise ValueError(f"unknown case {name!r}; expected one of {CASES}")
  if name.startswith("synth_"):
    return _synth_case(name)
  if shared_data is None:
    raise FileNotFoundError(f"case {name!r} needs the shared data folder (shared_data=None)")
  shared_data = pathlib.Path(shared_data).resolve()
  if name.startswith("temple_"):
    case = _temple_case(name, shared_data)
  elif name == "lego":
    images, k, gt, names = _lego(shared_data)
    case = FitCase(name, images, k, gt, names, ("normal",) * len(names),
                   "NeRF-synthetic lego, 20 views on white, 800x800: an object on a plain "
                   "background, views from all around the upper hemisphere")
  else:   # icl_livingroom
    scene = read_tum(_require(shared_data / "icl_livingroom", name), ICL_INTRINSICS,
                     depth_scale=DEPTH_SCALE)
    names = tuple(f"{n}.png" for n in scene.names)
    case = FitCase(name, scene.images, scene.intrinsics, scene.cam_from_world, names,
                   ("normal",) * len(names),
                   "ICL-NUIM living room, 5 frames, small indoor motion, frame 3 overlaps only "
                   "frame 1; GT poses off by ~0.3-1.2 deg")
  return case._replace(images=case.images.copy(), intrinsics=case.intrinsics.copy(),
                       cam_from_world=case.cam_from_world.copy())
