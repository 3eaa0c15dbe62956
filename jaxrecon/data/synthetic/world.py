"""The procedural world: a scene description as fixed-size arrays, and its seeded generator.

World frame: metres, z up, the ground is the plane z = 0 and the scene centre is the origin. Every
table has a fixed maximum length (unused rows are inactive and never hit), so one compiled renderer
serves every world.

Objects are numbered in one global order, used by the material table:
  0                                 the ground (a square of half-size `ground_extent`),
  1 .. MAX_BOXES                    oriented boxes (walls are thin boxes, then free-standing boxes),
  next MAX_SPHERES                  spheres,
  next MAX_CYLINDERS                vertical cylinders (with caps).
"""
from __future__ import annotations

import numbers
from typing import Any, NamedTuple, Union

import jax
import numpy as np

# Semantic classes, by index (the value stored in `Scene.labels`). A mirror-flagged object of any
# shape is labelled "mirror": its appearance is the reflected scene, not its own surface.
CLASSES = ("sky", "ground", "wall", "box", "sphere", "cylinder", "mirror")
SKY, GROUND, WALL, BOX, SPHERE, CYLINDER, MIRROR = range(len(CLASSES))

MAX_WALLS = 4          # walls are the first MAX_WALLS rows of the box table
MAX_BOXES = 12         # walls + free-standing boxes
MAX_SPHERES = 4
MAX_CYLINDERS = 4
NUM_OBJECTS = 1 + MAX_BOXES + MAX_SPHERES + MAX_CYLINDERS

# Layout (metres). Objects stand within OBJECT_RADIUS of the centre, walls at WALL_DISTANCE, so
# cameras between the two (see `paths`) are never inside geometry.
OBJECT_RADIUS = 3.0
WALL_DISTANCE = 9.5
GROUND_EXTENT = 30.0


class World(NamedTuple):
  """A scene description (numpy arrays; a pytree, so it passes through `jax.jit` as arguments).

  Geometry (world frame, metres; `*_active` False rows are never hit):
    ground_extent: () half-size of the square ground at z = 0.
    box_centre: (MAX_BOXES, 3) centre; box_half: (MAX_BOXES, 3) half-extents along the box's own
      axes; box_yaw: (MAX_BOXES,) rotation about world z (radians); box_active: (MAX_BOXES,) bool.
    sphere_centre: (MAX_SPHERES, 3); sphere_radius: (MAX_SPHERES,); sphere_active: bool.
    cylinder_base: (MAX_CYLINDERS, 3) centre of the bottom cap; cylinder_radius,
      cylinder_height: (MAX_CYLINDERS,); cylinder_active: bool. Axes are vertical.
  Materials, one row per object in the global order of the module docstring (NUM_OBJECTS rows):
    colour_a, colour_b: (n, 3) linear RGB in [0, 1], the two ends of the texture's colour ramp.
    frequency: (n,) texture cells per metre; checker: (n,) weight of the checker term in [0, 1].
    offset: (n, 3) texture-space shift (so no two objects share a pattern); noise_seed: (n,) uint32.
    mirror: (n,) bool, rendered by one reflection bounce; label: (n,) int32 class (see CLASSES).
  Lighting:
    sun: (3,) unit direction towards the sun; sky_zenith, sky_horizon: (3,) RGB of the sky gradient.
  """
  ground_extent: np.ndarray
  box_centre: np.ndarray
  box_half: np.ndarray
  box_yaw: np.ndarray
  box_active: np.ndarray
  sphere_centre: np.ndarray
  sphere_radius: np.ndarray
  sphere_active: np.ndarray
  cylinder_base: np.ndarray
  cylinder_radius: np.ndarray
  cylinder_height: np.ndarray
  cylinder_active: np.ndarray
  colour_a: np.ndarray
  colour_b: np.ndarray
  frequency: np.ndarray
  checker: np.ndarray
  offset: np.ndarray
  noise_seed: np.ndarray
  mirror: np.ndarray
  label: np.ndarray
  sun: np.ndarray
  sky_zenith: np.ndarray
  sky_horizon: np.ndarray


Seed = Union[int, np.random.Generator, Any]  # Any: a JAX PRNG key (typed or raw uint32)


