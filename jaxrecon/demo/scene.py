"""The demo's analytic scene, its cameras and the simulated experts (plain numpy, float64).

The fit sees only a `Problem`; the `GroundTruth` is for evaluation.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# The problem handed to the (float32) fit.
_F32 = jnp.float32

# Image size and focal length: a 40x30 px image with a 58 x 45 degree field of view.
HEIGHT, WIDTH, FOCAL = 30, 40, 36.0
# Cameras: on a horizontal arc of this radius and height (world units, z up) around the world
# z axis, spread over this azimuth range (degrees; -90 = in front of the back wall), all looking
# at `_TARGET`.
_ARC_RADIUS, _ARC_HEIGHT, _ARC_DEGREES = 5.0, 2.0, (-125.0, -55.0)
_TARGET = (0.0, 0.5, 0.5)


# Plain numpy (float64): this runs once, and XLA would spend seconds compiling it on a CPU, more
# than the whole fit.


class Rectangles(NamedTuple):
  """p planar rectangles {centre + a * axis_a + b * axis_b : |a|, |b| <= 1} (world units).

  centre, axis_a, axis_b: (p, 3) numpy arrays; the two axes are orthogonal half-extent vectors.
  """
  centre: np.ndarray
  axis_a: np.ndarray
  axis_b: np.ndarray


def _box(centre, size, yaw):
  """The five visible faces (top and four sides; not the bottom) of a box standing on z = 0.

  Args:
    centre: (x, y) of the footprint centre; size: (sx, sy, sz) full extents; yaw: radians about z.
  Returns:
    list of five (centre, axis_a, axis_b) triples of (3,) arrays.
  """
  c, s = np.cos(yaw), np.sin(yaw)
  ex = np.array([c, s, 0.0]) * size[0] / 2
  ey = np.array([-s, c, 0.0]) * size[1] / 2
  ez = np.array([0.0, 0.0, size[2] / 2])
  mid = np.array([centre[0], centre[1], size[2] / 2])
  return [(mid + ez, ex, ey), (mid + ex, ey, ez), (mid - ex, ey, ez), (mid + ey, ex, ez),
          (mid - ey, ex, ez)]


def make_scene():
  """Rectangles of the demo scene: a 12 x 12 ground at z = 0, a back wall (y = 2.5, 2 high), a
  left wall (x = -2.5, 1.5 high) and a 1.2 x 0.8 x 1 box turned by 30 degrees (world units, z up).
  Beyond the walls and the ground's edge is sky."""
  faces = [
      (np.array([0.0, 0.0, 0.0]), np.array([6.0, 0.0, 0.0]), np.array([0.0, 6.0, 0.0])),
      (np.array([0.0, 2.5, 1.0]), np.array([3.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])),
      (np.array([-2.5, 0.5, 0.75]), np.array([0.0, 2.0, 0.0]), np.array([0.0, 0.0, 0.75])),
  ] + _box((0.4, 0.3), (1.2, 0.8, 1.0), np.deg2rad(30.0))
  return Rectangles(*(np.stack(x) for x in zip(*faces)))


def _pose(rotation, centre):
  """(v, 4, 4) world_from_cam from (v, 3, 3) rotations and (v, 3) centres."""
  pose = np.tile(np.eye(4), (len(centre), 1, 1))
  pose[:, :3, :3], pose[:, :3, 3] = rotation, centre
  return pose


def look_at(centres, target):
  """Poses of cameras at `centres` looking at `target`, image rows pointing down the world z axis.

  Args:
    centres: (v, 3) camera centres (world, z up); target: (3,) world point.
  Returns:
    (v, 4, 4) world_from_cam (OpenCV camera axes: x right, y down, z forward).
  """
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  forward = unit(target - centres)
  right = unit(np.cross(forward, [0.0, 0.0, 1.0]))
  down = np.cross(forward, right)
  return _pose(np.stack([right, down, forward], -1), centres)


def make_cameras(views):
  """Ground-truth cameras: (v, 4, 4) world_from_cam on the arc, and (v, 3, 3) intrinsics."""
  azimuth = np.deg2rad(np.linspace(*_ARC_DEGREES, views))
  centres = np.stack([_ARC_RADIUS * np.cos(azimuth), _ARC_RADIUS * np.sin(azimuth),
                      np.full(views, _ARC_HEIGHT)], -1)
  k = np.array([[FOCAL, 0.0, (WIDTH - 1) / 2], [0.0, FOCAL, (HEIGHT - 1) / 2], [0.0, 0.0, 1.0]])
  return look_at(centres, np.asarray(_TARGET)), np.tile(k, (views, 1, 1))


