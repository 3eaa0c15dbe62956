"""jaxrecon.reliev3r.heldout: the self-consistency report of held-out tracks (zero on exact
geometry, blind to the global scale, large when the poses are wrong) and the start-up line."""
import numpy as np

from jaxrecon.reliev3r import heldout


def _scene(v=3, h=24, w=32, t=40, seed=0):
  """A plane at z = 4 seen by v cameras side by side, and t tracks of points on it."""
  rng = np.random.default_rng(seed)
  k = np.array([[30.0, 0, (w - 1) / 2], [0, 30.0, (h - 1) / 2], [0, 0, 1]])
  world_from_cam = np.stack([np.eye(4)] * v)
  world_from_cam[:, 0, 3] = np.arange(v) * 0.2
  depth = np.full((v, h, w), 4.0)
  points = np.stack([rng.uniform(-0.2, 0.4, t), rng.uniform(-1.0, 1.0, t), np.full(t, 4.0)], -1)
  cam = points[:, None, :] - world_from_cam[None, :, :3, 3]
  pix = np.einsum("ab,tvb->tva", k, cam)
  uv = pix[..., :2] / pix[..., 2:]
  visible = np.all((uv >= 0) & (uv <= [w - 1, h - 1]), -1)
  # Pixel centres, so the nearest-pixel depth lookup is exact on this plane.
  return depth, world_from_cam, np.stack([k] * v), uv, visible


def test_exact_geometry_reprojects_to_within_rounding_and_is_scale_blind():
  depth, world_from_cam, k, uv, visible = _scene()
  exact = heldout.track_reprojection(depth, world_from_cam, k, uv, visible)
  assert exact["track_px"] < 1e-6 and exact["track_2px"] == 1.0
  scaled = world_from_cam.copy()
  scaled[:, :3, 3] *= 3.0
  same = heldout.track_reprojection(3.0 * depth, scaled, k, uv, visible)
  assert same["track_px"] < 1e-6


def test_wrong_poses_show_as_large_errors_and_no_pairs_is_nan():
  depth, world_from_cam, k, uv, visible = _scene()
  wrong = world_from_cam.copy()
  wrong[1:, 0, 3] *= -1.0
  bad = heldout.track_reprojection(depth, wrong, k, uv, visible)
  assert bad["track_px"] > 2.0 and bad["track_2px"] < 0.5
  none = heldout.track_reprojection(depth, world_from_cam, k, np.full_like(uv, np.nan),
                                    np.zeros_like(visible))
  assert np.isnan(none["track_px"]) and np.isnan(none["track_2px"])


def test_the_start_up_line_says_what_will_be_reported():
  no_truth = [{"images": 0}, {"images": 0}]
  assert "no ground-truth depth or poses" in heldout.describe_report(no_truth)
  mixed = [{"depth": 0, "cam_from_world": 0}, {"images": 0}]
  line = heldout.describe_report(mixed)
  assert "depth rel/tau on the 1 of 2 scenes with it" in line and "track reprojection" in line
