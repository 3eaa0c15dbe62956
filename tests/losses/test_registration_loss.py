"""Registration loss: exactness, invariances, descent, robustness and degenerate inputs."""
import functools

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrecon.losses.registration import FORMS, registration_loss

H, W, F = 48, 64, 60.0
K = np.array([[F, 0.0, 32.0], [0.0, F, 24.0], [0.0, 0.0, 1.0]])
INVARIANT = ("angular", "triangulation", "pixel")


@functools.partial(jax.jit, static_argnames=("form",))
def _loss(tracks, vis, depth, pose, intr, form):
  return registration_loss(tracks, vis, depth, pose, intr, form=form)


def _rotation(rng, max_angle=np.pi):
  axis = rng.normal(size=3)
  axis /= np.linalg.norm(axis)
  a = rng.uniform(-max_angle, max_angle)
  k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
  return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def plane_scene(seed=0, views=4, tracks=30, rotation=None):
  """Exact data: cameras sharing one rotation, translated in their image plane, facing a plane
  at depth 5, so every depth map is constant and bilinear sampling is exact."""
  rng = np.random.default_rng(seed)
  r = np.eye(3) if rotation is None else rotation
  offsets = np.concatenate([rng.uniform(-1, 1, (views, 2)), np.zeros((views, 1))], 1)
  pose = np.tile(np.eye(4), (views, 1, 1))
  pose[:, :3, :3] = r
  pose[:, :3, 3] = offsets @ r.T
  local = np.concatenate([rng.uniform(-1.5, 1.5, (tracks, 2)), np.full((tracks, 1), 5.0)], 1)
  points = local @ r.T
  cam = np.einsum("vji,tvj->tvi", pose[:, :3, :3], points[:, None] - pose[None, :, :3, 3])
  pix = cam[..., :2] / cam[..., 2:] * F + K[:2, 2]
  vis = ((pix[..., 0] > 0) & (pix[..., 0] < W - 1) & (pix[..., 1] > 0) & (pix[..., 1] < H - 1))
  return pix, vis.astype(float), np.full((views, H, W), 5.0), pose, np.tile(K, (views, 1, 1))


def noisy_scene(seed=1, views=4, tracks=40):
  """Generic data: the plane scene with noisy tracks and non-constant depth maps."""
  rng = np.random.default_rng(seed)
  pix, vis, depth, pose, intr = plane_scene(seed, views, tracks)
  pix = pix + rng.normal(scale=1.0, size=pix.shape)
  depth = depth * np.exp(0.05 * rng.normal(size=depth.shape))
  return pix, vis, depth, pose, intr


def _similarity(seed, scale):
  rng = np.random.default_rng(seed)
  sim = np.eye(4)
  sim[:3, :3] = _rotation(rng)
  sim[:3, 3] = rng.normal(size=3) * 3
  return sim, scale


def _apply(sim, scale, pose, depth):
  """Moves the predicted scene by X -> scale R X + t: poses and depths change accordingly."""
  pose2 = np.einsum("ij,vjk->vik", sim, pose)
  pose2[:, :3, 3] = scale * (sim[:3, :3] @ pose[:, :3, 3].T).T + sim[:3, 3]
  return pose2, depth * scale


@pytest.mark.parametrize("form", FORMS)
def test_zero_at_exact_solution(form):
  for rot in (None, _rotation(np.random.default_rng(3), 0.3)):
    loss, diag = _loss(*plane_scene(rotation=rot), form=form)
    assert float(loss) < 1e-12
    assert float(diag["inlier_fraction"]) == 1.0
    assert float(diag["num_terms"]) > 50


@pytest.mark.x64  # invariance at 1e-6 relative
@hypothesis.settings(max_examples=15, deadline=None)
@hypothesis.given(seed=st.integers(0, 2**20), scale=st.floats(0.05, 20.0))
def test_similarity_invariance(seed, scale):
  pix, vis, depth, pose, intr = noisy_scene()
  sim, scale = _similarity(seed, scale)
  pose2, depth2 = _apply(sim, scale, pose, depth)
  for form in INVARIANT:
    a = float(_loss(pix, vis, depth, pose, intr, form=form)[0])
    b = float(_loss(pix, vis, depth2, pose2, intr, form=form)[0])
    assert a > 1e-6
    np.testing.assert_allclose(b, a, rtol=1e-6, err_msg=form)
  a = float(_loss(pix, vis, depth, pose, intr, form="l2_3d")[0])
  b = float(_loss(pix, vis, depth2, pose2, intr, form="l2_3d")[0])
  # l2_3d is not scale invariant (its residual is in world units; callers normalise the scene):
  # it moves with the scene size, as scale^e with 0 < e <= 2 (e = 2 for inlier residuals, where
  # Cauchy ~ r^2 / 2, less as residuals reach its saturating tail). On this scene e is 0.25-0.77
  # over the tested scales 0.05-20 (measured): a fixed change of the loss would not hold near 1.
  if abs(np.log(scale)) > 0.1:
    assert 0.15 < np.log(b / a) / np.log(scale) <= 2.0, (scale, a, b)


