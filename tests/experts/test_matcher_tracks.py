"""Tests of jaxrecon.experts.matcher / tracks: union-find merging on hand-made matches, and SIFT
tracks on the first views of Middlebury templeRing checked against the ground-truth cameras."""
import cv2
import numpy as np
import pytest

from jaxrecon import ransac as ransac_lib
from jaxrecon.experts import matcher as matcher_lib
from jaxrecon.experts import tracks as tracks_lib

_NUM_VIEWS = 8


# --- keypoint localisation --------------------------------------------------------------------


def _mirror_offsets(precise: bool) -> np.ndarray:
  """(n, 2) half the gap between each keypoint and its match in the image mirrored in both axes:
  a keypoint at u is found in the mirror at w - 1 - u, so any constant bias b shows as 2 b."""
  rng = np.random.default_rng(0)
  noise = cv2.GaussianBlur(rng.uniform(0, 255, (240, 320)), (0, 0), 2.0)
  image = np.clip((noise - noise.mean()) * 4 + 128, 0, 255).astype(np.uint8)
  settings = matcher_lib.MatcherSettings(precise_upscale=precise)
  a = matcher_lib.detect_features(image, settings).keypoints.astype(np.float64)
  b = matcher_lib.detect_features(image[::-1, ::-1].copy(), settings).keypoints.astype(np.float64)
  b = np.array([image.shape[1] - 1, image.shape[0] - 1]) - b
  gap = a[:, None] - b[None]
  nearest = np.linalg.norm(gap, axis=-1).argmin(axis=1)
  gap = gap[np.arange(len(a)), nearest]
  return gap[np.linalg.norm(gap, axis=-1) < 1.0] / 2


def test_keypoints_are_unbiased_under_mirroring():
  # OpenCV's default first-octave upsampling shifts keypoints by a quarter pixel (a principal-point
  # error for every view); the matcher's default turns the precise upsampling on.
  offsets = _mirror_offsets(precise=True)
  assert len(offsets) > 200
  assert np.all(np.abs(np.median(offsets, axis=0)) < 0.02)
  biased = _mirror_offsets(precise=False)
  assert np.all(np.abs(np.median(biased, axis=0)) > 0.15)


# --- build_tracks on synthetic matches ----------------------------------------------------------


def _keypoints(counts):
  """View i, keypoint k sits at pixel (k, 10 i) so every observation is recognisable."""
  return [np.stack([np.arange(n), np.full(n, 10.0 * i)], axis=1).astype(np.float32)
          for i, n in enumerate(counts)]


def test_build_tracks_merges_chains_and_drops_conflicts():
  keypoints = _keypoints([4, 4, 4])
  matches = {
      (0, 1): np.array([[0, 1], [2, 2], [3, 3]]),
      (1, 2): np.array([[1, 3], [2, 0]]),
      # 0:3 - 1:3 and 0:3 - 2:2 - plus 2:2 - 1:0 puts keypoints 3 and 0 of view 1 in one track.
      (0, 2): np.array([[3, 2]]),
  }
  matches[(1, 2)] = np.concatenate([matches[(1, 2)], [[0, 2]]])
  out = tracks_lib.build_tracks(keypoints, matches, tracks_lib.TrackSettings(max_tracks=5))
  assert out.num_conflicting == 1
  assert out.pixels.shape == (5, 3, 2) and out.pixels.dtype == np.float32
  assert out.visible.shape == (5, 3) and out.mask.tolist() == [True, True, False, False, False]
  # Longest first: 0:0 - 1:1 - 2:3, then 0:2 - 1:2 - 2:0.
  assert out.keypoints[:2].tolist() == [[0, 1, 3], [2, 2, 0]]
  np.testing.assert_array_equal(out.pixels[0], [[0, 0], [1, 10], [3, 20]])
  assert np.isnan(out.pixels[2:]).all() and not out.visible[2:].any()


def test_build_tracks_truncates_longest_first_and_respects_min_length():
  keypoints = _keypoints([3, 3, 3])
  matches = {(0, 1): np.array([[0, 0], [1, 1], [2, 2]]), (1, 2): np.array([[1, 1]])}
  out = tracks_lib.build_tracks(keypoints, matches, tracks_lib.TrackSettings(max_tracks=1))
  assert out.keypoints.tolist() == [[1, 1, 1]]
  out = tracks_lib.build_tracks(keypoints, matches,
                                tracks_lib.TrackSettings(max_tracks=4, min_length=3))
  assert out.mask.sum() == 1 and out.visible[0].all()


