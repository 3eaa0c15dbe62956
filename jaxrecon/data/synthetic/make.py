"""`make_scene`: a seeded procedural world, a camera path and its renders, as a `Scene`."""
from __future__ import annotations

import numpy as np

from jaxrecon.data.scene import Scene
from jaxrecon.data.synthetic import paths
from jaxrecon.data.synthetic.render import render
from jaxrecon.data.synthetic.world import random_world

PATHS = ("orbit", "walk", "random")


def camera_path(path: str, num_views: int, rng: np.random.Generator) -> np.ndarray:
  """(v, 4, 4) cam_from_world of the named path ("orbit", "walk" or "random"), randomised by rng
  (orbit: start azimuth, radius, height; walk: start side; random: everything)."""
  if path == "orbit":
    return paths.orbit(num_views, radius=rng.uniform(5.5, 7.0), height=rng.uniform(2.5, 4.0),
                       start_degrees=rng.uniform(0, 360))
  if path == "walk":
    # The default walk rotated about z to a random side of the scene.
    yaw = rng.uniform(0, 2 * np.pi)
    c, s = np.cos(yaw), np.sin(yaw)
    start = np.array([c * -5.0 - s * -5.5, s * -5.0 + c * -5.5, 1.6])
    return paths.forward_walk(num_views, start=start, heading_degrees=15.0 + np.rad2deg(yaw))
  if path == "random":
    return paths.random_look_at(num_views, rng)
  raise ValueError(f"path: expected one of {PATHS}, got {path!r}")


def make_scene(seed: int = 0, *, num_views: int = 8, height: int = 128, width: int = 128,
               path: str = "orbit", fov_degrees: float = 60.0, supersample: int = 2,
               mirror_prob: float = 0.15) -> Scene:
  """A rendered synthetic scene with ground-truth depth, poses, intrinsics and semantic labels.

  Args:
    seed: the same seed gives the identical scene (world, cameras, pixels).
    num_views: v; height, width: image size (pixels); path: "orbit", "walk" or "random" (see
      `paths`); fov_degrees: horizontal field of view; supersample: n x n RGB rays per pixel;
    mirror_prob: probability of each non-ground object being a mirror.
  Returns:
    Scene: images (v, h, w, 3) uint8, intrinsics (v, 3, 3) float64, cam_from_world (v, 4, 4)
    float64 (OpenCV axes, world z up, metres), depth (v, h, w) float32 camera z (0 on sky),
    labels (v, h, w) uint8 indices into CLASSES (sky is class 0, never IGNORE_LABEL).
  """
  world_seq, camera_seq = np.random.SeedSequence(seed).spawn(2)
  world = random_world(np.random.default_rng(world_seq), mirror_prob=mirror_prob)
  cam_from_world = camera_path(path, num_views, np.random.default_rng(camera_seq))
  intrinsics = np.tile(paths.intrinsics_from_fov(height, width, fov_degrees), (num_views, 1, 1))
  images, depth, labels = render(world, intrinsics, cam_from_world, height, width,
                                 supersample=supersample)
  return Scene(images=images, intrinsics=intrinsics, cam_from_world=cam_from_world, depth=depth,
               labels=labels, name=f"synthetic-{path}-{seed}")