@pytest.mark.parametrize("form", FORMS)
def test_decreases_along_negative_gradient(form):
  pix, vis, depth, pose, intr = noisy_scene(seed=2)
  rng = np.random.default_rng(4)
  pose = pose.copy()
  pose[1:, :3, 3] += rng.normal(scale=0.05, size=(3, 3))

  def f(depth, trans):
    p = jnp.asarray(pose).at[:, :3, 3].set(trans)
    return registration_loss(pix, vis, depth, p, intr, form=form)[0]

  trans = pose[:, :3, 3]
  value, (gd, gt) = jax.value_and_grad(f, argnums=(0, 1))(depth, trans)
  assert np.all(np.isfinite(gd)) and np.all(np.isfinite(gt))
  step = 1e-3 / max(float(jnp.max(jnp.abs(gd))), float(jnp.max(jnp.abs(gt))))
  assert float(f(depth - step * gd, trans - step * gt)) < float(value)


@pytest.mark.parametrize("form", INVARIANT)
def test_outlier_tracks_do_not_dominate(form):
  """10 % mismatched tracks move the pose gradient far less under the robust penalty than under
  plain L2 (relative to the gradient from the noisy inliers alone)."""
  pix, vis, depth, pose, intr = noisy_scene(seed=6, tracks=40)
  bad = pix.copy()
  bad[:4, 1] = pix[4:8, 1]  # four tracks matched to the wrong point in view 1

  def grad(tracks, robust):
    f = lambda trans: registration_loss(tracks, vis, depth, jnp.asarray(pose).at[:, :3, 3].set(
        trans), intr, form=form, robust=robust)[0]
    return np.asarray(jax.jit(jax.grad(f))(pose[:, :3, 3]))

  deviation = {}
  for robust in ("cauchy", "l2"):
    clean = grad(pix, robust)
    deviation[robust] = np.linalg.norm(grad(bad, robust) - clean) / np.linalg.norm(clean)
  assert deviation["cauchy"] < deviation["l2"] / 3, deviation


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("case", ["no visibility", "one view only", "zero baseline",
                                  "near-parallel rays", "behind cameras", "nan padding",
                                  "tracks outside image"])
def test_degenerate_inputs_give_finite_values_and_gradients(form, case):
  pix, vis, depth, pose, intr = noisy_scene(seed=5)
  pix, vis, pose, depth = pix.copy(), vis.copy(), pose.copy(), depth.copy()
  if case == "no visibility":
    vis[:] = 0
  elif case == "one view only":
    vis[:, 1:] = 0
  elif case == "zero baseline":
    pose[:, :3, 3] = 0.0
  elif case == "near-parallel rays":
    pose[:, :3, 3] *= 1e-6
    depth = depth * 1e3  # points ~1e9 baselines away
  elif case == "behind cameras":
    pose[2, :3, :3] = np.diag([-1.0, 1.0, -1.0])  # camera 2 turned around
  elif case == "nan padding":
    vis[::3, 0] = 0
    pix[::3, 0] = np.nan
  elif case == "tracks outside image":
    pix[:, 1] += 1000.0

  def f(depth, pose):
    return registration_loss(pix, vis, depth, pose, intr, form=form)[0]

  value, grads = jax.value_and_grad(f, argnums=(0, 1))(depth, pose)
  assert np.isfinite(value)
  assert all(np.all(np.isfinite(g)) for g in grads)
  if case == "no visibility":
    assert float(value) == 0.0
  if case == "nan padding":
    clean = pix.copy()
    clean[::3, 0] = 0.0
    np.testing.assert_allclose(
        float(value), float(registration_loss(clean, vis, depth, pose, intr, form=form)[0]),
        rtol=1e-12)


@hypothesis.settings(max_examples=8, deadline=None)
@hypothesis.given(t=st.integers(1, 12), v=st.integers(2, 5), batch=st.integers(1, 3),
                  seed=st.integers(0, 1000), form=st.sampled_from(FORMS))
def test_random_shapes_finite(t, v, batch, seed, form):
  rng = np.random.default_rng(seed)
  pix = rng.uniform(-5, 70, size=(batch, t, v, 2))
  vis = (rng.uniform(size=(batch, t, v)) > 0.3).astype(np.float32)
  depth = rng.uniform(0.5, 10, size=(batch, v, 8, 10))
  pose = np.tile(np.eye(4), (batch, v, 1, 1))
  pose[..., :3, 3] = rng.normal(size=(batch, v, 3))
  intr = np.tile(np.array([[10.0, 0, 5], [0, 10.0, 4], [0, 0, 1]]), (batch, v, 1, 1))
  loss, diag = _loss(pix, vis, depth, pose, intr, form=form)
  assert loss.shape == () and np.isfinite(loss) and float(loss) >= 0
  assert all(np.all(np.isfinite(x)) for x in diag.values())


@pytest.mark.parametrize("arg, bad, match", [
    (0, np.zeros((10, 4, 3)), "tracks"),
    (1, np.zeros((10, 3)), "visibility"),
    (2, np.zeros((3, H, W)), "depth"),
    (3, np.zeros((4, 3, 3)), "world_from_cam"),
    (4, np.zeros((4, 3, 4)), "intrinsics"),
])
def test_bad_shapes_name_the_argument(arg, bad, match):
  args = list(plane_scene(tracks=10))
  args[arg] = bad
  with pytest.raises(ValueError, match=match):
    registration_loss(*args)


def test_unknown_form():
  with pytest.raises(ValueError, match="form"):
    registration_loss(*plane_scene(tracks=10), form="magic")