def cast_rays(pixels, intrinsics, world_from_cam, scene):
  """Depth of the nearest surface along the rays through given pixels (analytic ray casting).

  Args:
    pixels: (..., n, 2) (u, v) pixels.
    intrinsics: (..., 3, 3) K; world_from_cam: (..., 4, 4) camera poses.
    scene: Rectangles with p entries.
  Returns:
    depth: (..., n) camera-frame z of the first hit (world units); 0 where the ray hits nothing.
    face: (..., n) int, index of the rectangle hit first; -1 for sky.
  """
  hom = np.concatenate([pixels, np.ones_like(pixels[..., :1])], -1)
  rays_cam = np.einsum("...ij,...nj->...ni", np.linalg.inv(intrinsics), hom)
  # The world ray has camera z = 1, so the ray parameter of a hit is its depth.
  rays = np.einsum("...ij,...nj->...ni", world_from_cam[..., :3, :3], rays_cam)[..., None, :]
  origin = world_from_cam[..., None, None, :3, 3]                     # (..., 1, 1, 3)
  normal = np.cross(scene.axis_a, scene.axis_b)                       # (p, 3)
  denom = np.sum(rays * normal, -1)                                   # (..., n, p)
  parallel = np.abs(denom) < 1e-12
  t = np.sum((scene.centre - origin) * normal, -1) / np.where(parallel, 1.0, denom)
  local = origin + t[..., None] * rays - scene.centre                 # hit point - centre
  a = np.sum(local * scene.axis_a, -1) / np.sum(scene.axis_a**2, -1)
  b = np.sum(local * scene.axis_b, -1) / np.sum(scene.axis_b**2, -1)
  hits = ~parallel & (t > 1e-9) & (np.abs(a) <= 1) & (np.abs(b) <= 1)
  t = np.where(hits, t, np.inf)
  nearest = np.min(t, -1)
  hit = np.isfinite(nearest)
  return np.where(hit, nearest, 0.0), np.where(hit, np.argmin(t, -1), -1)


def render_depth(intrinsics, world_from_cam, scene):
  """Ground-truth depth maps: (v, h, w) camera z (0 on sky) and (v, h, w) bool validity."""
  v, u = np.meshgrid(np.arange(HEIGHT), np.arange(WIDTH), indexing="ij")
  grid = np.stack([u, v], -1).reshape(-1, 2).astype(np.float64)      # pixel centres (u, v)
  depth, face = cast_rays(grid, intrinsics, world_from_cam, scene)
  shape = (len(world_from_cam), HEIGHT, WIDTH)
  return depth.reshape(shape), face.reshape(shape) >= 0


def simulate_mono_depth(rng, depth, valid, *, noise=0.01):
  """Monocular pseudo-depth: a per-view affine map of noisy true depth, sky set to a wrong value.

  Args:
    rng: numpy Generator.
    depth: (v, h, w) true depth (world units); valid: (v, h, w) bool, False on sky.
    noise: relative (multiplicative, Gaussian) per-pixel noise.
  Returns:
    (v, h, w) positive pseudo-depth a_v (depth + noise) + b_v, arbitrary units: a_v log-uniform
    in [0.3, 3], b_v / a_v uniform from -0.5 min(depth) to median(depth); on sky a "far plane" at
    1.1-1.6x the view's largest depth (finite and wrong: sky has no depth).
  """
  v = len(depth)
  scale = np.exp(rng.uniform(np.log(0.3), np.log(3.0), (v, 1, 1)))
  near = np.array([np.min(d[m]) for d, m in zip(depth, valid)])[:, None, None]
  med = np.array([np.median(d[m]) for d, m in zip(depth, valid)])[:, None, None]
  # b_v / a_v from minus half the nearest depth (the pseudo-depth, and so its log, stay defined)
  # to plus the median depth.
  shift = scale * rng.uniform(-0.5 * near, med)
  sky = np.max(np.where(valid, depth, 0.0), axis=(1, 2), keepdims=True) * rng.uniform(
      1.1, 1.6, (v, 1, 1))
  noisy = np.where(valid, depth, sky) * (1 + noise * rng.standard_normal(depth.shape))
  return scale * noisy + shift


