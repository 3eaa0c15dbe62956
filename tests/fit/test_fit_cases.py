"""Per-scene fitting on every case of `jaxrecon.evaluate.fit_cases` (real and procedural images,
SIFT tracks): the acceptance of issue #12 per case, and the cases it does not meet yet (strict
xfail: each one fails the suite as soon as it starts to pass, so the marker cannot go stale)."""
import itertools
import re
import warnings

import cv2
import numpy as np
import pytest

from jaxrecon.evaluate import fit_cases
from jaxrecon.evaluate.metrics import align_cameras_sim3, pose_auc, relative_pose_errors
from jaxrecon.experts import track_images
from jaxrecon.fit import FitWarning, fit_scene

KNOWN_FAILURES = {
    "lego": "the near-symmetric model fools two-view geometry: the false pair (2, 5) is cut "
            "(test_lego_false_bridge_is_cut); view 6 hangs on one pair, (6, 7), whose 18 "
            "inliers give a pose 10 degrees off: below the 30 observations a registered view "
            "keeps, it is reported instead, but the ground truth can connect it",
    "icl_livingroom": "SIFT connects only 2 of the 5 frames, and the data set's poses are off by "
                      "0.3-1.2 degrees (shared/data/README.md), so 0.5 degrees cannot be checked",
}


def rotation_errors_deg(pred, gt):
  """(v,) rotation errors after alignment: sim(3) of the centres, or a rotation alone when the
  true centres coincide (a rotation-only scene). Angles from |R - I|_F (accurate near 0)."""
  centres = -np.einsum("vji,vj->vi", gt[:, :3, :3], gt[:, :3, 3])
  if np.ptp(centres, axis=0).max() > 1e-6:
    pred = align_cameras_sim3(pred, gt)
  else:
    m = np.einsum("vji,vjk->ik", gt[:, :3, :3], pred[:, :3, :3])
    u, _, vt = np.linalg.svd(m)
    align = u @ np.diag([1, 1, np.linalg.det(u @ vt)]) @ vt
    pred = pred.copy()
    pred[:, :3, :3] = pred[:, :3, :3] @ align.T
  rel = pred[:, :3, :3] @ np.swapaxes(gt[:, :3, :3], -1, -2)
  chord = np.linalg.norm(rel - np.eye(3), axis=(1, 2))
  return np.degrees(2 * np.arcsin(np.clip(chord / (2 * np.sqrt(2)), 0, 1)))


def connected_groups(case, threshold_px=1.0, min_matches=15):
  """The view groups that can be connected, judged with the ground truth instead of the pipeline:
  views i, j are linked when at least min_matches SIFT ratio-test matches (OpenCV, 0.8) lie within
  threshold_px of the true epipolar lines in both images. Returns a list of sets of view indices
  (views with ground truth only), largest first."""
  sift = cv2.SIFT_create(enable_precise_upscale=True)
  views = [i for i in range(len(case.images)) if np.all(np.isfinite(case.cam_from_world[i]))]
  features = {i: sift.detectAndCompute(cv2.cvtColor(case.images[i], cv2.COLOR_RGB2GRAY), None)
              for i in views}
  parent = {i: i for i in views}

  def root(i):
    while parent[i] != i:
      i = parent[i]
    return i

  for i, j in itertools.combinations(views, 2):
    (key_i, desc_i), (key_j, desc_j) = features[i], features[j]
    if desc_i is None or desc_j is None or len(desc_j) < 2:
      continue
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(desc_i, desc_j, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.8 * p[1].distance]
    if len(good) < min_matches:
      continue
    x_i = np.array([[*key_i[m.queryIdx].pt, 1.0] for m in good])
    x_j = np.array([[*key_j[m.trainIdx].pt, 1.0] for m in good])
    rel = case.cam_from_world[j] @ np.linalg.inv(case.cam_from_world[i])
    t = rel[:3, 3]
    cross = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
    f = np.linalg.inv(case.intrinsics[j]).T @ cross @ rel[:3, :3] @ np.linalg.inv(
        case.intrinsics[i])
    line_j, line_i = x_i @ f.T, x_j @ f
    algebraic = np.abs(np.sum(x_j * line_j, axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):   # a zero baseline has no epipolar lines
      dist = np.maximum(algebraic / np.hypot(*line_j[:, :2].T),
                        algebraic / np.hypot(*line_i[:, :2].T))
    if np.sum(dist < threshold_px) >= min_matches:
      parent[root(i)] = root(j)
  groups = {}
  for i in views:
    groups.setdefault(root(i), set()).add(i)
  return sorted(groups.values(), key=len, reverse=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(reason=KNOWN_FAILURES[n], strict=True))
    if n in KNOWN_FAILURES else n for n in fit_cases.CASES])
