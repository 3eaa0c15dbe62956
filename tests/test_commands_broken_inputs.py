"""Issue #10: every command (prepare, reconstruct --method=ffrm|fit, segment) on broken inputs
ends with one line `<command>: error: ...` naming what is wrong, a non-zero exit, no traceback,
and nothing written where the outputs were promised. Plus the must-fix: an image name with a
space used to leave depth / poses / PLY written and then fail in the COLMAP writer."""
import json
import pathlib
import subprocess
import sys

import cv2
import jax
import numpy as np
import pytest

from jaxrecon.data.formats.folder import write_folder
from jaxrecon.data.synthetic import make_scene
from jaxrecon.train.checkpoint import Checkpointer
from main_runs import command_env

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from configs import reliev3r, rewis3d  # noqa: E402  (the real config files, imported as data)


def _save_run(workdir, config, init_state):
  workdir.mkdir(parents=True)
  (workdir / "config.json").write_text(config.to_json_best_effort(indent=2, sort_keys=True))
  ckpt = Checkpointer(workdir / "checkpoints", async_save=False)
  ckpt.save(0, jax.device_get(init_state()))
  ckpt.wait()
  ckpt.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """A tiny Reliev3R run and a tiny Rewis3d (EMA, 2D only) run, freshly initialised (step 0)."""
  from jaxrecon.reliev3r.task import build
  from jaxrecon.rewis3d.task import build_seg
  root = tmp_path_factory.mktemp("runs")
  config = reliev3r.get_config()
  config.unlock()
  config.model.update(embed_dim=32, depth=1, num_heads=2, dense_hidden=32, camera_hidden=32,
                      image_size=(32, 32))
  config.pipeline.update(height=32, width=32, num_views=3)
  config.optim.warmup_steps, config.steps = 1, 2
  _save_run(root / "ffrm", config, build(config)[2])
  seg = rewis3d.get_config()
  seg.unlock()
  seg.pipeline.update(height=32, width=32)
  seg.methods = "ema"
  _save_run(root / "seg" / "ema", seg, build_seg(seg, "ema")[2])
  return root


def _cli(command, *args):
  env = command_env()  # one device, as a user runs it; LLVM -O0 (compile_bound)
  return subprocess.run([sys.executable, "-m", f"jaxrecon.{command}", *map(str, args)], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=600)