def test_build_tracks_rejects_bad_indices():
  with pytest.raises(ValueError, match="out of range"):
    tracks_lib.build_tracks(_keypoints([2, 2]), {(0, 1): np.array([[0, 5]])})
  with pytest.raises(ValueError, match="distinct views"):
    tracks_lib.build_tracks(_keypoints([2, 2]), {(1, 1): np.array([[0, 0]])})


def test_view_pairs_window():
  assert matcher_lib.view_pairs(4, None) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
  assert matcher_lib.view_pairs(4, 1) == [(0, 1), (1, 2), (2, 3)]


def test_settings_are_validated():
  with pytest.raises(ValueError, match="ratio"):
    matcher_lib.MatcherSettings(ratio=1.5)
  with pytest.raises(ValueError, match="window"):
    matcher_lib.MatcherSettings(window=0)


# --- templeRing ---------------------------------------------------------------------------------


def _read_par(path):
  """name -> (K (3, 3), cam_from_world (4, 4)) from a Middlebury *_par.txt (tiny parser, so this
  test does not depend on the data package)."""
  cameras = {}
  for line in path.read_text().splitlines()[1:]:
    fields = line.split()
    if len(fields) != 22:
      continue
    values = np.asarray(fields[1:], np.float64)
    pose = np.eye(4)
    pose[:3, :3] = values[9:18].reshape(3, 3)
    pose[:3, 3] = values[18:21]
    cameras[fields[0]] = (values[:9].reshape(3, 3), pose)
  return cameras


@pytest.fixture(scope="module")
def temple(shared_data):
  """First `_NUM_VIEWS` templeRing views: (images, K (v, 3, 3), cam_from_world (v, 4, 4))."""
  import cv2
  folder = shared_data / "templeRing"
  cameras = _read_par(folder / "templeR_par.txt")
  names = sorted(p.name for p in folder.glob("*.png") if p.name in cameras)[:_NUM_VIEWS]
  images = [cv2.cvtColor(cv2.imread(str(folder / n)), cv2.COLOR_BGR2RGB) for n in names]
  intrinsics = np.stack([cameras[n][0] for n in names])
  poses = np.stack([cameras[n][1] for n in names])
  return images, intrinsics, poses


@pytest.fixture(scope="module")
def temple_matches(temple):
  images, intrinsics, _ = temple
  return matcher_lib.match_views(images, intrinsics, matcher_lib.MatcherSettings(seed=0))


@pytest.fixture(scope="module")
def temple_tracks(temple_matches):
  features, matches = temple_matches
  return tracks_lib.build_tracks([f.keypoints for f in features], matches,
                                 tracks_lib.TrackSettings(max_tracks=2000))


def _fundamental(k_i, pose_i, k_j, pose_j):
  """F with x_j^T F x_i = 0 for pixels x_i, x_j of the same point (ground-truth cameras)."""
  relative = pose_j @ np.linalg.inv(pose_i)
  rotation, translation = relative[:3, :3], relative[:3, 3]
  cross = np.array([[0, -translation[2], translation[1]], [translation[2], 0, -translation[0]],
                    [-translation[1], translation[0], 0]])
  return np.linalg.inv(k_j).T @ cross @ rotation @ np.linalg.inv(k_i)


def _symmetric_epipolar_px(f, x_i, x_j):
  """(n,) mean of the distances of x_j to the line F x_i and of x_i to the line F^T x_j, px."""
  h_i = np.concatenate([x_i, np.ones((len(x_i), 1))], axis=1)
  h_j = np.concatenate([x_j, np.ones((len(x_j), 1))], axis=1)
  line_j, line_i = h_i @ f.T, h_j @ f
  residual = np.abs(np.sum(h_j * line_j, axis=1))
  return 0.5 * (residual / np.hypot(line_j[:, 0], line_j[:, 1])
                + residual / np.hypot(line_i[:, 0], line_i[:, 1]))


