"""`python -m jaxrecon.main` on real images without ground truth (#10): Middlebury templeRing views
in the generic folder format with no depth/ and no poses.json, as a user's own footage is.

Before #10 the first held-out evaluation crashed with `KeyError: 'depth'`, and since it ran before
the checkpoint of the same step, the resume crashed again there. Now the evaluation reports what
the records allow (the reprojection of held-out tracks), says so at start-up, and names the
scenes by their files. The monocular depth maps stand in for an external model's output (a smooth
ramp: a pseudo-label, not ground truth); tracks come from SIFT on 160x120 images.
"""
import json
import pathlib

import cv2
import numpy as np
import pytest
from main_runs import run_main, tiny_flags

from jaxrecon.data.formats.middlebury import read_cameras

SCALE = 0.25
VIEWS_PER_SCENE = 4
TINY = tiny_flags(eval_every=2)


def temple_folders(shared_data, root: pathlib.Path, scenes: int = 3) -> pathlib.Path:
  """`scenes` folder-format scenes of consecutive templeRing views: images, one shared K and
  monocular depth maps; no depth/, no poses.json."""
  temple = shared_data / "templeRing"
  names = sorted(p.name for p in temple.glob("templeR*.png"))
  cameras = read_cameras(temple / "templeR_par.txt")
  for s in range(scenes):
    scene = root / f"temple{s}"
    (scene / "images").mkdir(parents=True)
    (scene / "mono_depth").mkdir()
    chosen = names[s * VIEWS_PER_SCENE:(s + 1) * VIEWS_PER_SCENE]
    k = cameras.select(chosen).intrinsics[0].copy()
    k[:2] *= SCALE   # top-left pixel centre at (0, 0): scaling K is exact up to the half pixel
    (scene / "intrinsics.txt").write_text(
        "\n".join(" ".join(f"{x:.6f}" for x in row) for row in k) + "\n")
    for name in chosen:
      image = cv2.imread(str(temple / name))
      image = cv2.resize(image, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_AREA)
      cv2.imwrite(str(scene / "images" / name), image)
      h, w = image.shape[:2]
      ramp = (0.6 + 0.2 * np.linspace(0.0, 1.0, h)[:, None] * np.ones((1, w))).astype(np.float32)
      np.save(scene / "mono_depth" / f"{pathlib.Path(name).stem}.npy", ramp)
  return root


@pytest.mark.slow
def test_training_and_evaluation_on_folder_data_without_ground_truth(tmp_path, shared_data):
  root = temple_folders(shared_data, tmp_path / "scenes")
  workdir = tmp_path / "run"
  data = ["--config=configs/reliev3r.py", "--config.data.prepare.source=folder",
          f"--config.data.prepare.folder.root={root}", "--config.data.prepare.tracker=sift",
          "--config.data.prepare.depth_expert=files"]
  trained = run_main(workdir, *data, "--config.steps=4", *TINY)
  assert trained.returncode == 0, trained.stderr[-3000:]
  out = trained.stdout
  # Said once at start-up: what the held-out evaluation can report on these records.
  assert out.count("held-out evaluation: track reprojection") == 1, out
  assert "no ground-truth depth or poses" in out
  assert "eval      2" in out and "eval      4" in out
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  evaluated = [r for r in records if "eval/track_px" in r]
  assert [r["step"] for r in evaluated] == [2, 4]
  assert all(np.isfinite(r["eval/track_px"]) and 0 <= r["eval/track_2px"] <= 1 for r in evaluated)
  assert not any("eval/depth_rel" in r or "eval/auc30" in r for r in records)
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == \
      ["2", "4"]

  # Evaluation reads the run's config.json: no override has to be repeated.
  evaluated = run_main(workdir, "--mode=eval")
  assert evaluated.returncode == 0, evaluated.stderr[-3000:]
  table = (workdir / "eval" / "metrics.md").read_text()
  assert "temple2" in table and "scene0" not in table and "track_px" in table
  assert (workdir / "eval" / "temple2.png").stat().st_size > 0
