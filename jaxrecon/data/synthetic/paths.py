"""Camera paths and intrinsics for the procedural world (numpy, float64).

World frame as in `world`: metres, z up, scene centre at the origin, objects within OBJECT_RADIUS,
walls at WALL_DISTANCE. Every path returns (v, 4, 4) `cam_from_world` extrinsics in OpenCV axes
(x right, y down, z forward), image rows pointing down the world z axis (no roll), and keeps the
camera centres between the objects and the walls, so no camera starts inside geometry.
"""
from __future__ import annotations

import numpy as np

from jaxrecon.data.synthetic.world import Seed, as_generator


def intrinsics_from_fov(height: int, width: int, fov_degrees: float = 60.0) -> np.ndarray:
  """(3, 3) K of a centred pinhole with square pixels and horizontal field of view `fov_degrees`.

  With pixel centres at integer coordinates the image spans [-0.5, w - 0.5], so the principal
  point is ((w - 1) / 2, (h - 1) / 2) and fx = (w / 2) / tan(fov / 2).
  """
  f = 0.5 * width / np.tan(np.deg2rad(fov_degrees) / 2)
  return np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])


def look_at(centres, targets) -> np.ndarray:
  """Extrinsics of cameras at `centres` looking at `targets`, no roll (world z is up).

  Args:
    centres: (v, 3) camera centres (world, metres); targets: (v, 3) or (3,) points looked at.
      A target straight above or below a centre is not supported (the roll is undefined).
  Returns:
    (v, 4, 4) cam_from_world, OpenCV axes.
  """
  centres = np.asarray(centres, np.float64)
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  forward = unit(np.broadcast_to(targets, centres.shape) - centres)
  right = unit(np.cross(forward, [0.0, 0.0, 1.0]))
  down = np.cross(forward, right)
  rot = np.stack([right, down, forward], -2)                 # rows: camera axes in world coords
  pose = np.tile(np.eye(4), (len(centres), 1, 1))
  pose[:, :3, :3] = rot
  pose[:, :3, 3] = -np.einsum("vij,vj->vi", rot, centres)    # t = -R c
  return pose


def orbit(num_views: int, *, radius: float = 6.0, height: float = 2.0, arc_degrees: float = 90.0,
          start_degrees: float = 0.0, target=(0.0, 0.0, 0.3)) -> np.ndarray:
  """Cameras on a horizontal arc around the scene centre, all looking at `target`.

  Args:
    num_views: v; radius, height: of the circle (metres); arc_degrees: angle spanned from the first
      to the last view (360 gives a closed loop without repeating the first view);
      start_degrees: azimuth of the first view; target: (3,) point looked at.
  Returns:
    (v, 4, 4) cam_from_world.
  """
  if arc_degrees >= 360.0:
    steps = np.arange(num_views) * 360.0 / num_views
  else:
    steps = np.linspace(0.0, arc_degrees, num_views)
  az = np.deg2rad(start_degrees + steps)
  centres = np.stack([radius * np.cos(az), radius * np.sin(az), np.full(num_views, height)], -1)
  return look_at(centres, np.asarray(target, np.float64))


def forward_walk(num_views: int, *, start=(-5.0, -5.5, 1.6), heading_degrees: float = 15.0,
                 step: float = 0.4, look_ahead: float = 6.0, pitch_degrees: float = -10.0
                 ) -> np.ndarray:
  """A camera walking along a straight line, looking ahead (a forward-moving video).

  Args:
    num_views: v; start: (3,) first camera centre (metres); heading_degrees: walking direction,
      azimuth from the world x axis (the default walks along +x, turned 15 degrees towards the
      scene centre, passing about 4 m from it); step: metres between views (the default path
      reaches the walls after about 35 views); look_ahead: distance of the looked-at point;
      pitch_degrees: elevation of the viewing direction (negative looks down).
  Returns:
    (v, 4, 4) cam_from_world.
  """
  h, p = np.deg2rad(heading_degrees), np.deg2rad(pitch_degrees)
  direction = np.array([np.cos(h), np.sin(h), 0.0])
  centres = np.asarray(start, np.float64) + step * np.arange(num_views)[:, None] * direction
  gaze = np.array([np.cos(p) * np.cos(h), np.cos(p) * np.sin(h), np.sin(p)])
  return look_at(centres, centres + look_ahead * gaze)


def random_look_at(num_views: int, seed: Seed = 0, *,
                   radius=(5.0, 7.5), height=(0.8, 3.5), target_radius: float = 1.5,
                   target_height=(0.0, 1.0)) -> np.ndarray:
  """Cameras at random places around the scene, each looking at a random point near the centre.

  Args:
    num_views: v; seed: int, JAX PRNG key or numpy Generator.
    radius, height: (min, max) horizontal distance from the centre and height of the centres.
    target_radius: targets lie within this horizontal distance of the centre;
    target_height: (min, max) target heights.
  Returns:
    (v, 4, 4) cam_from_world.
  """
  rng = as_generator(seed)
  az = rng.uniform(0, 2 * np.pi, num_views)
  r = rng.uniform(*radius, num_views)
  centres = np.stack([r * np.cos(az), r * np.sin(az), rng.uniform(*height, num_views)], -1)
  ta = rng.uniform(0, 2 * np.pi, num_views)
  tr = target_radius * np.sqrt(rng.uniform(0, 1, num_views))
  targets = np.stack([tr * np.cos(ta), tr * np.sin(ta), rng.uniform(*target_height, num_views)],
                     -1)
  return look_at(centres, targets)


def pan(num_views: int, *, centre=(6.5, 0.0, 1.6), step_degrees: float = 12.0,
        heading_degrees: float = 180.0, pitch_degrees: float = -10.0) -> np.ndarray:
  """A camera turning on the spot (rotation only, no translation): a panorama sweep.

  Args:
    num_views: v; centre: (3,) the one camera centre shared by every view (metres);
    step_degrees: azimuth turned between consecutive views; heading_degrees: azimuth (from the
      world x axis) of the middle of the sweep (the default, from the default centre, faces the
      scene centre); pitch_degrees: elevation of every viewing direction (negative looks down).
  Returns:
    (v, 4, 4) cam_from_world, all with the same centre (zero baseline between any two views).
  """
  heading = np.deg2rad(heading_degrees + step_degrees * (np.arange(num_views)
                                                         - (num_views - 1) / 2))
  p = np.deg2rad(pitch_degrees)
  gaze = np.stack([np.cos(p) * np.cos(heading), np.cos(p) * np.sin(heading),
                   np.full(num_views, np.sin(p))], -1)
  centres = np.tile(np.asarray(centre, np.float64), (num_views, 1))
  return look_at(centres, centres + gaze)
