"""Triangulation against float64 numpy and OpenCV references, gradients, invariances, degeneracies."""
import cv2
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxrecon.geometry.triangulation import triangulate, triangulate_with_info

pytestmark = pytest.mark.x64  # a float64 reference and check_grads

_jit_triangulate = jax.jit(triangulate)
K = np.array([[520.0, 0.0, 320.0], [0.0, 510.0, 240.0], [0.0, 0.0, 1.0]])


def _rotation(rng):
  q = rng.normal(size=4)
  q /= np.linalg.norm(q)
  x, y, z, w = q
  return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                   [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                   [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _look_at(centre, target=np.zeros(3)):
  z = (target - centre) / np.linalg.norm(target - centre)
  x = np.cross([0.0, 1.0, 0.0], z)
  x /= np.linalg.norm(x)
  r = np.stack([x, np.cross(z, x), z])
  return np.concatenate([r, (-r @ centre)[:, None]], 1)


def make_scene(rng, views=3, n=50, baseline=1.0, distance=4.0):
  """Cameras spread over `baseline` at `distance` from a unit cloud, looking at it (float64)."""
  points = rng.uniform(-0.5, 0.5, size=(n, 3))
  proj = []
  for _ in range(views):
    c = np.array([0.0, 0.0, -distance]) + baseline * rng.uniform(-0.5, 0.5, size=3)
    proj.append(K @ _look_at(c))
  proj = np.stack(proj)
  return proj, project_np(proj, points), points


def project_np(proj, points):
  hom = np.einsum("vij,nj->vni", proj, np.concatenate([points, np.ones((len(points), 1))], 1))
  return hom[..., :2] / hom[..., 2:]


def reference_rays_lsq(proj, pixels, weights):
  """Independent float64 reference of the documented objective: the point minimising the
  weighted sum of squared distances to the viewing rays, one np.linalg.solve per point."""
  out = []
  for j in range(pixels.shape[1]):
    n = np.zeros((3, 3))
    b = np.zeros(3)
    for i in range(len(proj)):
      m_inv = np.linalg.inv(proj[i, :, :3])
      c = -m_inv @ proj[i, :, 3]
      d = m_inv @ np.append(pixels[i, j], 1.0)
      d /= np.linalg.norm(d)
      p = np.eye(3) - np.outer(d, d)
      n += weights[i, j] * p
      b += weights[i, j] * p @ c
    out.append(np.linalg.solve(n, b))
  return np.array(out)


def test_matches_float64_reference_with_noise_and_weights():
  rng = np.random.default_rng(0)
  proj, pixels, _ = make_scene(rng, views=4, n=40)
  pixels = pixels + rng.normal(scale=2.0, size=pixels.shape)
  weights = rng.uniform(0.1, 1.0, size=pixels.shape[:2])
  want = reference_rays_lsq(proj, pixels, weights)
  got64 = np.asarray(triangulate(proj, pixels, weights))
  np.testing.assert_allclose(got64, want, rtol=0, atol=1e-10)
  got32 = np.asarray(triangulate(proj.astype(np.float32), pixels.astype(np.float32),
                                 weights.astype(np.float32)))
  assert got32.dtype == np.float32
  np.testing.assert_allclose(got32, want, rtol=0, atol=5e-5)


def _naive_float32(proj, pixels):
  """The same least-squares point from world-frame float32 normal equations (what the library
  avoids): sum (I - d d^T) is nearly singular along the rays at small parallax."""
  proj, pixels = proj.astype(np.float32), pixels.astype(np.float32)
  m_inv = np.linalg.inv(proj[:, :, :3])
  c = -np.einsum("vij,vj->vi", m_inv, proj[:, :, 3])
  d = np.einsum("vij,vnj->vni", m_inv, np.concatenate([pixels, np.ones_like(pixels[..., :1])], -1))
  d /= np.linalg.norm(d, axis=-1, keepdims=True)
  p = np.eye(3, dtype=np.float32) - d[..., :, None] * d[..., None, :]
  return np.linalg.solve(p.sum(0), np.einsum("vnij,vj->ni", p, c)[..., None])[..., 0]


@pytest.mark.parametrize("baseline", [1.0, 0.1, 0.02, 0.005])
def test_float32_accuracy_at_small_parallax(baseline):
  # Noise-free data; the floor is what float32 inputs allow (the float64 solve of the rounded
  # inputs). Measured: within 1.5-3x of that floor down to 0.07 degrees of parallax, while the
  # world-frame float32 solve is off by 1e-4 (baseline 1) to 94 % (baseline 0.005).
  rng = np.random.default_rng(1)
  proj, pixels, points = make_scene(rng, views=2, n=500, baseline=baseline)
  p32, u32 = proj.astype(np.float32), pixels.astype(np.float32)
  rel = lambda x: np.median(np.linalg.norm(x - points, axis=1)
                            / np.linalg.norm(points - [0, 0, -4.0], axis=1))
  ours = rel(np.asarray(triangulate(p32, u32), np.float64))
  floor = rel(np.asarray(triangulate(p32.astype(np.float64), u32.astype(np.float64))))
  assert ours < 4 * floor + 1e-6, (ours, floor)
  assert ours < rel(_naive_float32(proj, pixels)) / 50


def test_agrees_with_opencv_two_views():
  rng = np.random.default_rng(2)
  proj, pixels, points = make_scene(rng, views=2, n=200)
  p32, u32 = proj.astype(np.float32), pixels.astype(np.float32)
  hom = cv2.triangulatePoints(p32[0], p32[1], u32[0].T.copy(), u32[1].T.copy())
  ocv = (hom[:3] / hom[3]).T
  ours = np.asarray(triangulate(p32, u32), np.float64)
  rel = np.linalg.norm(ours - ocv, axis=1) / np.linalg.norm(ocv - [0, 0, -4.0], axis=1)
  assert np.max(rel) < 1e-4, np.max(rel)
  np.testing.assert_allclose(ours, points, atol=1e-4)


def test_agrees_with_kornia_two_views():
  torch = pytest.importorskip("torch", reason="kornia comparison needs torch + kornia")
  kepi = pytest.importorskip("kornia.geometry.epipolar", reason="kornia not installed")
  rng = np.random.default_rng(3)
  proj, pixels, _ = make_scene(rng, views=2, n=200)
  pixels = pixels + rng.normal(scale=0.3, size=pixels.shape)
  t = lambda a: torch.tensor(a, dtype=torch.float64)
  theirs = kepi.triangulate_points(t(proj[0]), t(proj[1]), t(pixels[0]), t(pixels[1])).numpy()
  ours = np.asarray(triangulate(proj, pixels))
  # Different algebraic weightings of the same DLT equations: equal on exact data, close on noisy.
  rel = np.linalg.norm(ours - theirs, axis=1) / np.linalg.norm(theirs - [0, 0, -4.0], axis=1)
  assert np.median(rel) < 1e-3


def test_textbook_svd_solver_on_exact_data():
  rng = np.random.default_rng(4)
  proj, pixels, points = make_scene(rng, views=5, n=30)
  np.testing.assert_allclose(np.asarray(triangulate(proj, pixels, solver="svd")), points, atol=1e-9)
  np.testing.assert_allclose(np.asarray(triangulate(proj, pixels, solver="ray")), points, atol=1e-9)


def test_gradients_match_finite_differences():
  rng = np.random.default_rng(5)
  proj, pixels, _ = make_scene(rng, views=3, n=6)
  pixels = pixels + rng.normal(scale=1.0, size=pixels.shape)
  weights = rng.uniform(0.3, 1.0, size=pixels.shape[:2])
  # Scale the projection so that finite-difference steps are meaningful for every entry.
  check_grads(lambda p, u, w: triangulate(p, u, w), (proj, pixels, weights), order=1,
              modes=["rev"], atol=1e-5, rtol=1e-5)
  check_grads(lambda p, u: triangulate(p, u, solver="svd"), (proj, pixels), order=1,
              modes=["rev"], atol=1e-5, rtol=1e-5)


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(seed=st.integers(0, 2**31 - 1), scale=st.floats(0.1, 10.0))
def test_equivariant_under_similarity(seed, scale):
  """Transforming the scene by X' = s R X + t and the cameras accordingly moves the points
  the same way: triangulate(P S^-1, u) = S triangulate(P, u)."""
  rng = np.random.default_rng(seed)
  proj, pixels, _ = make_scene(rng, views=4, n=20)
  pixels = pixels + rng.normal(scale=1.0, size=pixels.shape)
  weights = rng.uniform(0.2, 1.0, size=pixels.shape[:2])
  r, t = _rotation(rng), rng.normal(size=3) * 3
  sim = np.eye(4)
  sim[:3, :3], sim[:3, 3] = scale * r, t
  x = np.asarray(_jit_triangulate(proj, pixels, weights))
  x2 = np.asarray(_jit_triangulate(proj @ np.linalg.inv(sim), pixels, weights))
  np.testing.assert_allclose(x2, scale * x @ r.T + t, atol=1e-8 * max(scale, 1.0) * 10)


def test_masked_nan_observations_do_not_poison_others():
  rng = np.random.default_rng(6)
  proj, pixels, _ = make_scene(rng, views=4, n=10)
  weights = np.ones(pixels.shape[:2])
  weights[2, 3] = 0.0
  weights[0, 7] = 0.0
  poisoned = pixels.copy()
  poisoned[2, 3] = np.nan
  poisoned[0, 7] = np.inf
  clean = np.asarray(triangulate(proj, pixels, weights))
  dirty = np.asarray(triangulate(proj, poisoned, weights))
  np.testing.assert_allclose(dirty, clean, atol=1e-12)
  grads = jax.grad(lambda p, u: jnp.sum(triangulate(p, u, weights) ** 2), argnums=(0, 1))(
      proj, poisoned)
  assert all(np.all(np.isfinite(g)) for g in grads)
  assert np.all(np.asarray(grads[1])[2, 3] == 0.0)


def _degenerate_cases():
  rng = np.random.default_rng(7)
  proj, pixels, _ = make_scene(rng, views=2, n=5)
  same = np.stack([proj[0], proj[0]])
  shifted = same.copy()
  shifted[1, :, 3] += proj[0][:, :3] @ np.array([0.2, 0.0, 0.0])  # pure translation: parallel rays
  # Points 12 units behind the cameras (which sit near z = -4 looking down +z) project to
  # ordinary-looking pixels; their rays (extended backwards) meet behind both cameras.
  behind = project_np(proj, rng.uniform(-0.5, 0.5, size=(5, 3)) - [0.0, 0.0, 12.0])
  one_view = np.ones((2, 5))
  one_view[1] = 0.0
  return {
      "zero baseline": (same, np.stack([pixels[0], pixels[0]]), np.ones((2, 5))),
      "parallel rays": (shifted, np.stack([pixels[0], pixels[0]]), np.ones((2, 5))),
      "rays meeting behind the cameras": (proj, behind, np.ones((2, 5))),
      "single view": (proj, pixels, one_view),
      "no views": (proj, pixels, np.zeros((2, 5))),
  }


@pytest.mark.parametrize("case", list(_degenerate_cases()))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_degenerate_inputs_are_finite(case, dtype):
  proj, pixels, weights = (a.astype(dtype) for a in _degenerate_cases()[case])
  loss = lambda p, u, w: jnp.sum(triangulate(p, u, w) ** 2)
  assert np.isfinite(loss(proj, pixels, weights))
  for g in jax.grad(loss, argnums=(0, 1, 2))(proj, pixels, weights):
    assert np.all(np.isfinite(g)), case
  _, info = triangulate_with_info(proj, pixels, weights)
  assert not np.any(np.asarray(info.valid)), case


def test_info_parallax_and_validity():
  rng = np.random.default_rng(8)
  proj, pixels, points = make_scene(rng, views=2, n=20)
  _, info = triangulate_with_info(proj, pixels)
  # Two views: parallax is the angle between the rays from the two centres to the point.
  centres = [-np.linalg.inv(p[:, :3]) @ p[:, 3] for p in proj]
  a, b = points - centres[0], points - centres[1]
  angle = np.arccos(np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1))
  np.testing.assert_allclose(np.asarray(info.parallax), angle, rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(info.num_views), 2)
  assert np.all(np.asarray(info.valid) == (angle >= np.deg2rad(0.5)))


def test_batch_axes_jit_and_vmap_agree():
  rng = np.random.default_rng(9)
  scenes = [make_scene(rng, views=3, n=16) for _ in range(4)]
  proj = np.stack([s[0] for s in scenes])
  pixels = np.stack([s[1] for s in scenes])
  batched = np.asarray(triangulate(proj, pixels))
  assert batched.shape == (4, 16, 3)
  np.testing.assert_allclose(np.asarray(jax.jit(triangulate)(proj, pixels)), batched, atol=1e-12)
  np.testing.assert_allclose(np.asarray(jax.vmap(triangulate)(proj, pixels)), batched, atol=1e-12)
  for i in range(4):
    np.testing.assert_allclose(np.asarray(triangulate(proj[i], pixels[i])), batched[i], atol=1e-12)
  # One set of cameras broadcast against a batch of pixel sets.
  shared = np.asarray(triangulate(proj[0], np.stack([pixels[0], pixels[0]])))
  np.testing.assert_allclose(shared, np.stack([batched[0]] * 2), atol=1e-12)


def test_large_track_count_matches_small_chunks():
  rng = np.random.default_rng(10)
  proj, pixels, points = make_scene(rng, views=3, n=5000)
  np.testing.assert_allclose(np.asarray(triangulate(proj, pixels)), points, atol=1e-9)


@pytest.mark.parametrize("args, name", [
    ((np.zeros((2, 3, 3)), np.zeros((2, 5, 2))), "proj"),
    ((np.zeros((2, 3, 4)), np.zeros((3, 5, 2))), "pixels"),
    ((np.zeros((2, 3, 4)), np.zeros((2, 5, 3))), "pixels"),
    ((np.zeros((2, 3, 4)), np.zeros((2, 5, 2)), np.zeros((2, 4))), "weights"),
])
def test_bad_shapes_name_the_argument(args, name):
  with pytest.raises(ValueError, match=name):
    triangulate(*args)


def test_unknown_solver():
  with pytest.raises(ValueError, match="solver"):
    triangulate(np.zeros((2, 3, 4)), np.zeros((2, 5, 2)), solver="magic")
