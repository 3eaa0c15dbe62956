"""Fit test cases: shapes, determinism and the property each case is built to have."""
import numpy as np
import pytest

from jaxrecon.data import synthetic as syn
from jaxrecon.data.synthetic import texture
from jaxrecon.evaluate import fit_cases
from jaxrecon.evaluate.fit_cases import CASES, KINDS, FitCase, make_case
from jaxrecon.evaluate.metrics import camera_centers_np
from jaxrecon.experts import match_views

TEMPLE_CASES = [c for c in CASES if c.startswith("temple_")]


def _check_layout(case: FitCase):
  """Shapes, dtypes and the NaN-iff-no-ground-truth rule every case obeys."""
  v, h, w, c = case.images.shape
  assert c == 3 and case.images.dtype == np.uint8 and v >= 2
  assert case.intrinsics.shape == (v, 3, 3) and case.intrinsics.dtype == np.float64
  assert case.cam_from_world.shape == (v, 4, 4) and case.cam_from_world.dtype == np.float64
  assert len(case.names) == len(set(case.names)) == v and len(case.kind) == v
  assert set(case.kind) <= set(KINDS) and case.notes and "\n" not in case.notes
  k = case.intrinsics
  assert np.all(k[:, 0, 0] > 0) and np.all(k[:, 1, 1] > 0)
  assert np.all((k[:, 0, 2] > 0) & (k[:, 0, 2] < w) & (k[:, 1, 2] > 0) & (k[:, 1, 2] < h))
  no_gt = np.array([kind in ("blank", "foreign") for kind in case.kind])
  finite = np.all(np.isfinite(case.cam_from_world), axis=(1, 2))
  assert np.all(np.isnan(case.cam_from_world[no_gt]))
  np.testing.assert_array_equal(finite, ~no_gt)
  rot = case.cam_from_world[finite, :3, :3]
  np.testing.assert_allclose(rot @ np.swapaxes(rot, 1, 2), np.broadcast_to(np.eye(3), rot.shape),
                             atol=1e-5)
  np.testing.assert_allclose(case.cam_from_world[finite, 3], [[0, 0, 0, 1]] * int(finite.sum()))


def test_unknown_case_and_missing_data(tmp_path):
  with pytest.raises(ValueError, match="unknown case"):
    make_case("temple_everything", tmp_path)
  for name in ("temple_all", "lego", "icl_livingroom"):
    with pytest.raises(FileNotFoundError) as info:
      make_case(name, tmp_path)
    assert str(tmp_path) in str(info.value) and "\n" not in str(info.value)


def test_temple_cases(shared_data):
  cases = {name: make_case(name, shared_data) for name in TEMPLE_CASES}
  for case in cases.values():
    _check_layout(case)
    assert case.images.shape[1:3] == (480, 640)
  full = cases["temple_all"]
  assert len(full.names) == 19 and list(full.names) == sorted(full.names)
  assert full.names[0] == "templeR0013.png" and set(full.kind) == {"normal"}
  for name, step in (("temple_every2", 2), ("temple_every3", 3)):
    assert cases[name].names == full.names[::step]
    np.testing.assert_array_equal(cases[name].images, full.images[::step])
    np.testing.assert_array_equal(cases[name].cam_from_world, full.cam_from_world[::step])

  shuffled = cases["temple_shuffled"]
  order = [full.names.index(n) for n in shuffled.names]
  assert sorted(order) == list(range(19)) and order != list(range(19))
  np.testing.assert_array_equal(shuffled.images, full.images[order])
  np.testing.assert_array_equal(shuffled.cam_from_world, full.cam_from_world[order])
  assert make_case("temple_shuffled", shared_data).names == shuffled.names

  for name, kind in (("temple_duplicate", "duplicate"), ("temple_blank", "blank"),
                     ("temple_foreign", "foreign")):
    case = cases[name]
    extra = [i for i, k in enumerate(case.kind) if k != "normal"]
    assert len(case.names) == 20 and len(extra) == 1 and case.kind[extra[0]] == kind
    assert 0 < extra[0] < 19                                         # not at either end
    rest = [i for i in range(20) if i != extra[0]]
    assert tuple(case.names[i] for i in rest) == full.names
    np.testing.assert_array_equal(case.images[rest], full.images)
    np.testing.assert_array_equal(case.intrinsics[extra[0]], full.intrinsics[0])

  dup = cases["temple_duplicate"]
  i = dup.kind.index("duplicate")
  source = dup.names.index(dup.names[i].removeprefix("dup_of_"))
  assert abs(source - i) > 1                                         # not next to its source
  assert dup.images[i].tobytes() == dup.images[source].tobytes()
  np.testing.assert_array_equal(dup.cam_from_world[i], dup.cam_from_world[source])

  blank = cases["temple_blank"].images[cases["temple_blank"].kind.index("blank")]
  assert blank.min() == blank.max()

  foreign = cases["temple_foreign"].images[cases["temple_foreign"].kind.index("foreign")]
  assert not any(np.array_equal(foreign, im) for im in full.images)
  # The lego object on white: much of the view is pure white, the centre is not.
  assert np.mean(np.all(foreign == 255, -1)) > 0.3 and foreign[200:280, 280:360].mean() < 200