def test_temple_tracks_are_many_and_consistent_with_ground_truth(temple, temple_tracks):
  _, intrinsics, poses = temple
  out = temple_tracks
  assert out.pixels.shape == (2000, _NUM_VIEWS, 2) and out.visible.shape == (2000, _NUM_VIEWS)
  num_tracks = int(out.mask.sum())
  assert num_tracks >= 300
  assert (out.visible[out.mask].sum(axis=1) >= 2).all()
  assert np.isfinite(out.pixels[out.visible]).all() and np.isnan(out.pixels[~out.visible]).all()
  errors = []
  for i in range(_NUM_VIEWS):
    for j in range(i + 1, _NUM_VIEWS):
      both = out.mask & out.visible[:, i] & out.visible[:, j]
      if both.any():
        f = _fundamental(intrinsics[i], poses[i], intrinsics[j], poses[j])
        errors.append(_symmetric_epipolar_px(f, out.pixels[both, i].astype(np.float64),
                                             out.pixels[both, j].astype(np.float64)))
  errors = np.concatenate(errors)
  print(f"templeRing {_NUM_VIEWS} views: {num_tracks} tracks, {len(errors)} observation pairs, "
        f"median epipolar error {np.median(errors):.3f} px, "
        f"90th percentile {np.percentile(errors, 90):.3f} px")
  assert np.median(errors) < 1.0


def test_temple_tracks_have_no_conflicting_observations(temple_tracks):
  out = temple_tracks
  # One keypoint per view per track by construction; also no keypoint is used by two tracks.
  for view in range(_NUM_VIEWS):
    used = out.keypoints[out.mask & out.visible[:, view], view]
    assert len(np.unique(used)) == len(used)


def test_temple_pair_matches_are_verified_and_deterministic(temple, temple_matches):
  images, intrinsics, poses = temple
  features, matches = temple_matches
  assert (0, 1) in matches and len(matches[(0, 1)]) >= 100
  # match_views runs the pairs on threads: every pair equals a one-at-a-time match_pair.
  for i, j in matcher_lib.view_pairs(len(images), None):
    again = matcher_lib.match_pair(features[i], features[j], intrinsics[i], intrinsics[j],
                                   matcher_lib.MatcherSettings(seed=0))
    if len(again):
      np.testing.assert_array_equal(again, matches[(i, j)])
    else:
      assert (i, j) not in matches
  pairs = matches[(0, 1)]
  f = _fundamental(intrinsics[0], poses[0], intrinsics[1], poses[1])
  errors = _symmetric_epipolar_px(f, features[0].keypoints[pairs[:, 0]].astype(np.float64),
                                  features[1].keypoints[pairs[:, 1]].astype(np.float64))
  assert np.median(errors) < 0.5
  # Mutual check: no keypoint appears twice on either side.
  assert len(np.unique(pairs[:, 0])) == len(pairs) and len(np.unique(pairs[:, 1])) == len(pairs)


def test_window_matches_only_neighbours(temple_matches, temple):
  images, intrinsics, _ = temple
  features, _ = temple_matches
  settings = matcher_lib.MatcherSettings(window=1)
  _, matches = matcher_lib.match_views(images[:3], intrinsics[:3], settings)
  assert set(matches) <= {(0, 1), (1, 2)}


def _opencv_ratio(query, train, ratio):
  """Reference: OpenCV's brute-force 2-NN search and Lowe's ratio test ((n,) index or -1)."""
  out = np.full(len(query), -1, np.int64)
  for pair in cv2.BFMatcher(cv2.NORM_L2).knnMatch(query, train, k=2):
    if len(pair) == 2 and pair[0].distance < ratio * pair[1].distance:
      out[pair[0].queryIdx] = pair[0].trainIdx
  return out


@pytest.mark.parametrize("rows_per_block", [2048, 97])
def test_ratio_matches_equal_opencv_brute_force(temple_matches, rows_per_block):
  # The distance-matrix search (both directions from one matmul, query rows in blocks whose
  # column minima are merged) against cv2.BFMatcher on real SIFT descriptors of two views; a
  # block of 97 rows splits the ~900 rows into 10 blocks, so the merge is exercised.
  features, _ = temple_matches
  query, train = features[0].descriptors, features[3].descriptors
  forward, backward = matcher_lib._ratio_matches(query, train, 0.8, rows_per_block)
  np.testing.assert_array_equal(forward, _opencv_ratio(query, train, 0.8))
  np.testing.assert_array_equal(backward, _opencv_ratio(train, query, 0.8))
  assert (forward >= 0).sum() > 50 and (backward >= 0).sum() > 50


