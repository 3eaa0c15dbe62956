"""Sparse COLMAP text models with tracks: the triangulated tracks of a per-scene fit.

Unlike `colmap_text.write_colmap_text` (fused depth-map points, no observations), this writes the
2D-3D correspondences COLMAP's own tools need (its bundle adjuster, point filtering, MVS):

* cameras.txt: one PINHOLE camera per input view (also the unregistered ones; unused cameras are
  harmless), cx, cy + 0.5 for COLMAP's pixel convention.
* images.txt: only the REGISTERED views (COLMAP lists registered images only, and an unregistered
  view has no pose to write), IMAGE_ID = CAMERA_ID = view index + 1, so ids do not shift when a
  view is left out. The second line lists POINTS2D[] as (X, Y, POINT3D_ID): every observation the
  tracker made in that view, in track-row order, with X, Y = our pixel + 0.5 and POINT3D_ID -1
  when the observation is not part of the model (an outlier, or its track was not kept).
* points3D.txt: `POINT3D_ID X Y Z R G B ERROR TRACK[]`, TRACK[] as (IMAGE_ID, POINT2D_IDX) pairs
  (POINT2D_IDX = 0-based position in that image's POINTS2D line), ERROR = mean reprojection
  error of the point over its track, in pixels, with the written cameras. POINT3D_ID = track
  row + 1, so a point can be traced back to its track.

Which observations and tracks make the model is `model_observations`: inliers in registered views
of finite points in front of the camera, at least two per track; the fit's PLY uses the same.
"""
from __future__ import annotations

import os
import pathlib

import numpy as np

from jaxrecon.io.colmap_text import _fmt, camera_line, check_views, image_line


def _check_tracks(pixels, observed, points, inlier, v):
  pixels = np.asarray(pixels, np.float64)
  observed, inlier = np.asarray(observed, bool), np.asarray(inlier, bool)
  points = np.asarray(points, np.float64)
  t = pixels.shape[0]
  if (pixels.shape != (t, v, 2) or observed.shape != (t, v) or inlier.shape != (t, v)
      or points.shape != (t, 3)):
    raise ValueError(f"colmap_sparse: expected pixels (t, {v}, 2), observed and inlier "
                     f"(t, {v}), points (t, 3); got {pixels.shape}, {observed.shape}, "
                     f"{inlier.shape}, {points.shape}")
  return pixels, observed, points, inlier


def model_observations(pixels, observed, inlier, points, intrinsics,
                       cam_from_world) -> np.ndarray:
  """(t, v) bool: the observations that belong to the model's tracks.

  An observation counts when the tracker made it (`observed`, finite pixel), the fit used it as
  an inlier, its view is registered (finite pose), its track has a finite point and that point is
  in front of the camera (a point behind it has no reprojection error COLMAP could use); tracks
  left with fewer than two such observations are dropped whole (one view fixes no point).
  Shapes: pixels (t, v, 2), observed / inlier (t, v), points (t, 3), intrinsics (v, 3, 3),
  cam_from_world (v, 4, 4).
  """
  cam_from_world = np.asarray(cam_from_world, np.float64)
  registered = np.all(np.isfinite(cam_from_world[:, :3, :4]), axis=(1, 2))
  errors = reprojection_errors(pixels, points, intrinsics, cam_from_world)
  use = (np.asarray(observed, bool) & np.asarray(inlier, bool) & registered[None, :]
         & np.isfinite(errors))
  return use & (use.sum(1) >= 2)[:, None]


def reprojection_errors(pixels, points, intrinsics, cam_from_world) -> np.ndarray:
  """(t, v) pixel distance between each observation and its point projected by the view's camera
  (NaN where either is not finite or the point is not in front of the camera).

  pixels (t, v, 2) and intrinsics (v, 3, 3) in one pixel convention; points (t, 3) world;
  cam_from_world (v, 4, 4) world-to-camera.
  """
  cam = (np.einsum("vij,tj->tvi", cam_from_world[:, :3, :3], points)
         + cam_from_world[None, :, :3, 3])
  with np.errstate(invalid="ignore", divide="ignore"):
    image = np.einsum("vij,tvj->tvi", intrinsics, cam)
    projected = image[..., :2] / image[..., 2:]
    error = np.linalg.norm(projected - pixels, axis=-1)
  return np.where(cam[..., 2] > 0, error, np.nan)