def _project(points, intrinsics, world_from_cam):
  """(n, 3) world points -> (v, n, 2) pixels and (v, n) depth in each of v cameras."""
  rot, centre = world_from_cam[:, :3, :3], world_from_cam[:, :3, 3]
  cam = np.einsum("vji,vnj->vni", rot, points[None] - centre[:, None])  # R^T (X - c)
  z = cam[..., 2]
  # Points at a camera centre (from sky pixels) get z = 0: divide by 1 instead, they are invisible.
  pix = np.einsum("vij,vnj->vni", intrinsics[:, :2, :2],
                  cam[..., :2] / np.where(z == 0, 1.0, z)[..., None])
  return pix + intrinsics[:, None, :2, 2], z


def simulate_tracks(rng, intrinsics, world_from_cam, scene, *, num_tracks=240, pixel_noise=0.3,
                    outlier_fraction=0.1):
  """Sparse tracks of surface points, with their true visibility, pixel noise and outliers.

  Candidate points are the surface points behind random pixels of random views; each is projected
  into every view and is visible there when it is in front, inside the image and not occluded (the
  ray cast through its pixel hits it first). The `num_tracks` candidates seen by most views are
  kept (all seen at least twice).

  Args:
    rng: numpy Generator; intrinsics: (v, 3, 3); world_from_cam: (v, 4, 4) true poses.
    scene: Rectangles.
    num_tracks: t.
    pixel_noise: standard deviation of the Gaussian pixel noise (pixels).
    outlier_fraction: probability that an observation is replaced by a uniformly random pixel.
  Returns:
    tracks: (t, v, 2) observed pixels, NaN where not visible.
    visibility: (t, v) float {0, 1}.
    outlier: (t, v) bool, the observations that are outliers (for reporting only).
  """
  v, n = len(world_from_cam), 8 * num_tracks
  size = np.array([WIDTH - 1, HEIGHT - 1], np.float64)
  src = rng.integers(0, v, n)
  src_pix = rng.uniform(0, 1, (n, 1, 2)) * size
  src_depth, src_face = cast_rays(src_pix, intrinsics[src], world_from_cam[src], scene)
  hom = np.concatenate([src_pix, np.ones((n, 1, 1))], -1)[:, 0]
  cam = np.einsum("nij,nj->ni", np.linalg.inv(intrinsics[src]), hom) * src_depth
  points = np.einsum("nij,nj->ni", world_from_cam[src, :3, :3], cam) + world_from_cam[src, :3, 3]

  pix, z = _project(points, intrinsics, world_from_cam)              # (v, n, 2), (v, n)
  seen_depth, seen_face = cast_rays(pix, intrinsics, world_from_cam, scene)
  inside = np.all((pix >= 0) & (pix <= size), -1) & (z > 0)
  unoccluded = (seen_face >= 0) & (np.abs(seen_depth - z) <= 1e-6 * z)
  visible = inside & unoccluded & (src_face[:, 0] >= 0)               # sky pixels are no points
  count = visible.sum(0)
  # Most-seen first, at random among equals.
  order = np.lexsort((rng.uniform(size=n), -count))[:num_tracks]
  if count[order[-1]] < 2:
    raise ValueError("the scene has too few points seen by two cameras; use more views")
  pix, visible = np.swapaxes(pix[:, order], 0, 1), visible[:, order].T  # (t, v, 2), (t, v)

  noisy = pix + pixel_noise * rng.standard_normal(pix.shape)
  outlier = visible & (rng.uniform(size=visible.shape) < outlier_fraction)
  noisy = np.where(outlier[..., None], rng.uniform(0, 1, pix.shape) * size, noisy)
  return np.where(visible[..., None], noisy, np.nan), visible.astype(np.float64), outlier


def _rodrigues(axis_angle):
  """(v, 3) rotation vectors (radians) -> (v, 3, 3) rotation matrices."""
  angle = np.linalg.norm(axis_angle, axis=-1)[:, None, None]
  k = axis_angle / np.maximum(angle[:, :, 0], 1e-12)
  skew = np.cross(k[:, None, :], -np.eye(3))                          # [k]_x, row by row
  return np.eye(3) + np.sin(angle) * skew + (1 - np.cos(angle)) * skew @ skew


