"""jaxrecon.export (fused points, PLY, COLMAP text) and `python -m jaxrecon.reconstruct` end to end
on a tiny freshly initialised run."""
import json
import pathlib
import shutil
import subprocess
import sys

import cv2
import jax
import numpy as np
import pytest
from plyfile import PlyData

from jaxrecon import export, io
from jaxrecon.data.formats.colmap import read_colmap
from jaxrecon.train.checkpoint import Checkpointer
from jaxrecon.reliev3r.task import build
from main_runs import command_env

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from configs import reliev3r  # noqa: E402  (the real config file, imported as data)


def _random_rotation(rng):
  q, r = np.linalg.qr(rng.normal(size=(3, 3)))
  q = q * np.sign(np.diag(r))
  return q * np.linalg.det(q)


def _pose(rotation, translation):
  pose = np.eye(4)
  pose[:3, :3], pose[:3, 3] = rotation, translation
  return pose


def _write_pngs(folder, names, h, w, seed=0):
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  for name in names:
    cv2.imwrite(str(folder / name), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


# --- export: pure logic -----------------------------------------------------------------------

def test_ply_round_trip_values_and_dtypes(tmp_path):
  rng = np.random.default_rng(0)
  xyz = rng.normal(size=(50, 3)).astype(np.float32)
  rgb = rng.integers(0, 256, (50, 3), dtype=np.uint8)
  conf = rng.uniform(0, 2, 50).astype(np.float32)
  path = io.write_ply(tmp_path / "sub" / "p.ply", xyz, rgb, conf)
  vertex = PlyData.read(str(path))["vertex"]
  assert [p.name for p in vertex.properties] == ["x", "y", "z", "red", "green", "blue",
                                                 "confidence"]
  assert [vertex.data.dtype[p.name] for p in vertex.properties] == [np.dtype("<f4")] * 3 + [
      np.dtype("u1")] * 3 + [np.dtype("<f4")]
  back = io.read_ply(path)
  np.testing.assert_array_equal(back["xyz"], xyz)
  np.testing.assert_array_equal(back["rgb"], rgb)
  np.testing.assert_array_equal(back["confidence"], conf)
  empty = io.read_ply(io.write_ply(tmp_path / "e.ply", np.zeros((0, 3)),
                                           np.zeros((0, 3), np.uint8), np.zeros(0)))
  assert empty["xyz"].shape == (0, 3)
  with pytest.raises(ValueError, match="uint8"):
    io.write_ply(tmp_path / "bad.ply", xyz, rgb.astype(np.int32), conf)


def test_quaternion_matches_reader_for_all_branches():
  from jaxrecon.io.colmap_read import wxyz_to_matrix
  rng = np.random.default_rng(1)
  # Random rotations, plus half-turns about each axis (Shepperd's non-trace branches).
  rotations = [_random_rotation(rng) for _ in range(20)]
  rotations += [np.diag(d) for d in ([1, -1, -1], [-1, 1, -1], [-1, -1, 1])] + [np.eye(3)]
  for rot in rotations:
    q = io.rotation_to_wxyz(rot)
    assert q[0] >= 0 and abs(np.linalg.norm(q) - 1) < 1e-12
    np.testing.assert_allclose(wxyz_to_matrix(q), rot, atol=1e-12)


def test_colmap_text_round_trip(tmp_path):
  rng = np.random.default_rng(2)
  names = ["b.png", "a.png", "c.jpg"]
  h, w = 30, 40
  _write_pngs(tmp_path / "images", names, h, w)
  intrinsics = np.stack([np.array([[50.0 + i, 0, 19.5 + 0.1 * i], [0, 48.0 + i, 14.25],
                                   [0, 0, 1]]) for i in range(3)])
  poses = np.stack([_pose(_random_rotation(rng), rng.normal(size=3)) for _ in names])
  points = (rng.normal(size=(7, 3)), rng.integers(0, 256, (7, 3), dtype=np.uint8))
  model = io.write_colmap_text(tmp_path / "sparse" / "0", names, intrinsics, poses, (h, w),
                                   points=points)
  cameras = (model / "cameras.txt").read_text().splitlines()
  first = [line for line in cameras if not line.startswith("#")][0].split()
  assert first[1:4] == ["PINHOLE", "40", "30"] and float(first[6]) == 20.0  # cx + 0.5
  scene = read_colmap(model, tmp_path / "images")
  order = np.argsort(names)           # the reader sorts by name
  assert scene.names == ("a", "b", "c")
  np.testing.assert_allclose(scene.intrinsics, intrinsics[order], atol=1e-12)
  np.testing.assert_allclose(scene.cam_from_world, poses[order], atol=1e-12)
  lines = [x for x in (model / "points3D.txt").read_text().splitlines() if not x.startswith("#")]
  assert len(lines) == 7 and len(lines[0].split()) == 8
  with pytest.raises(ValueError, match="whitespace"):
    io.write_colmap_text(tmp_path / "x", ["a b.png"], intrinsics[:1], poses[:1], (h, w))


def test_fused_points_land_where_expected():
  h, w = 4, 6
  k = np.array([[10.0, 0, 2.0], [0, 10.0, 1.0], [0, 0, 1]])
  # View 0: identity camera, depth 2. View 1: camera at (1, 0, 0) rotated 90 degrees about y, so
  # its optical axis (+z) points along world +x... and depth 3.
  rot_y = np.array([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]])
  world_from_cam = np.stack([np.eye(4), _pose(rot_y, [1.0, 0, 0])])
  depth = np.stack([np.full((h, w), 2.0), np.full((h, w), 3.0)])
  conf = np.ones((2, h, w))
  colors = np.zeros((2, h, w, 3), np.uint8)
  colors[1] = 200
  xyz, rgb, c, view = export.fuse_points(depth, conf, colors, np.stack([k, k]), world_from_cam,
                                         min_confidence_percentile=0)
  assert xyz.shape == (2 * h * w, 3) and xyz.dtype == np.float32 and rgb.dtype == np.uint8
  # The principal-point pixel (u, v) = (2, 1) is on the optical axis at the depth.
  centre = 1 * w + 2
  np.testing.assert_allclose(xyz[centre], [0, 0, 2], atol=1e-6)
  np.testing.assert_allclose(xyz[h * w + centre], [1 + 3, 0, 0], atol=1e-6)
  # Pixel (u, v) = (5, 3) of view 0: x = (5 - 2) / 10 * 2, y = (3 - 1) / 10 * 2.
  np.testing.assert_allclose(xyz[3 * w + 5], [0.6, 0.4, 2.0], atol=1e-6)
  # View 1 pixel (5, 1): camera (0.9, 0, 3) -> world R @ cam + t = (3 + 1, 0, -0.9).
  np.testing.assert_allclose(xyz[h * w + 1 * w + 5], [4.0, 0, -0.9], atol=1e-6)
  assert np.all(rgb[h * w:] == 200) and np.all(view[h * w:] == 1)