def test_ratio_matches_on_repeated_and_tiny_inputs():
  # A descriptor repeated in train has two equally near neighbours: never a ratio survivor; a
  # single train descriptor has no second neighbour: no survivor (OpenCV gives none either),
  # while in the other direction it has three candidates.
  rng = np.random.default_rng(0)
  train = rng.uniform(0, 100, (6, 128)).astype(np.float32)
  train[4] = train[1]
  query = train[[0, 1, 2]] + 0.5
  forward, backward = matcher_lib._ratio_matches(query, train, 0.8, rows_per_block=2)
  np.testing.assert_array_equal(forward, [0, -1, 2])
  np.testing.assert_array_equal(forward, _opencv_ratio(query, train, 0.8))
  np.testing.assert_array_equal(backward, _opencv_ratio(train, query, 0.8))
  forward, backward = matcher_lib._ratio_matches(query, train[:1], 0.8)
  assert np.all(forward == -1) and backward[0] == 0
  np.testing.assert_array_equal(backward, _opencv_ratio(train[:1], query, 0.8))
  forward, backward = matcher_lib._ratio_matches(query, train[:0], 0.8)
  assert forward.shape == (3,) and np.all(forward == -1) and backward.shape == (0,)


def test_ransac_iterations_follow_the_stopping_rule():
  # w = 0.75: 3 x log(0.001) / log(1 - 0.75^5) = 75 -> the floor; w = 0.5 -> 3 x 218; w = 0.15
  # -> far beyond the cap; nothing known (w = 0) -> the cap; all inliers -> the floor.
  assert ransac_lib.iterations(15 / 20, 5, 0.999) == 100
  assert ransac_lib.iterations(15 / 30, 5, 0.999) == int(np.ceil(
      3 * np.log(0.001) / np.log(1 - 0.5 ** 5)))
  assert ransac_lib.iterations(15 / 100, 5, 0.999) == 1000
  assert ransac_lib.iterations(0.0, 4, 0.999, cap=500) == 500
  assert ransac_lib.iterations(1.0, 5, 0.999) == 100
  counts = [ransac_lib.iterations(15 / c, 5, 0.999) for c in range(15, 60)]
  assert counts == sorted(counts)


def _just_enough_inliers(num_candidates, seed):
  """A 10-deg, 1-unit-baseline pair: 15 true matches (0.3 px noise) then random candidates."""
  rng = np.random.default_rng(seed)
  intrinsics = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
  points = rng.uniform([-2, -1.5, 4], [2, 1.5, 8], (15, 3))
  angle = np.radians(10.0)
  rotation = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0],
                       [-np.sin(angle), 0, np.cos(angle)]])
  second = points @ rotation.T + np.array([-1.0, 0.1, 0.2])
  project = lambda p: (p @ intrinsics.T)[:, :2] / p[:, 2:3]
  noise = rng.normal(0, 0.3, (2, 15, 2))
  clutter = rng.uniform([0, 0], [640, 480], (2, num_candidates - 15, 2))
  x_i = np.concatenate([project(points) + noise[0], clutter[0]])
  x_j = np.concatenate([project(second) + noise[1], clutter[1]])
  return x_i, x_j, intrinsics


@pytest.mark.parametrize("num_candidates", [20, 30])
def test_shorter_ransac_keeps_the_pairs_the_full_one_keeps(num_candidates, monkeypatch):
  # Pairs with exactly min_inliers (15) true matches among num_candidates: the shortened RANSAC
  # (100 / 653 iterations) returns the same inliers as one with 10,000 on each of 20 draws. (With
  # 0.3 px noise and a 1 px threshold some draws fail either way: a minimal sample's model leaves
  # a true match outside the threshold; that is not what is tested.)
  pairs = np.stack([np.arange(num_candidates)] * 2, axis=1)
  draws = [_just_enough_inliers(num_candidates, seed) for seed in range(20)]

  def verify(seed):
    x_i, x_j, intrinsics = draws[seed]
    return matcher_lib.verify_matches(x_i, x_j, pairs, intrinsics, intrinsics,
                                      matcher_lib.MatcherSettings(seed=seed))

  short = [verify(seed) for seed in range(20)]
  monkeypatch.setattr(ransac_lib, "iterations", lambda *args, **kwargs: 10_000)
  full = [verify(seed) for seed in range(20)]
  assert sum(len(inliers) >= 15 for inliers in full) >= 8
  for a, b in zip(short, full):
    np.testing.assert_array_equal(a, b)
