"""Rigid poses, pinhole intrinsics, projection and back-projection (OpenCV axes, pixel centres at
integers; see the package docstring).

Poses are (..., 4, 4) `a_from_b` transforms; every argument that is only read also accepts the top
(..., 3, 4) block. Intrinsics are upper-triangular (..., 3, 3) K (skew allowed). Leading "..." axes
of all arguments broadcast together.
"""
from __future__ import annotations

import jax.numpy as jnp

from jaxrecon.geometry.safe import safe_normalize
from jaxrecon.geometry.shapes import check_shape


def _pose_parts(T, name, dims=None):
  """Splits a (..., 4, 4) or (..., 3, 4) pose into R (..., 3, 3) and t (..., 3)."""
  shape = tuple(jnp.shape(T))
  if len(shape) < 2 or shape[-2:] not in ((4, 4), (3, 4)):
    raise ValueError(f"{name}: expected shape (..., 4, 4) or (..., 3, 4), got {shape}")
  dims = check_shape(T[..., :3, :], "... 3 4", name, dims)
  return T[..., :3, :3], T[..., :3, 3], dims


def make_pose(R, t):
  """Pose from rotation and translation.

  Args:
    R: (..., 3, 3) rotation of `a_from_b`.
    t: (..., 3) translation of `a_from_b` (the origin of b in a-coordinates).
  Returns:
    (..., 4, 4) [[R, t], [0, 0, 0, 1]].
  """
  dims = check_shape(R, "... 3 3", "R")
  check_shape(t, "... 3", "t", dims)
  batch = dims["..."]
  R = jnp.broadcast_to(R, batch + (3, 3))
  t = jnp.broadcast_to(t, batch + (3,))
  dtype = jnp.result_type(R, t)
  top = jnp.concatenate([R, t[..., None]], -1).astype(dtype)
  bottom = jnp.broadcast_to(jnp.array([0, 0, 0, 1], dtype), batch + (1, 4))
  return jnp.concatenate([top, bottom], -2)


def invert_pose(T):
  """Inverse of a rigid pose: `a_from_b` (..., 4, 4) or (..., 3, 4) -> `b_from_a` (..., 4, 4).

  Uses R^T and -R^T t (exact for rigid transforms; no general matrix inverse).
  """
  R, t, _ = _pose_parts(T, "T")
  Rt = jnp.swapaxes(R, -1, -2)
  return make_pose(Rt, -jnp.einsum("...ij,...j->...i", Rt, t))


def compose_poses(a_from_b, b_from_c):
  """Composition a_from_c = a_from_b @ b_from_c.

  Args:
    a_from_b: (..., 4, 4) or (..., 3, 4) pose.
    b_from_c: (..., 4, 4) or (..., 3, 4) pose.
  Returns:
    (..., 4, 4) a_from_c.
  """
  R1, t1, dims = _pose_parts(a_from_b, "a_from_b")
  R2, t2, _ = _pose_parts(b_from_c, "b_from_c", dims)
  return make_pose(R1 @ R2, jnp.einsum("...ij,...j->...i", R1, t2) + t1)


def transform_points(a_from_b, points):
  """Maps points from frame b to frame a.

  Args:
    a_from_b: (..., 4, 4) or (..., 3, 4) pose.
    points: (..., n, 3) points in b-coordinates.
  Returns:
    (..., n, 3) points in a-coordinates, X_a = R X_b + t.
  """
  R, t, dims = _pose_parts(a_from_b, "a_from_b")
  check_shape(points, "... n 3", "points", dims)
  return jnp.einsum("...ij,...nj->...ni", R, points) + t[..., None, :]


def camera_centers(cam_from_world):
  """Camera centres in world coordinates, -R^T t.

  Args:
    cam_from_world: (..., 4, 4) or (..., 3, 4) extrinsics.
  Returns:
    (..., 3) centre of each camera (world units).
  """
  R, t, _ = _pose_parts(cam_from_world, "cam_from_world")
  return -jnp.einsum("...ji,...j->...i", R, t)


def projection_matrix(intrinsics, cam_from_world):
  """P = K [R | t]: world point (homogeneous) -> homogeneous pixel.

  Args:
    intrinsics: (..., 3, 3) K.
    cam_from_world: (..., 4, 4) or (..., 3, 4) extrinsics.
  Returns:
    (..., 3, 4) projection matrices.
  """
  dims = check_shape(intrinsics, "... 3 3", "intrinsics")
  _pose_parts(cam_from_world, "cam_from_world", dims)
  return intrinsics @ cam_from_world[..., :3, :]


