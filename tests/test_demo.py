"""End-to-end checks of the quick-start demo, `python -m jaxrecon.demo`: the simulated problem is
what it claims to be, the fit beats its initial guess by a wide margin and keeps its gauge, and the
command line runs and prints its table."""
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrecon.demo import cli, fit, scene

# Shorter than the default 300 steps, still enough on the default seed (measured: median / max
# relative rotation error 9.5 / 15.3 -> 0.3 / 0.8-1.0 degrees, depth error 10.9% -> 1.4%).
STEPS = 200
REPO = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def problem_and_truth():
  return scene.make_problem(0)


@pytest.fixture(scope="module")
def result():
  return cli.main(["--steps", str(STEPS), "--quiet"])


def _rotation_error_deg(r1, r2):
  cos = (np.trace(np.swapaxes(r1, -1, -2) @ r2, axis1=-2, axis2=-1) - 1) / 2
  return np.rad2deg(np.arccos(np.clip(cos, -1, 1)))


def test_problem_is_weak_supervision_of_the_truth(problem_and_truth):
  problem, truth = problem_and_truth
  v, h, w = problem.mono.shape
  assert (v, h, w) == (5, scene.HEIGHT, scene.WIDTH)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(problem))
  valid = np.asarray(truth.valid)
  assert 0.05 < 1 - valid.mean() < 0.5                          # some sky, mostly surfaces
  # The pseudo-depth is positive, and an affine map of the truth up to its 1% noise on surfaces.
  mono, depth = np.asarray(problem.mono, np.float64), np.asarray(truth.depth, np.float64)
  assert mono.min() > 0
  for m, d, ok in zip(mono, depth, valid):
    a, b = np.polyfit(d[ok], m[ok], 1)
    assert a > 0
    assert np.median(np.abs((m[ok] - b) / a - d[ok]) / d[ok]) < 0.02
  # Every track is seen at least twice; about 10% of the observations are outliers.
  vis = np.asarray(problem.visibility) > 0
  assert vis.sum(1).min() >= 2
  assert np.all(np.isnan(np.asarray(problem.tracks)[~vis]))
  outliers = np.asarray(truth.outlier)
  assert not np.any(outliers & ~vis)
  assert 0.05 < outliers.sum() / vis.sum() < 0.15
  # The initial rotations are 5-10 degrees off.
  err = _rotation_error_deg(np.asarray(problem.init_world_from_cam[:, :3, :3]),
                            np.asarray(truth.world_from_cam[:, :3, :3]))
  assert np.all((err > 4.9) & (err < 10.1))


def test_inlier_tracks_agree_with_the_true_geometry(problem_and_truth):
  """The noisy inlier observations project the same surface point (within the pixel noise)."""
  problem, truth = problem_and_truth
  k = np.asarray(problem.intrinsics[0], np.float64)
  poses = np.asarray(truth.world_from_cam, np.float64)
  tracks, vis = np.asarray(problem.tracks, np.float64), np.asarray(problem.visibility) > 0
  inlier = vis & ~np.asarray(truth.outlier)
  # Triangulate each track from its inlier observations (midpoint of the rays, least squares).
  rays = np.einsum("vij,jk,tvk->tvi", poses[:, :3, :3], np.linalg.inv(k),
                   np.concatenate([np.nan_to_num(tracks), np.ones(tracks.shape[:-1] + (1,))], -1))
  rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
  proj = np.eye(3) - rays[..., :, None] * rays[..., None, :]           # (t, v, 3, 3)
  proj *= inlier[..., None, None]
  centres = poses[:, :3, 3]
  usable = inlier.sum(1) >= 2
  points = np.linalg.solve(proj[usable].sum(1) + 1e-9 * np.eye(3),
                           np.einsum("tvij,vj->ti", proj[usable], centres)[..., None])[..., 0]
  cam = np.einsum("vji,tvj->tvi", poses[:, :3, :3], points[:, None] - centres)
  pix = cam[..., :2] / cam[..., 2:] * k[0, 0] + k[:2, 2]
  err = np.linalg.norm(pix - tracks[usable], axis=-1)[inlier[usable]]
  assert usable.mean() > 0.9
  assert np.sqrt(np.mean(err**2)) < 0.6                        # pixel noise sigma 0.3 px


@pytest.mark.slow
def test_fit_beats_its_initial_guess(result):
  before, after = result["before"], result["after"]
  assert before["rot_median_deg"] > 3                          # the guess is 5-10 degrees off
  assert after["rot_median_deg"] < 1.0
  assert after["rot_max_deg"] < 2.0
  assert after["rot_median_deg"] < before["rot_median_deg"] / 5
  assert after["centre_rel"] < before["centre_rel"] / 3
  assert after["depth_rel"] < 0.03
  assert after["depth_rel"] < before["depth_rel"] / 3
  assert np.isfinite(result["final"]["loss"])


@pytest.mark.slow
def test_fit_keeps_the_gauge_and_float32(problem_and_truth):
  problem, truth = problem_and_truth
  # Same static config as `result`'s run, so the compiled step is reused.
  params, final = fit.fit(problem, truth, fit.FitConfig(steps=STEPS), log_every=0)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
  depth, confidence, world_from_cam = jax.jit(fit.unpack)(params, problem)
  # Camera 0 is not a parameter; the median depth (the scene scale) is pinned.
  np.testing.assert_array_equal(world_from_cam[0], problem.init_world_from_cam[0])
  np.testing.assert_allclose(jnp.median(depth), jnp.exp(jnp.median(problem.init_log_depth)),
                             rtol=1e-5)
  assert float(jnp.min(depth)) > 0
  assert float(jnp.min(confidence)) > 0 and float(jnp.max(confidence)) < 2
  rot = np.asarray(world_from_cam[:, :3, :3], np.float64)
  np.testing.assert_allclose(rot @ np.swapaxes(rot, -1, -2), np.broadcast_to(np.eye(3), rot.shape),
                             atol=1e-5)
  assert np.isfinite(final["loss"])


@pytest.mark.slow
def test_command_line_prints_the_table():
  proc = subprocess.run([sys.executable, "-m", "jaxrecon.demo", "--steps", "20"], cwd=REPO,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "step   20" in proc.stdout                            # progress of the last step
  assert "| metric | before | after |" in proc.stdout
  for name, _, _ in cli._ROWS:
    assert f"| {name} |" in proc.stdout


@pytest.mark.parametrize("argv", [["--views", "1"], ["--steps", "0"], ["--form", "nope"]])
def test_rejects_bad_arguments(argv):
  with pytest.raises(SystemExit):
    cli.parse_args(argv)