def test_fuse_points_confidence_percentile_per_view():
  h, w = 10, 10
  k = np.array([[10.0, 0, 4.5], [0, 10.0, 4.5], [0, 0, 1]])
  conf = np.stack([np.arange(100.0).reshape(h, w), 100 + np.arange(100.0).reshape(h, w)])
  depth = np.ones((2, h, w))
  depth[0, 9, 9] = 0.0                               # invalid depth: always dropped
  xyz, _, c, view = export.fuse_points(depth, conf, np.zeros((2, h, w, 3), np.uint8),
                                       np.stack([k, k]), np.stack([np.eye(4)] * 2),
                                       min_confidence_percentile=10)
  # Per view the lowest 10 % (10 pixels) go: a global percentile would drop none of view 1.
  assert np.sum(view == 0) == 89 and np.sum(view == 1) == 90
  assert c[view == 1].min() == 110
  with pytest.raises(ValueError, match="percentile"):
    export.fuse_points(depth, conf, np.zeros((2, h, w, 3), np.uint8), np.stack([k, k]),
                       np.stack([np.eye(4)] * 2), min_confidence_percentile=101)


def test_intrinsics_files_and_colorize(tmp_path):
  k = [[30.0, 0, 15.5], [0, 31.0, 11.5], [0, 0, 1]]
  (tmp_path / "intrinsics.json").write_text(json.dumps(k))
  np.testing.assert_array_equal(export.read_intrinsics(tmp_path / "intrinsics.json", ["a", "b"]),
                                [k, k])
  (tmp_path / "k.txt").write_text("# per view\na 30 0 15.5 0 31 11.5 0 0 1\n")
  with pytest.raises(ValueError, match="no line for images"):
    export.read_intrinsics(tmp_path / "k.txt", ["a", "b"])
  images = tmp_path / "scene" / "images"
  images.mkdir(parents=True)
  with pytest.raises(FileNotFoundError, match="no intrinsics"):
    export.views.find_intrinsics(images)
  (tmp_path / "scene" / "intrinsics.txt").write_text("30 0 15.5\n0 31 11.5\n0 0 1\n")
  assert export.views.find_intrinsics(images).name == "intrinsics.txt"
  rgb = export.colorize(np.array([[0.0, 1.0], [np.nan, 2.0]]))
  assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8 and np.all(rgb[1, 0] == 0)