def _signed_clamp(z, min_depth):
  """Sign-preserving max(|z|, min_depth): a divisor that is never 0 (z = 0 counts as in front)."""
  return jnp.where(z >= 0, jnp.maximum(z, min_depth), jnp.minimum(z, -min_depth))


def project(points, intrinsics, cam_from_world=None, *, min_depth=1e-6):
  """Pinhole projection to pixels.

  Args:
    points: (..., n, 3) world points if `cam_from_world` is given, else camera-frame points.
    intrinsics: (..., 3, 3) K.
    cam_from_world: optional (..., 4, 4) or (..., 3, 4) extrinsics.
    min_depth: smallest |z| used as divisor (world units). Points closer to the camera plane,
      including behind the camera, still get finite pixels and gradients; mask them with `depth`.
  Returns:
    pixels: (..., n, 2) (u, v) in pixels.
    depth: (..., n) camera-frame z (world units), <= 0 for points at or behind the camera.
  """
  dims = check_shape(points, "... n 3", "points")
  check_shape(intrinsics, "... 3 3", "intrinsics", dims)
  if cam_from_world is not None:
    _pose_parts(cam_from_world, "cam_from_world", dims)
    points = transform_points(cam_from_world, points)
  z = points[..., 2]
  xy = points[..., :2] / _signed_clamp(z, min_depth)[..., None]
  # Full upper-triangular K (skew included): [u, v] = K[:2, :2] [x/z, y/z] + K[:2, 2].
  pix = jnp.einsum("...ij,...nj->...ni", intrinsics[..., :2, :2], xy) + intrinsics[..., None, :2, 2]
  return pix, z


def inverse_intrinsics(intrinsics):
  """Closed-form inverse of upper-triangular intrinsics [[fx, s, cx], [0, fy, cy], [0, 0, k22]].

  Args:
    intrinsics: (..., 3, 3) K (fx, fy, k22 non-zero; the lower triangle is ignored).
  Returns:
    (..., 3, 3) K^-1, mapping homogeneous pixels to camera rays with z = 1 (when k22 = 1).
  """
  check_shape(intrinsics, "... 3 3", "intrinsics")
  a, b, c = intrinsics[..., 0, 0], intrinsics[..., 0, 1], intrinsics[..., 0, 2]
  d, e = intrinsics[..., 1, 1], intrinsics[..., 1, 2]
  f = intrinsics[..., 2, 2]
  z = jnp.zeros_like(a)
  return jnp.stack([
      jnp.stack([1 / a, -b / (a * d), (b * e - c * d) / (a * d * f)], -1),
      jnp.stack([z, 1 / d, -e / (d * f)], -1),
      jnp.stack([z, z, 1 / f], -1)], -2)


def unproject(pixels, depth, intrinsics, world_from_cam=None):
  """Back-projects pixels with known depth.

  Args:
    pixels: (..., n, 2) (u, v) in pixels.
    depth: (..., n) camera-frame z (world units).
    intrinsics: (..., 3, 3) K.
    world_from_cam: optional (..., 4, 4) or (..., 3, 4) pose of the camera.
  Returns:
    (..., n, 3) points: world coordinates if `world_from_cam` is given, else camera coordinates.
  """
  dims = check_shape(pixels, "... n 2", "pixels")
  check_shape(depth, "... n", "depth", dims)
  check_shape(intrinsics, "... 3 3", "intrinsics", dims)
  kinv = inverse_intrinsics(intrinsics)
  homog = jnp.concatenate([pixels, jnp.ones_like(pixels[..., :1])], -1)
  rays = jnp.einsum("...ij,...nj->...ni", kinv, homog)
  pts = rays * depth[..., None]
  if world_from_cam is not None:
    _pose_parts(world_from_cam, "world_from_cam", dims)
    pts = transform_points(world_from_cam, pts)
  return pts


def pixel_grid(h, w, dtype=jnp.float32):
  """(h, w, 2) pixel-centre coordinates, grid[row, col] = (u, v) = (col, row)."""
  v, u = jnp.meshgrid(jnp.arange(h, dtype=dtype), jnp.arange(w, dtype=dtype), indexing="ij")
  return jnp.stack([u, v], -1)