def as_generator(seed: Seed) -> np.random.Generator:
  """A numpy Generator from an int seed, a JAX PRNG key, or the Generator itself.

  Generation runs on the host in numpy: it is a few dozen draws with Python loops (rejection
  placement), and concrete arrays keep the renderer's inputs plain data.
  """
  if isinstance(seed, np.random.Generator):
    return seed
  if isinstance(seed, numbers.Integral):
    return np.random.default_rng(int(seed))
  typed = jax.dtypes.issubdtype(seed.dtype, jax.dtypes.prng_key)
  key = jax.random.key_data(seed) if typed else seed
  return np.random.default_rng(np.asarray(key, np.uint32).ravel().tolist())


def _place(rng, count, min_gap, radius):
  """`count` (x, y) positions within `radius` of the origin, spread by rejection (best effort).

  Returns (count, 2); a position keeps `min_gap` from the earlier ones when 200 draws allow it.
  """
  out = []
  for _ in range(count):
    for _ in range(200):
      p = rng.uniform(-radius, radius, 2)
      if np.hypot(*p) <= radius and all(np.hypot(*(p - q)) >= min_gap for q in out):
        break
    out.append(p)
  return np.reshape(np.array(out, np.float64), (count, 2))


def _materials(rng, n):
  """Random texture parameters for n objects: contrasting colour pairs, frequencies, offsets."""
  # A dark and a bright end of different hues: strong texture contrast gives SIFT its features.
  dark = rng.uniform(0.02, 0.35, (n, 3))
  bright = rng.uniform(0.55, 1.0, (n, 3))
  swap = rng.random(n) < 0.5
  colour_a = np.where(swap[:, None], bright, dark)
  colour_b = np.where(swap[:, None], dark, bright)
  frequency = np.exp(rng.uniform(np.log(3.0), np.log(9.0), n))
  checker = rng.uniform(0.0, 0.5, n)
  offset = rng.uniform(0.0, 10.0, (n, 3))
  noise_seed = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
  return colour_a, colour_b, frequency, checker, offset, noise_seed