def track_colors(images, pixels, use) -> np.ndarray:
  """(t, 3) uint8 colour of each track: the image colour at the nearest pixel of its first used
  observation (lowest view index with `use`); black for tracks with none.

  images (v, h, w, 3) uint8; pixels (t, v, 2) in the package convention (top-left pixel centre at
  (0, 0), so rounding gives the nearest pixel); use (t, v) bool.
  """
  images = np.asarray(images)
  h, w = images.shape[1:3]
  use = np.asarray(use, bool)
  t = use.shape[0]
  colors = np.zeros((t, 3), np.uint8)
  rows = np.nonzero(use.any(1))[0]
  views = np.argmax(use[rows], axis=1)
  uv = np.asarray(pixels, np.float64)[rows, views]
  u = np.clip(np.round(uv[:, 0]).astype(np.int64), 0, w - 1)
  v = np.clip(np.round(uv[:, 1]).astype(np.int64), 0, h - 1)
  colors[rows] = images[views, v, u]
  return colors


def write_colmap_sparse(folder: str | os.PathLike, names, intrinsics, cam_from_world, image_size,
                        *, pixels, observed, points, inlier, colors) -> dict:
  """Writes cameras.txt, images.txt (with POINTS2D) and points3D.txt (with tracks) into `folder`.

  Args:
    folder: output folder (created), e.g. <out>/colmap/sparse/0.
    names: v image file names relative to the image folder; no whitespace.
    intrinsics: (v, 3, 3) K, package pixel convention (top-left pixel centre at (0, 0)).
    cam_from_world: (v, 4, 4) world-to-camera poses, OpenCV axes; a view whose pose is not finite
      is unregistered and left out of images.txt.
    image_size: (h, w) of every image in pixels.
    pixels: (t, v, 2) track observations, package pixel convention; NaN where unseen.
    observed: (t, v) bool, the tracker saw the track in the view (listed in POINTS2D).
    points: (t, 3) world point per track, NaN where the track is not in the model.
    inlier: (t, v) bool, the observation is used by the model (see `model_observations`).
    colors: (t, 3) uint8 colour per track.
  Returns:
    {"folder", "points" (number written), "observations" (TRACK entries written),
     "images" (registered images written)}.
  """
  names, intrinsics, cam_from_world = check_views("write_colmap_sparse", names, intrinsics,
                                                  cam_from_world)
  v = len(names)
  pixels, observed, points, inlier = _check_tracks(pixels, observed, points, inlier, v)
  colors = np.asarray(colors, np.uint8)
  registered = np.all(np.isfinite(cam_from_world[:, :3, :4]), axis=(1, 2))
  observed = observed & np.all(np.isfinite(pixels), axis=-1)
  use = model_observations(pixels, observed, inlier, points, intrinsics, cam_from_world)
  errors = reprojection_errors(pixels, points, intrinsics, cam_from_world)

  # POINT2D_IDX of track row r in view i: its rank among the rows observed in view i.
  point2d_index = np.cumsum(observed, axis=0) - 1
  folder = pathlib.Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  cameras = ["# Camera list with one line of data per camera:",
             "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[] (PINHOLE: fx fy cx cy; top-left pixel "
             "centre at (0.5, 0.5))", f"# Number of cameras: {v}"]
  cameras += [camera_line(i + 1, k, image_size) for i, k in enumerate(intrinsics)]
  images = ["# Image list with two lines of data per image (registered images only):",
            "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME  (world-to-camera, OpenCV "
            "axes)", "#   POINTS2D[] as (X, Y, POINT3D_ID)  (top-left pixel centre at (0.5, 0.5); "
            "-1: not in the model)", f"# Number of images: {int(registered.sum())}"]
  for i in np.nonzero(registered)[0]:
    images.append(image_line(int(i) + 1, cam_from_world[i], names[i]))
    rows = np.nonzero(observed[:, i])[0]
    ids = np.where(use[rows, i], rows + 1, -1)
    # +0.5: COLMAP's top-left pixel centre is (0.5, 0.5), ours (0, 0).
    images.append(" ".join(f"{_fmt(pixels[r, i] + 0.5)} {p}" for r, p in zip(rows, ids)))
  point_lines = ["# 3D point list with one line of data per point:",
                 "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)  "
                 "(ERROR: mean reprojection error in pixels; POINT3D_ID = track row + 1)"]
  rows = np.nonzero(use.any(1))[0]
  point_lines.append(f"# Number of points: {len(rows)}")
  for r in rows:
    views = np.nonzero(use[r])[0]
    track = " ".join(f"{i + 1} {point2d_index[r, i]}" for i in views)
    error = float(np.mean(errors[r, views]))
    red, green, blue = colors[r].tolist()
    point_lines.append(f"{r + 1} {_fmt(points[r])} {red} {green} {blue} {error:.6g} {track}")
  (folder / "cameras.txt").write_text("\n".join(cameras) + "\n")
  (folder / "images.txt").write_text("\n".join(images) + "\n")
  (folder / "points3D.txt").write_text("\n".join(point_lines) + "\n")
  return {"folder": folder, "points": int(len(rows)), "observations": int(use.sum()),
          "images": int(registered.sum())}