def backproject_depth(depth, intrinsics, world_from_cam=None):
  """Point map of a depth map.

  Args:
    depth: (..., h, w) camera-frame z (world units).
    intrinsics: (..., 3, 3) K.
    world_from_cam: optional (..., 4, 4) or (..., 3, 4) pose of the camera.
  Returns:
    (..., h, w, 3) point of every pixel: world coordinates if `world_from_cam` is given, else
    camera coordinates.
  """
  dims = check_shape(depth, "... h w", "depth")
  check_shape(intrinsics, "... 3 3", "intrinsics", dims)
  h, w = dims["h"], dims["w"]
  grid = pixel_grid(h, w, jnp.result_type(depth, intrinsics, float))
  homog = jnp.concatenate([grid, jnp.ones_like(grid[..., :1])], -1)
  rays = jnp.einsum("...ij,hwj->...hwi", inverse_intrinsics(intrinsics), homog)
  pts = rays * depth[..., None]
  if world_from_cam is not None:
    R, t, _ = _pose_parts(world_from_cam, "world_from_cam", dims)
    pts = jnp.einsum("...ij,...hwj->...hwi", R, pts) + t[..., None, None, :]
  return pts


def scale_intrinsics(intrinsics, scale_x, scale_y):
  """Intrinsics of the image resized by (scale_x, scale_y) (new width = scale_x * old width).

  With pixel centres at integers, the image edge -0.5 stays at -0.5, so u' = (u + 0.5) s - 0.5:
  fx' = s fx, skew' = s skew, cx' = s (cx + 0.5) - 0.5 (likewise y).

  Args:
    intrinsics: (..., 3, 3) K.
    scale_x, scale_y: scalars or (...) arrays, > 0.
  Returns:
    (..., 3, 3) K'.
  """
  check_shape(intrinsics, "... 3 3", "intrinsics")
  intrinsics = jnp.asarray(intrinsics, jnp.result_type(intrinsics, float))
  dtype = intrinsics.dtype
  sx = jnp.asarray(scale_x, dtype)[..., None, None]
  sy = jnp.asarray(scale_y, dtype)[..., None, None]
  row0 = jnp.zeros((3, 3), dtype).at[0].set(1)
  row1 = jnp.zeros((3, 3), dtype).at[1].set(1)
  row2 = jnp.zeros((3, 3), dtype).at[2].set(1)
  e02 = jnp.zeros((3, 3), dtype).at[0, 2].set(1)
  e12 = jnp.zeros((3, 3), dtype).at[1, 2].set(1)
  # Row-wise scaling, then the half-pixel shift that keeps the image edge fixed (K[2, 2] = 1).
  scaled = intrinsics * (sx * row0 + sy * row1 + row2)
  return scaled + 0.5 * (sx - 1) * e02 + 0.5 * (sy - 1) * e12


def crop_intrinsics(intrinsics, x0, y0):
  """Intrinsics of the crop whose top-left pixel is (x0, y0) of the original (u' = u - x0).

  Args:
    intrinsics: (..., 3, 3) K.
    x0, y0: scalars or (...) arrays, in pixels.
  Returns:
    (..., 3, 3) K with cx - x0, cy - y0.
  """
  check_shape(intrinsics, "... 3 3", "intrinsics")
  intrinsics = jnp.asarray(intrinsics, jnp.result_type(intrinsics, float))
  x0 = jnp.asarray(x0, intrinsics.dtype)[..., None, None]
  y0 = jnp.asarray(y0, intrinsics.dtype)[..., None, None]
  # Only the principal point moves (K[2, 2] = 1 is assumed, so cx, cy are in pixels).
  e02 = jnp.zeros((3, 3), intrinsics.dtype).at[0, 2].set(1)
  e12 = jnp.zeros((3, 3), intrinsics.dtype).at[1, 2].set(1)
  return intrinsics - x0 * e02 - y0 * e12


def up_from_cameras(world_from_cam):
  """A scene's "up" direction in its own world frame, estimated from its cameras.

  OpenCV cameras have y pointing down the image; people and vehicles hold cameras roughly upright
  (no roll), so each camera's -y axis, R[:, 1] negated, is close to the world's up and the
  normalised mean of them is a robust estimate. Needed wherever the world frame is a gauge (a
  feed-forward model's or a fit's own frame), where a fixed axis such as z is arbitrary.

  Args:
    world_from_cam: (..., v, 4, 4) or (..., v, 3, 4) camera-to-world poses, OpenCV axes.
  Returns:
    (..., 3) unit vector in world coordinates (any direction if the -y axes cancel exactly).
  """
  world_from_cam = jnp.asarray(world_from_cam)
  check_shape(world_from_cam[..., :3, :], "... v 3 4", "world_from_cam")
  return safe_normalize(-jnp.mean(world_from_cam[..., :3, 1], axis=-2))