def test_fit_case(name, shared_data):
  case = fit_cases.make_case(name, shared_data)
  tracks = track_images(list(case.images), case.intrinsics)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    result = fit_scene(tracks.pixels, tracks.visible & tracks.mask[:, None], case.intrinsics)
  messages = [str(w.message) for w in caught if issubclass(w.category, FitWarning)]
  assert list(result.warnings) == messages
  kind = np.array(case.kind)
  # Views that cannot be connected (no tracks, a foreign scene) are flagged, never given a pose.
  for i in np.nonzero((kind == "blank") | (kind == "foreign"))[0]:
    assert not result.registered[i] and np.all(np.isnan(result.cam_from_world[i]))
    assert any("not registered" in m and str(i) in m for m in messages)
  # Every view of the scene proper is registered; where some are not, they are exactly the views
  # outside a largest group that the ground truth can connect, and each is named in a warning.
  scene = (kind == "normal") | (kind == "duplicate")
  if not result.registered[scene].all():
    groups = connected_groups(case)
    registered = set(np.nonzero(result.registered & scene)[0].tolist())
    assert registered in [g for g in groups if len(g) == len(groups[0])], (groups, registered)
    unregistered = np.nonzero(scene & ~result.registered)[0]
    assert all(any(re.search(rf"\b{i}\b", m) for m in messages if "not registered" in m)
               for i in unregistered), messages
  # No pair is cut as a false match: none of these scenes has one (lego is tested below).
  assert result.conflicts == (), messages
  for i in np.nonzero(kind == "duplicate")[0]:
    assert any(i in pair for pair in result.duplicates) and any("same image points" in m
                                                                  for m in messages)
  reg = result.registered & np.all(np.isfinite(case.cam_from_world), axis=(1, 2))
  pred, gt = result.cam_from_world[reg], case.cam_from_world[reg]
  rot, trans = relative_pose_errors(pred, gt)
  assert np.median(rotation_errors_deg(pred, gt)) <= 0.5
  assert pose_auc(rot, trans, 30) >= 98.0


@pytest.mark.slow
def test_lego_false_bridge_is_cut(shared_data):
  """Lego's pair (2, 5) matches the two sides of the near-symmetric model (a 170-degree turn seen
  as 5 degrees, 29 inliers) and alone joined views 2, 9, 11 and 15 to the rest, which were then
  registered mirrored, 157 degrees off, with no warning. The missing-correspondence check cuts
  it: those views are reported and not registered, and no mirrored view is left; nor is view 6,
  which one wrong pair of 18 inliers would place 10 degrees off."""
  case = fit_cases.make_case("lego", shared_data)
  tracks = track_images(list(case.images), case.intrinsics)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    result = fit_scene(tracks.pixels, tracks.visible & tracks.mask[:, None], case.intrinsics)
  messages = [str(w.message) for w in caught if issubclass(w.category, FitWarning)]
  assert result.conflicts == ((2, 5),)
  assert not result.registered[[2, 9, 11, 15]].any()
  assert any("[2, 9, 11, 15]" in m and "2-5" in m for m in messages), messages
  # View 6 rests on the 18 observations of one wrong pair: reported, not registered (the known
  # failure above); everything that stays registered is right within a degree or so.
  assert not result.registered[6]
  assert any(re.search(r"\b6\b", m) for m in messages if "not registered" in m), messages
  keep = result.registered
  assert keep.sum() >= 6
  assert np.max(rotation_errors_deg(result.cam_from_world[keep], case.cam_from_world[keep])) < 2


@pytest.mark.slow
@pytest.mark.parametrize("seed", [101, 103])
def test_forward_walk(seed):
  """Procedural forward walks (8 views, 240 x 320, a camera walking ahead over the ground, the
  sequence family; the sim(3) alignment of collinear centres is undefined, so relative poses are
  scored). On these two scenes the ground plane once made most pairs 'planar' with the twin
  decomposition of their homography (14-40 degrees off, consistent with each other): 8/8
  registered at 38-40 degrees of median relative rotation error, AUC@30 0."""
  from jaxrecon.data.synthetic import make_scene
  scene = make_scene(seed, num_views=8, height=240, width=320, path="walk")
  intrinsics = np.asarray(scene.intrinsics, np.float64)
  tracks = track_images(list(scene.images), intrinsics)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", FitWarning)
    result = fit_scene(tracks.pixels, tracks.visible & tracks.mask[:, None], intrinsics)
  assert result.registered.all(), result.warnings
  rot, trans = relative_pose_errors(result.cam_from_world, np.asarray(scene.cam_from_world))
  assert np.median(rot) <= 0.1 and pose_auc(rot, trans, 30) >= 98.0