# --- the CLI end to end -------------------------------------------------------------------------

def _tiny_config():
  config = reliev3r.get_config()
  config.unlock()
  config.model.update(embed_dim=32, depth=1, num_heads=2, dense_hidden=32, camera_hidden=32,
                      image_size=(32, 32))
  config.pipeline.update(height=32, width=32, num_views=3)
  config.optim.warmup_steps = 1
  config.steps = 2
  return config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A run workdir: config.json + a freshly initialised checkpoint at step 0."""
  workdir = tmp_path_factory.mktemp("run")
  config = _tiny_config()
  (workdir / "config.json").write_text(config.to_json_best_effort(indent=2, sort_keys=True))
  _, _, init_state = build(config)
  state = jax.device_get(init_state())
  ckpt = Checkpointer(workdir / "checkpoints", async_save=False)
  ckpt.save(0, state)
  ckpt.wait()
  ckpt.close()
  return workdir


def _cli(*args):
  env = command_env()  # one device, as a user runs it; LLVM -O0 (compile_bound)
  return subprocess.run([sys.executable, "-m", "jaxrecon.reconstruct", *map(str, args)],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _scene(folder, h=36, w=44, names=("v0.png", "v1.png", "v2.jpg")):
  _write_pngs(folder / "images", names, h, w)
  k = [[40.0, 0, (w - 1) / 2], [0, 40.0, (h - 1) / 2], [0, 0, 1]]
  (folder / "intrinsics.json").write_text(json.dumps(k))
  return folder / "images", np.array(k)


@pytest.mark.slow
def test_cli_end_to_end(tmp_path, run):
  images, k = _scene(tmp_path / "scene")
  out = tmp_path / "out"
  result = _cli(f"--checkpoint={run}", f"--images={images}", f"--out={out}",
                "--min_confidence_percentile=20")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "[7/7]" in result.stderr and "restored step 0" in result.stderr
  names = ["v0", "v1", "v2"]
  for kind in ("depth", "confidence"):
    for name in names:
      values = np.load(out / kind / f"{name}.npy")
      assert values.shape == (36, 44) and values.dtype == np.float32
      assert np.all(np.isfinite(values)) and np.all(values > 0)
      assert cv2.imread(str(out / kind / f"{name}.png")).shape == (36, 44, 3)
  poses = json.loads((out / "poses.json").read_text())
  assert "OpenCV" in poses["conventions"]["axes"] and sorted(poses["images"]) == names
  cam_from_world = np.array([poses["images"][n]["cam_from_world"] for n in names])
  world_from_cam = np.array([poses["images"][n]["world_from_cam"] for n in names])
  np.testing.assert_allclose(cam_from_world @ world_from_cam, np.broadcast_to(np.eye(4),
                                                                             (3, 4, 4)), atol=1e-5)
  np.testing.assert_allclose(poses["images"]["v1"]["intrinsics"], k)
  cloud = io.read_ply(out / "points.ply")
  # 3 views of 32x32 at the model's resolution, the lowest 20 % of each view dropped.
  assert 0.75 * 3 * 32 * 32 <= len(cloud["xyz"]) <= 0.81 * 3 * 32 * 32
  assert np.all(np.isfinite(cloud["xyz"])) and np.all(cloud["confidence"] > 0)
  # Points of view 0 reproject into view 0 (they came from its depth map).
  scene = read_colmap(out / "colmap" / "sparse" / "0", out / "colmap" / "images")
  assert scene.names == tuple(names)
  np.testing.assert_allclose(scene.intrinsics, np.broadcast_to(k, (3, 3, 3)), atol=1e-9)
  np.testing.assert_allclose(scene.cam_from_world, cam_from_world, atol=1e-5)
  points3d = [x for x in (out / "colmap" / "sparse" / "0" / "points3D.txt").read_text()
              .splitlines() if not x.startswith("#")]
  assert len(points3d) == len(cloud["xyz"])
  # The first cloud point comes from view 0 (views in order, pixels row-major): it lies in front
  # of camera 0, inside its image, at a depth within view 0's exported depth range.
  from jaxrecon.data.transforms import crop_resize_camera
  k_model, _ = crop_resize_camera(k, None, (0, 0, 36, 44), (32, 32))
  cam = cam_from_world[0, :3, :3] @ cloud["xyz"][0] + cam_from_world[0, :3, 3]
  u, v, _ = k_model @ (cam / cam[2])
  assert -0.5 <= u <= 31.5 and -0.5 <= v <= 31.5
  depth0 = np.load(out / "depth" / "v0.npy")
  assert depth0.min() * (1 - 1e-4) <= cam[2] <= depth0.max() * (1 + 1e-4)


@pytest.mark.slow
def test_cli_checkpoints_folder_and_config_flag(tmp_path, run):
  """--checkpoint may name checkpoints/ itself; without config.json, --config (+ overrides)
  gives the architecture."""
  images, _ = _scene(tmp_path / "scene", h=32, w=32, names=("a.png", "b.png"))
  bare = tmp_path / "bare"
  shutil.copytree(run / "checkpoints", bare / "checkpoints")
  result = _cli(f"--checkpoint={bare / 'checkpoints'}", f"--images={images}",
                f"--out={tmp_path / 'out'}", "--config=configs/reliev3r.py",
                "--config.model.embed_dim=32", "--config.model.depth=1",
                "--config.model.num_heads=2", "--config.model.dense_hidden=32",
                "--config.model.camera_hidden=32", "--config.model.image_size=(32, 32)",
                "--config.pipeline.height=32", "--config.pipeline.width=32",
                "--config.optim.warmup_steps=1", "--config.steps=2")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "config --config" in result.stderr
  assert (tmp_path / "out" / "points.ply").is_file()


@pytest.mark.parametrize("case", ["mixed_sizes", "no_intrinsics", "unreadable", "no_checkpoint"])
def test_cli_clear_errors(tmp_path, run, case):
  images, _ = _scene(tmp_path / "scene")
  checkpoint = run
  expected = None
  if case == "mixed_sizes":
    _write_pngs(images, ["v3.png"], 20, 20)
    expected = "v3.png: size 20x20 differs"
  elif case == "no_intrinsics":
    (tmp_path / "scene" / "intrinsics.json").unlink()
    expected = "no intrinsics"
  elif case == "unreadable":
    (images / "v1.png").write_bytes(b"not an image")
    expected = "cannot read image " + str(images / "v1.png")
  else:
    checkpoint = tmp_path / "empty_run"
    checkpoint.mkdir()
    expected = "no checkpoint"
  result = _cli(f"--checkpoint={checkpoint}", f"--images={images}", f"--out={tmp_path / 'out'}")
  assert result.returncode == 2, result.stderr[-3000:]
  assert expected in result.stderr, result.stderr[-3000:]
  assert "Traceback" not in result.stderr


def test_export_imports_no_model_or_trainer():
  """jaxrecon.export is host-side file logic: no model, loss or trainer behind it."""
  code = ("import sys, jaxrecon.export; "
          "bad = sorted(m for m in sys.modules if m.startswith(('jaxrecon.models', "
          "'jaxrecon.train', 'jaxrecon.losses'))); print(bad); sys.exit(1 if bad else 0)")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stdout + result.stderr