def perturb_poses(rng, world_from_cam, *, min_degrees=5.0, max_degrees=10.0, centre_noise=0.15):
  """A rough initial guess: each rotation turned about a random axis, each centre noised.

  Args:
    rng: numpy Generator; world_from_cam: (v, 4, 4) poses.
    min_degrees, max_degrees: range of the uniform rotation error (degrees).
    centre_noise: standard deviation of the Gaussian centre error (world units, per axis).
  Returns:
    (v, 4, 4) perturbed world_from_cam.
  """
  v = len(world_from_cam)
  axis = rng.standard_normal((v, 3))
  axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
  angle = np.deg2rad(rng.uniform(min_degrees, max_degrees, (v, 1)))
  rot = world_from_cam[:, :3, :3] @ _rodrigues(axis * angle)
  return _pose(rot, world_from_cam[:, :3, 3] + centre_noise * rng.standard_normal((v, 3)))


def axes_meeting_point(world_from_cam):
  """(3,) least-squares point closest to all optical axes (the scene centre the cameras look at).

  Args:
    world_from_cam: (v, 4, 4) poses.
  Returns:
    the world point minimising the sum of squared distances to the lines {c_i + s z_i}.
  """
  z, c = world_from_cam[:, :3, 2], world_from_cam[:, :3, 3]
  proj = np.eye(3) - z[:, :, None] * z[:, None, :]                    # (v, 3, 3) I - z z^T
  return np.linalg.solve(proj.sum(0), np.einsum("vij,vj->i", proj, c))


def initial_log_depth(mono, world_from_cam):
  """Initial depth: each pseudo-depth map rescaled so that its median is the distance from its
  (initial) camera to the point the optical axes pass nearest to (a scene-centre guess that needs
  no ground truth). The pseudo-label's unknown shift is left in.

  Args:
    mono: (v, h, w) pseudo-depth (positive); world_from_cam: (v, 4, 4) initial poses.
  Returns:
    (v, h, w) log-depth (log world units).
  """
  guess = np.linalg.norm(world_from_cam[:, :3, 3] - axes_meeting_point(world_from_cam), axis=-1)
  return np.log(mono * (guess / np.median(mono, axis=(1, 2)))[:, None, None])


class Problem(NamedTuple):
  """What the fit sees (no ground truth), for v views of h x w pixels and t tracks; float32.

  mono: (v, h, w) monocular pseudo-depth (arbitrary per-view affine units).
  tracks: (t, v, 2) observed pixels (NaN where not visible); visibility: (t, v) {0, 1}.
  intrinsics: (v, 3, 3) known K.
  init_world_from_cam: (v, 4, 4) initial pose guess; camera 0 stays fixed at it (gauge).
  init_log_depth: (v, h, w) initial log-depth (log world units).
  pivot: (3,) world point nearest to the initial optical axes (the scene centre guess that the
    pose parametrisation orbits about).
  """
  mono: jax.Array
  tracks: jax.Array
  visibility: jax.Array
  intrinsics: jax.Array
  init_world_from_cam: jax.Array
  init_log_depth: jax.Array
  pivot: jax.Array


class GroundTruth(NamedTuple):
  """Ground truth, for evaluation only; float32 except the masks.

  depth: (v, h, w) camera z (world units), 0 on sky; valid: (v, h, w) bool, False on sky.
  world_from_cam: (v, 4, 4). scene_size: scalar, mean distance of the cameras to the scene centre.
  outlier: (t, v) bool, the outlier observations among the tracks.
  """
  depth: jax.Array
  valid: jax.Array
  world_from_cam: jax.Array
  scene_size: jax.Array
  outlier: jax.Array


def make_problem(seed, *, views=5, num_tracks=240):
  """Renders the scene and simulates the experts and the initial guess.

  Args:
    seed: integer; the whole problem is a function of it.
    views: v, number of cameras; num_tracks: t.
  Returns:
    (Problem, GroundTruth).
  """
  rng = np.random.default_rng(seed)
  scene = make_scene()
  world_from_cam, intrinsics = make_cameras(views)
  depth, valid = render_depth(intrinsics, world_from_cam, scene)
  mono = simulate_mono_depth(rng, depth, valid)
  tracks, visibility, outlier = simulate_tracks(rng, intrinsics, world_from_cam, scene,
                                                num_tracks=num_tracks)
  init = perturb_poses(rng, world_from_cam)
  scene_size = np.mean(np.linalg.norm(world_from_cam[:, :3, 3] - np.asarray(_TARGET), axis=-1))
  f32 = lambda x: jnp.asarray(x, _F32)
  problem = Problem(f32(mono), f32(tracks), f32(visibility), f32(intrinsics), f32(init),
                    f32(initial_log_depth(mono, init)), f32(axes_meeting_point(init)))
  return problem, GroundTruth(f32(depth), jnp.asarray(valid), f32(world_from_cam), f32(scene_size),
                              jnp.asarray(outlier))