def _images(folder, names, h=36, w=44, k=True):
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(0)
  for name in names:
    cv2.imwrite(str(folder / name), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
  if k:
    (folder.parent / "intrinsics.json").write_text(
        json.dumps([[40.0, 0, (w - 1) / 2], [0, 40.0, (h - 1) / 2], [0, 0, 1]]))
  return folder


def _assert_one_line_error(result, command, *expected):
  lines = [x for x in result.stderr.splitlines() if x.strip()]
  assert result.returncode == 2, result.stderr[-3000:]
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  assert lines and lines[-1].startswith(f"{command}: error: "), result.stderr[-3000:]
  for text in expected:
    assert text in lines[-1], lines[-1]


# --- must-fix: a name with a space no longer leaves half-written output --------------------------

def test_reconstruct_image_name_with_space(tmp_path, runs):
  images = _images(tmp_path / "scene" / "images", ["a view.png", "b.png", "c.png"])
  out = tmp_path / "out"
  result = _cli("reconstruct", f"--checkpoint={runs / 'ffrm'}", f"--images={images}",
                f"--out={out}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert (out / "depth" / "a view.npy").is_file()
  assert json.loads((out / "poses.json").read_text())["images"]["a view"]["file"] == "a view.png"
  assert sorted(p.name for p in (out / "colmap" / "images").iterdir()) == [
      "a_view.png", "b.png", "c.png"]
  assert json.loads((out / "colmap" / "renamed.json").read_text()) == {"a_view.png": "a view.png"}
  images_txt = (out / "colmap" / "sparse" / "0" / "images.txt").read_text()
  assert " a_view.png\n" in images_txt and "a view" not in images_txt
  assert not [p for p in out.iterdir() if p.name.startswith(".")]   # no staging left behind


# --- broken inputs: one line, non-zero exit, nothing written -----------------------------------

def test_reconstruct_broken_inputs(tmp_path, runs):
  images = _images(tmp_path / "scene" / "images", ["a.png", "b.png", "c.png"])
  out = tmp_path / "out"
  (tmp_path / "file").write_text("x")
  # Two names equal once COLMAP-safe: refused before the model runs.
  clash = _images(tmp_path / "clash" / "images", ["a b.png", "a_b.png"])
  _assert_one_line_error(_cli("reconstruct", f"--checkpoint={runs / 'ffrm'}",
                              f"--images={clash}", f"--out={out}"),
                         "reconstruct", "'a b.png'", "'a_b.png'")
  _assert_one_line_error(_cli("reconstruct", f"--checkpoint={runs / 'ffrm'}",
                              f"--images={images}", f"--out={tmp_path / 'file' / 'out'}"),
                         "reconstruct", "is a file, not a folder")
  # A Rewis3d run is named as such.
  _assert_one_line_error(_cli("reconstruct", f"--checkpoint={runs / 'seg'}", f"--images={images}",
                              f"--out={out}"),
                         "reconstruct", "is a Rewis3d (segmentation) run", "jaxrecon.segment")
  # A bad third line of intrinsics.txt is named, not line 1.
  (tmp_path / "scene" / "intrinsics.json").unlink()
  (tmp_path / "scene" / "intrinsics.txt").write_text("40 0 21.5\n0 40 17.5\n0 1\n")
  _assert_one_line_error(_cli("reconstruct", "--method=fit", f"--images={images}",
                              f"--out={out}"),
                         "reconstruct", "intrinsics.txt: line 3")
  assert not out.exists()


def test_segment_broken_inputs(tmp_path, runs):
  images = _images(tmp_path / "images", ["a.png", "b.png", "c.png"], k=False)
  (images / "c.png").write_bytes(b"not an image")
  out = tmp_path / "out"
  _assert_one_line_error(_cli("segment", f"--checkpoint={runs / 'seg'}", f"--images={images}",
                              f"--out={out}"),
                         "segment", "cannot read image", "c.png")
  assert not out.exists()   # checked before the first label map
  (images / "c.png").unlink()
  _assert_one_line_error(_cli("segment", f"--checkpoint={runs / 'ffrm'}", f"--images={images}",
                              f"--out={out}"),
                         "segment", "no Rewis3d config.json", "jaxrecon.reconstruct")
  (tmp_path / "file").write_text("x")
  _assert_one_line_error(_cli("segment", f"--checkpoint={runs / 'seg'}", f"--images={images}",
                              f"--out={tmp_path / 'file'}"),
                         "segment", "exists and is not a folder")
  assert not out.exists()
  # The good images: label maps appear, other files in --out stay, no staging folder is left.
  out.mkdir()
  (out / "notes.txt").write_text("mine")
  result = _cli("segment", f"--checkpoint={runs / 'seg'}", f"--images={images}", f"--out={out}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert sorted(p.name for p in out.iterdir()) == ["classes.json", "color", "labels", "notes.txt"]
  assert sorted(p.name for p in (out / "labels").iterdir()) == ["a.png", "b.png"]


def _scene_root(root, views=3, mono=lambda depth: depth, keep_intrinsics=True):
  scene = make_scene(3, num_views=views, height=48, width=64)
  write_folder(scene, root / "s0")
  (root / "s0" / "mono_depth").mkdir()
  for name, depth in zip(scene.names, scene.depth):
    np.save(root / "s0" / "mono_depth" / f"{name}.npy", mono(depth))
  if not keep_intrinsics:
    (root / "s0" / "intrinsics.json").unlink()
  return root


@pytest.mark.parametrize("case, expected", [
    ("mono_wrong_size", ("mono_depth/", "depth map is 32x24, the images are 64x48")),
    ("mono_all_nan", ("mono_depth/", "no valid depth")),
    ("mono_all_negative", ("mono_depth/", "no valid depth")),
    ("fewer_views", ("2 views, fewer than min_views=3",)),
    ("no_intrinsics", ("no intrinsics.json or intrinsics.txt",)),
    ("root_unset", ("folder.root is not set",))])
def test_prepare_broken_inputs(tmp_path, case, expected):
  kwargs = {"mono_wrong_size": {"mono": lambda d: d[:24, :32]},
            "mono_all_nan": {"mono": lambda d: d * np.nan},
            "mono_all_negative": {"mono": lambda d: -d - 1.0}, "fewer_views": {"views": 2},
            "no_intrinsics": {"keep_intrinsics": False}}.get(case, {})
  root = _scene_root(tmp_path / "scenes", **kwargs)
  out = tmp_path / "cache"
  args = ["--config=configs/prepare.py:folder", "--config.tracker=simulated",
          "--config.simulated_tracker.num_tracks=64", "--config.min_views=3", f"--out={out}"]
  if case != "root_unset":
    args.append(f"--config.folder.root={root}")
  result = _cli("prepare", *args)
  lines = [x for x in result.stderr.splitlines() if x.strip()]
  _assert_one_line_error(result, "prepare")
  if case != "root_unset":   # the scene's own line names the file, the last line sums up
    assert "1 scene(s) failed: s0" in lines[-1]
    assert any(line.startswith("scene s0 failed: ") and all(e in line for e in expected)
               for line in lines), result.stderr
  else:
    assert all(e in lines[-1] for e in expected), lines[-1]
  assert not list(out.glob("*.npz")) if out.exists() else True