def test_real_cases(shared_data):
  lego = make_case("lego", shared_data)
  _check_layout(lego)
  assert lego.images.shape == (20, 800, 800, 3) and set(lego.kind) == {"normal"}
  icl = make_case("icl_livingroom", shared_data)
  _check_layout(icl)
  assert icl.images.shape == (5, 480, 640, 3) and icl.names[0] == "1.png"
  # The reader moves fy < 0 into the poses: positive focal lengths here.
  np.testing.assert_allclose(icl.intrinsics[0, :2, :2], np.diag([481.2, 480.0]))


def test_synth_orbit8_looks_at_the_centre():
  case = make_case("synth_orbit8")
  _check_layout(case)
  assert case.images.shape == (8, 240, 320, 3)
  centres = camera_centers_np(case.cam_from_world)
  np.testing.assert_allclose(np.hypot(centres[:, 0], centres[:, 1]), fit_cases.ORBIT_RADIUS)
  np.testing.assert_allclose(centres[:, 2], fit_cases.ORBIT_HEIGHT)
  azimuth = np.degrees(np.arctan2(centres[:, 1], centres[:, 0]))
  np.testing.assert_allclose(np.diff(np.unwrap(azimuth, period=360)) % 360, 45.0, atol=1e-9)
  # The optical axis (third row of R) points from each centre through the scene centre's target.
  target = np.array([0.0, 0.0, 0.3])
  to_target = target - centres
  to_target /= np.linalg.norm(to_target, axis=1, keepdims=True)
  np.testing.assert_allclose(case.cam_from_world[:, 2, :3], to_target, atol=1e-12)
  # Textured renders, not blank frames; and fresh arrays on every call.
  assert all(im.std() > 20 for im in case.images)
  case.images[0] = 0
  assert make_case("synth_orbit8").images[0].std() > 20


def test_synth_rotation_shares_one_centre_and_renders_deterministically():
  case = make_case("synth_rotation")
  _check_layout(case)
  centres = camera_centers_np(case.cam_from_world)
  np.testing.assert_allclose(centres, np.broadcast_to(centres[0], centres.shape), atol=1e-12)
  rot = case.cam_from_world[:, :3, :3]
  rel = rot[1:] @ np.swapaxes(rot[:-1], 1, 2)
  angle = np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))
  np.testing.assert_allclose(angle, 12.0, atol=1e-6)
  # Rendering again (outside the in-process cache) gives the same bytes.
  again, _, _ = syn.render(syn.random_world(fit_cases.SYNTH_SEED, mirror_prob=0.0),
                           case.intrinsics[-1:], case.cam_from_world[-1:], 240, 320)
  assert again[0].tobytes() == case.images[-1].tobytes()


def test_synth_orbit_repeat_is_byte_identical():
  case = make_case("synth_orbit_repeat")
  _check_layout(case)
  assert len(case.names) == 13 and case.kind.count("duplicate") == 1
  i = case.kind.index("duplicate")
  source = case.names.index(case.names[i].replace("_again", ""))
  assert abs(source - i) > 1
  assert case.images[i].tobytes() == case.images[source].tobytes()
  np.testing.assert_array_equal(case.cam_from_world[i], case.cam_from_world[source])
  orbit12 = make_case("synth_orbit12")
  np.testing.assert_array_equal(np.delete(case.images, i, 0), orbit12.images)


def test_synth_lowtexture_view_graph_splits():
  case = make_case("synth_lowtexture")
  _check_layout(case)
  _, matches = match_views(list(case.images), case.intrinsics)
  # Connected components of the verified-match graph.
  v = len(case.names)
  label = list(range(v))
  for i, j in matches:
    a, b = label[i], label[j]
    label = [a if x == b else x for x in label]
  groups = {}
  for view, root in enumerate(label):
    groups.setdefault(root, []).append(view)
  big = [g for g in groups.values() if len(g) >= 3]
  assert len(big) >= 2, groups


def test_flatten_textures_and_pan_helpers():
  world = syn.random_world(3)
  flat = syn.flatten_textures(world, keep=(0,))
  points = np.array([[0.1, 0.2, 0.0], [1.3, -0.7, 0.4], [2.9, 0.05, 1.1]], np.float32)

  def albedo(obj):
    return np.stack([np.asarray(texture.albedo(
        p, flat.colour_a[obj], flat.colour_b[obj], flat.frequency[obj], flat.checker[obj],
        flat.offset[obj], flat.noise_seed[obj])) for p in points])

  assert np.ptp(albedo(0), axis=0).max() > 0.01            # kept: still textured
  flat_values = albedo(5)                                     # flattened: one colour
  np.testing.assert_allclose(flat_values, np.broadcast_to(flat_values[0], (3, 3)), atol=1e-6)
  for field in world._fields:
    if field not in ("colour_a", "colour_b", "checker"):
      np.testing.assert_array_equal(getattr(flat, field), getattr(world, field))
  np.testing.assert_array_equal(flat.colour_a[0], world.colour_a[0])
  poses = syn.pan(5, centre=(1.0, 2.0, 3.0), step_degrees=10.0, heading_degrees=90.0)
  np.testing.assert_allclose(camera_centers_np(poses), [[1.0, 2.0, 3.0]] * 5, atol=1e-12)
  # The middle view of an odd sweep faces the given heading.
  assert np.degrees(np.arctan2(poses[2, 2, 1], poses[2, 2, 0])) == pytest.approx(90.0)
