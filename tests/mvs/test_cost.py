"""ZNCC and the plane-sweep cost against float64 numpy references."""
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrecon import mvs


def _zncc_reference(ref, src, radius, min_std):
  """Direct float64 ZNCC over edge-replicated windows, one pixel at a time."""
  h, w = ref.shape
  pr = np.pad(ref.astype(np.float64), radius, mode="edge")
  ps = np.pad(src.astype(np.float64), radius, mode="edge")
  out = np.zeros((h, w))
  for i in range(h):
    for j in range(w):
      a = pr[i:i + 2 * radius + 1, j:j + 2 * radius + 1].ravel()
      b = ps[i:i + 2 * radius + 1, j:j + 2 * radius + 1].ravel()
      a, b = a - a.mean(), b - b.mean()
      if a.std() <= min_std or b.std() <= min_std:
        continue
      out[i, j] = (a @ b) / np.sqrt((a @ a) * (b @ b))
  return out


def test_box_mean_matches_numpy():
  x = np.random.default_rng(0).uniform(size=(2, 7, 9)).astype(np.float32)
  padded = np.pad(x.astype(np.float64), ((0, 0), (2, 2), (2, 2)), mode="edge")
  want = np.stack([[[padded[b, i:i + 5, j:j + 5].mean() for j in range(9)] for i in range(7)]
                   for b in range(2)])
  np.testing.assert_allclose(mvs.box_mean(jnp.asarray(x), 2), want, atol=1e-6)


@pytest.mark.parametrize("radius", [1, 3])
def test_zncc_matches_float64_reference(radius):
  rng = np.random.default_rng(radius)
  ref = rng.uniform(size=(11, 13)).astype(np.float32)
  src = (0.6 * ref + 0.4 * rng.uniform(size=ref.shape)).astype(np.float32)
  got = mvs.zncc(jnp.asarray(ref), jnp.asarray(src), radius=radius)
  np.testing.assert_allclose(got, _zncc_reference(ref, src, radius, 2e-3), atol=2e-5)


def test_zncc_is_invariant_to_affine_exposure():
  rng = np.random.default_rng(1)
  ref = rng.uniform(0.2, 0.8, size=(16, 16)).astype(np.float32)
  src = np.clip(ref + 0.05 * rng.normal(size=ref.shape), 0, 1).astype(np.float32)
  base = mvs.zncc(jnp.asarray(ref), jnp.asarray(src), radius=2)
  for gain, offset in [(0.5, 0.3), (1.7, -0.2)]:
    got = mvs.zncc(jnp.asarray(ref), jnp.asarray(gain * src + offset), radius=2)
    np.testing.assert_allclose(got, base, atol=1e-4)


def test_zncc_of_uniform_windows_is_zero_and_finite():
  ref = jnp.full((8, 8), 0.5)
  src = jnp.asarray(np.random.default_rng(2).uniform(size=(8, 8)))
  for a, b in [(ref, src), (src, ref), (ref, ref)]:
    out = mvs.zncc(a, b, radius=2)
    assert np.all(np.isfinite(out)) and np.all(np.asarray(out) == 0)


def test_sweep_cost_is_lowest_at_the_true_plane():
  """A textured fronto-parallel plane seen by a camera shifted sideways: the neighbour's image is
  the reference shifted by the disparity f b / z, so the cost minimum sits at 1 / z."""
  rng = np.random.default_rng(3)
  h, w, f, baseline, z = 24, 40, 30.0, 0.4, 3.0
  texture = rng.uniform(size=(h, w + 16)).astype(np.float32)
  shift = int(round(f * baseline / z))                       # 4 pixels
  # The neighbour sits to the right, so the surface moves left by `shift` pixels in its image.
  ref, src = texture[:, :w], texture[:, shift:shift + w]
  k = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]], np.float32)
  cam_ref = np.eye(4, dtype=np.float32)
  cam_src = np.eye(4, dtype=np.float32)
  cam_src[0, 3] = -baseline                                  # centre at x = +baseline
  inv_depths = np.linspace(1 / 1.5, 1 / 12.0, 25).astype(np.float32)
  inv_depths[12] = 1 / z
  cost = mvs.sweep_cost(jnp.asarray(ref), jnp.asarray(src)[None], jnp.asarray(k),
                        jnp.asarray(k)[None], jnp.asarray(cam_ref), jnp.asarray(cam_src)[None],
                        jnp.asarray(inv_depths), radius=2, top_k=1, chunk=4)
  assert cost.shape == (25, h, w)
  inner = np.asarray(cost)[:, 3:-3, 10:-3]                    # pixels the neighbour sees
  assert np.mean(np.argmin(inner, axis=0) == 12) > 0.98
  np.testing.assert_allclose(inner[12], 0.0, atol=1e-4)