def random_world(seed: Seed = 0, *, num_walls=(2, 4), num_boxes=(3, 6),
                 num_spheres=(1, 3), num_cylinders=(1, 3), mirror_prob=0.15) -> World:
  """A random world: textured ground, walls around the scene, boxes, spheres and cylinders.

  Args:
    seed: int, JAX PRNG key or numpy Generator; the same seed gives the same world.
    num_walls: (min, max) inclusive number of walls, at most MAX_WALLS; each stands on one side of a
      square of half-size WALL_DISTANCE, with a random length and height (sky shows above and
      between them).
    num_boxes: (min, max) free-standing boxes, at most MAX_BOXES - MAX_WALLS.
    num_spheres, num_cylinders: (min, max) counts, at most MAX_SPHERES / MAX_CYLINDERS.
    mirror_prob: probability that a wall, box, sphere or cylinder is a mirror (class MIRROR).
  Returns:
    World (float32 / int32 / uint32 / bool numpy arrays), objects within OBJECT_RADIUS of the
    origin, on the ground or floating a little above it.
  """
  rng = as_generator(seed)
  count = lambda lo_hi, cap: int(rng.integers(lo_hi[0], min(lo_hi[1], cap) + 1))
  n_walls = count(num_walls, MAX_WALLS)
  n_boxes = count(num_boxes, MAX_BOXES - MAX_WALLS)
  n_spheres = count(num_spheres, MAX_SPHERES)
  n_cyl = count(num_cylinders, MAX_CYLINDERS)

  # Inactive rows: tiny objects far below the ground, never hit (the active flag decides anyway).
  box_centre = np.tile([0.0, 0.0, -100.0], (MAX_BOXES, 1))
  box_half = np.full((MAX_BOXES, 3), 1e-3)
  box_yaw = np.zeros(MAX_BOXES)
  box_active = np.zeros(MAX_BOXES, bool)
  for i, side in enumerate(rng.permutation(4)[:n_walls]):
    yaw = side * np.pi / 2                      # the wall's x axis runs along the square's side
    along = rng.uniform(-3.0, 3.0)
    normal = np.array([np.cos(yaw - np.pi / 2), np.sin(yaw - np.pi / 2)])
    tangent = np.array([np.cos(yaw), np.sin(yaw)])
    height = rng.uniform(2.0, 5.0)
    box_centre[i] = [*(WALL_DISTANCE * normal + along * tangent), height / 2]
    box_half[i] = [rng.uniform(4.0, 8.0), 0.15, height / 2]
    box_yaw[i] = yaw
    box_active[i] = True

  n_free = n_boxes + n_spheres + n_cyl
  xy = _place(rng, n_free, 1.2, OBJECT_RADIUS)
  for j in range(n_boxes):
    i = MAX_WALLS + j
    half = rng.uniform([0.25, 0.25, 0.25], [0.8, 0.8, 1.0])
    box_centre[i] = [*xy[j], half[2]]
    box_half[i] = half
    box_yaw[i] = rng.uniform(0, np.pi)
    box_active[i] = True

  sphere_centre = np.tile([0.0, 0.0, -100.0], (MAX_SPHERES, 1))
  sphere_radius = np.full(MAX_SPHERES, 1e-3)
  sphere_active = np.zeros(MAX_SPHERES, bool)
  for j in range(n_spheres):
    r = rng.uniform(0.35, 0.85)
    lift = rng.uniform(0.0, 0.8) if rng.random() < 0.3 else 0.0
    sphere_centre[j] = [*xy[n_boxes + j], r + lift]
    sphere_radius[j] = r
    sphere_active[j] = True

  cylinder_base = np.tile([0.0, 0.0, -100.0], (MAX_CYLINDERS, 1))
  cylinder_radius = np.full(MAX_CYLINDERS, 1e-3)
  cylinder_height = np.full(MAX_CYLINDERS, 1e-3)
  cylinder_active = np.zeros(MAX_CYLINDERS, bool)
  for j in range(n_cyl):
    cylinder_base[j] = [*xy[n_boxes + n_spheres + j], 0.0]
    cylinder_radius[j] = rng.uniform(0.15, 0.5)
    cylinder_height[j] = rng.uniform(0.5, 2.5)
    cylinder_active[j] = True

  colour_a, colour_b, frequency, checker, offset, noise_seed = _materials(rng, NUM_OBJECTS)
  label = np.array([GROUND] + [WALL] * MAX_WALLS + [BOX] * (MAX_BOXES - MAX_WALLS)
                   + [SPHERE] * MAX_SPHERES + [CYLINDER] * MAX_CYLINDERS, np.int32)
  mirror = rng.random(NUM_OBJECTS) < mirror_prob
  mirror[0] = False                                  # the ground is never a mirror
  label = np.where(mirror, MIRROR, label).astype(np.int32)

  elevation = rng.uniform(np.deg2rad(30), np.deg2rad(70))
  azimuth = rng.uniform(0, 2 * np.pi)
  sun = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                  np.sin(elevation)])
  sky_zenith = np.array([0.25, 0.45, 0.85]) + rng.uniform(-0.08, 0.08, 3)
  sky_horizon = np.array([0.80, 0.85, 0.92]) + rng.uniform(-0.05, 0.05, 3)

  f32 = lambda x: np.asarray(x, np.float32)
  return World(
      ground_extent=f32(GROUND_EXTENT), box_centre=f32(box_centre), box_half=f32(box_half),
      box_yaw=f32(box_yaw), box_active=box_active, sphere_centre=f32(sphere_centre),
      sphere_radius=f32(sphere_radius), sphere_active=sphere_active,
      cylinder_base=f32(cylinder_base), cylinder_radius=f32(cylinder_radius),
      cylinder_height=f32(cylinder_height), cylinder_active=cylinder_active,
      colour_a=f32(colour_a), colour_b=f32(colour_b), frequency=f32(frequency),
      checker=f32(checker), offset=f32(offset), noise_seed=noise_seed, mirror=mirror,
      label=label, sun=f32(sun), sky_zenith=f32(np.clip(sky_zenith, 0, 1)),
      sky_horizon=f32(np.clip(sky_horizon, 0, 1)))


def flatten_textures(world: World, keep=()) -> World:
  """The same world with every object's texture but `keep`'s replaced by one flat colour.

  A flat object shows only shading (no texture for a feature detector to find): the tool to
  build weakly textured scenes. Geometry, labels, lighting and the kept objects are unchanged.

  Args:
    world: World.
    keep: indices (global object order, see the module docstring) that keep their texture.
  Returns:
    World whose other objects have colour_a = colour_b = the mean of their two ramp ends and no
    checker term (albedo constant over the surface).
  """
  flat = np.ones(NUM_OBJECTS, bool)
  flat[np.asarray(keep, np.int64)] = False
  mean = 0.5 * (world.colour_a + world.colour_b)
  colour = np.where(flat[:, None], mean, world.colour_a).astype(world.colour_a.dtype)
  colour_b = np.where(flat[:, None], mean, world.colour_b).astype(world.colour_b.dtype)
  checker = np.where(flat, 0.0, world.checker).astype(world.checker.dtype)
  return world._replace(colour_a=colour, colour_b=colour_b, checker=checker)
