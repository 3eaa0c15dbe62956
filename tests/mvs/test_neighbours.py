"""View selection and depth ranges on a ring of cameras around a cloud of points."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon import mvs
from jaxrecon.data.synthetic import intrinsics_from_fov, orbit
from jaxrecon.geometry import project

H, W = 48, 64


def _ring(num=12):
  cams = orbit(num, radius=6.0, height=1.0, arc_degrees=360.0)
  k = np.tile(intrinsics_from_fov(H, W, 60.0), (num, 1, 1))
  return jnp.asarray(k, jnp.float32), jnp.asarray(cams, jnp.float32)


def test_neighbours_are_the_adjacent_views_of_a_ring():
  k, cams = _ring()
  pts = np.random.default_rng(0).uniform(-1, 1, size=(400, 3)) + [0, 0, 0.3]
  for points in (jnp.asarray(pts, jnp.float32), mvs.frustum_points(k, cams, 3.0, 12.0,
                                                                   image_size=(H, W))):
    idx, score = mvs.select_neighbours(mvs.view_scores(points, k, cams, image_size=(H, W)), num=2)
    for v in range(12):
      assert set(np.asarray(idx[v]).tolist()) == {(v - 1) % 12, (v + 1) % 12}
    assert np.all(np.asarray(score) > 0)


def test_depth_ranges_cover_the_points_each_view_sees():
  k, cams = _ring()
  pts = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, size=(400, 3)), jnp.float32)
  ranges = np.asarray(mvs.depth_ranges(pts, k, cams, image_size=(H, W)))
  z = np.einsum("vij,nj->vni", np.asarray(cams)[:, :3, :3], np.asarray(pts))[..., 2] + np.asarray(
      cams)[:, None, 2, 3]
  assert np.all(ranges[:, 0] < np.percentile(z, 1, axis=1))
  assert np.all(ranges[:, 1] > np.percentile(z, 99, axis=1))
  assert np.all(ranges[:, 0] > 0) and np.all(ranges[:, 0] < ranges[:, 1])


def _greedy_cover_numpy(weights, num, cover):
  """Independent float64 reference of the greedy covering choice (loops, no JAX)."""
  v = weights.shape[0]
  out = []
  for r in range(v):
    w = weights[r].astype(np.float64)
    covered = np.zeros(w.shape[1], int)
    chosen = {r}
    picks = []
    for _ in range(num):
      best, best_gain = None, -np.inf
      for j in range(v):
        if j in chosen:
          continue
        gain = w[j][covered < cover].sum() + 1e-6 * w[j].sum()
        if gain > best_gain:
          best, best_gain = j, gain
      chosen.add(best)
      picks.append(best)
      covered += w[best] > 0
    out.append(picks)
  return np.array(out)


def test_covering_choice_matches_a_numpy_greedy_and_reaches_the_uncovered_points():
  rng = np.random.default_rng(3)
  weights = rng.uniform(0, 1, size=(7, 7, 50)) * (rng.uniform(size=(7, 7, 50)) < 0.5)
  weights[np.arange(7), np.arange(7)] = 0.0
  for num, cover in ((2, 1), (4, 2), (6, 3)):
    idx, gain = mvs.select_covering_neighbours(jnp.asarray(weights, jnp.float32), num=num,
                                               cover=cover)
    np.testing.assert_array_equal(np.asarray(idx), _greedy_cover_numpy(weights, num, cover))
    assert np.all(np.diff(np.asarray(gain), axis=1) <= 1e-6)   # each pick adds no more
  # Reference 0: views 1, 2, 3 share its ten central points at high weight, view 4 alone sees
  # its five border points, at lower weight. The plain score takes two of 1-3 and leaves the
  # border unmatched; covering each point once takes view 4 second.
  w = np.zeros((5, 5, 15))
  w[0, 1:4, :10] = [[1.0], [0.9], [0.8]]
  w[0, 4, 10:] = 0.5
  plain, _ = mvs.select_neighbours(jnp.asarray(w.sum(-1)), num=2)
  covering, _ = mvs.select_covering_neighbours(jnp.asarray(w), num=2, cover=1)
  assert np.asarray(plain)[0].tolist() == [1, 2]
  assert np.asarray(covering)[0].tolist() == [1, 4]


def test_observed_points_pick_the_adjacent_frames_of_a_camera_driving_ahead():
  # 10 frames 1 unit apart along the optical axis (+z), points 3-40 units ahead of the first,
  # 1-4 units off the axis. By projection every earlier frame sees almost everything a later one
  # sees, and frames far back give the widest angles. Tracks, like real ones, are short: each
  # point is observed in four consecutive frames that see it, from a random first one.
  num, k = 10, jnp.asarray(np.tile(intrinsics_from_fov(H, W, 60.0), (10, 1, 1)), jnp.float32)
  cams = np.tile(np.eye(4), (num, 1, 1))
  cams[:, 2, 3] = -np.arange(num, dtype=float)
  rng = np.random.default_rng(0)
  angle = rng.uniform(0, 2 * np.pi, 3000)
  radius = rng.uniform(1.0, 4.0, 3000)
  pts = np.stack([radius * np.cos(angle), 0.7 * radius * np.sin(angle),
                  rng.uniform(3.0, 40.0, 3000)], -1)
  cams_j = jnp.asarray(cams, jnp.float32)
  pix, z = project(jnp.asarray(pts, jnp.float32)[None], k, cams_j)
  pix, z = np.asarray(pix), np.asarray(z)
  inside = (z > 0) & (pix[..., 0] >= 0) & (pix[..., 0] <= W - 1) & (pix[..., 1] >= 0) & (
      pix[..., 1] <= H - 1)
  last = num - 1 - np.argmax(inside[::-1], axis=0)
  first = rng.integers(np.argmax(inside, axis=0), last + 1)
  frame = np.arange(num)[:, None]
  observed = (inside & (frame >= first) & (frame <= first + 3)).T
  by_projection, _ = mvs.select_neighbours(
      mvs.view_scores(jnp.asarray(pts, jnp.float32), k, cams_j, image_size=(H, W)), num=2)
  by_tracks, _ = mvs.select_neighbours(
      mvs.view_scores(jnp.asarray(pts, jnp.float32), k, cams_j, image_size=(H, W),
                      observed=observed), num=2)
  gap_projection = np.abs(np.asarray(by_projection) - np.arange(num)[:, None])
  gap_tracks = np.abs(np.asarray(by_tracks) - np.arange(num)[:, None])
  assert np.all(gap_tracks <= 3)            # only frames that share tracks
  assert np.median(gap_projection) > np.median(gap_tracks)
  # All observed equals projection alone.
  np.testing.assert_allclose(
      np.asarray(mvs.pair_weights(jnp.asarray(pts, jnp.float32), k, cams_j, image_size=(H, W),
                                  observed=np.ones((3000, num), bool))),
      np.asarray(mvs.pair_weights(jnp.asarray(pts, jnp.float32), k, cams_j, image_size=(H, W))))


def _pair_weights_numpy(points, k, cams, observed=None, peak=8.0, low=3.0, high=15.0):
  """Independent float64 reference of `pair_weights`: (v, v, n)."""
  pix, z = project(jnp.asarray(points[None], jnp.float32), k, cams)
  pix, z = np.asarray(pix, np.float64), np.asarray(z, np.float64)
  seen = ((pix[..., 0] >= -0.5) & (pix[..., 0] <= W - 0.5) & (pix[..., 1] >= -0.5)
          & (pix[..., 1] <= H - 0.5) & (z > 0))
  if observed is not None:
    seen &= observed.T
  cams64 = np.asarray(cams, np.float64)
  centres = -np.einsum("vji,vj->vi", cams64[:, :3, :3], cams64[:, :3, 3])
  rays = points[None] - centres[:, None]
  rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
  angle = np.degrees(np.arccos(np.clip(np.einsum("inc,jnc->ijn", rays, rays), -1, 1)))
  weight = np.exp(-0.5 * ((angle - peak) / np.where(angle < peak, low, high)) ** 2)
  both = seen[:, None] & seen[None] & ~np.eye(len(cams64), dtype=bool)[..., None]
  return np.where(both, weight, 0.0)


def test_per_reference_scores_and_covering_choice_equal_the_whole_weight_volume():
  # view_scores and covering_neighbours work one reference at a time (memory O(v n)); they must
  # give what the (v, v, n) volume gives: against a float64 numpy reference and against
  # select_covering_neighbours over pair_weights.
  k, cams = _ring(12)
  rng = np.random.default_rng(5)
  pts = rng.uniform(-1, 1, size=(500, 3)) + [0, 0, 0.3]
  observed = rng.uniform(size=(500, 12)) < 0.7
  points = jnp.asarray(pts, jnp.float32)
  for obs in (None, observed):
    reference = _pair_weights_numpy(pts, k, cams, obs)
    volume = np.asarray(mvs.pair_weights(points, k, cams, image_size=(H, W), observed=obs))
    np.testing.assert_allclose(volume, reference, atol=2e-4)
    np.testing.assert_allclose(
        np.asarray(mvs.view_scores(points, k, cams, image_size=(H, W), observed=obs)),
        reference.sum(-1), rtol=1e-4, atol=1e-3)
    for num, cover in ((2, 1), (4, 2)):
      idx, gain = mvs.covering_neighbours(points, k, cams, image_size=(H, W), num=num,
                                          cover=cover, observed=obs)
      want_idx, want_gain = mvs.select_covering_neighbours(jnp.asarray(volume), num=num,
                                                           cover=cover)
      np.testing.assert_array_equal(np.asarray(idx), np.asarray(want_idx))
      np.testing.assert_allclose(np.asarray(gain), np.asarray(want_gain), rtol=1e-5)


def test_neighbour_choice_memory_does_not_grow_with_views_squared():
  # XLA's memory analysis of the compiled choice for 64 views and 4096 points: the (v, v, n)
  # weights alone would be 64 MiB; one reference at a time stays near (v, n) arrays.
  v, n = 64, 4096
  cams = jnp.asarray(orbit(v, radius=6.0, height=1.0, arc_degrees=360.0), jnp.float32)
  k = jnp.asarray(np.tile(intrinsics_from_fov(H, W, 60.0), (v, 1, 1)), jnp.float32)
  points = jnp.zeros((n, 3), jnp.float32)
  volume = v * v * n * 4
  for fn in (lambda p: mvs.view_scores(p, k, cams, image_size=(H, W)),
             lambda p: mvs.covering_neighbours(p, k, cams, image_size=(H, W), num=4, cover=2)):
    memory = jax.jit(fn).lower(points).compile().memory_analysis()
    assert memory.temp_size_in_bytes < volume / 4, memory.temp_size_in_bytes
