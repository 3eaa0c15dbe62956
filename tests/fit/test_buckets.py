"""Size buckets of the LM program: the bucket sizes, and padded stages equal to unpadded ones."""
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrecon.fit import buckets, bundle, viewgraph


def test_bucket_sizes():
  sizes = [buckets.bucket(n) for n in range(1, 20000)]
  assert all(s >= n for n, s in zip(range(1, 20000), sizes))
  assert sizes == sorted(sizes)                                   # monotone
  big = np.arange(1000, 20000)
  over = np.array(sizes)[big - 1] / big
  assert over.max() <= 2 ** 0.25 + 64 / 1000 and over.mean() < 1.15
  assert len(set(sizes[999:])) < 25                               # few programs over 1k..20k
  assert [buckets.view_bucket(v) for v in (2, 4, 5, 8, 9, 12, 13, 19, 24)] == \
      [4, 4, 6, 8, 12, 12, 16, 23, 32]
  padded = buckets.pad(np.arange(6).reshape(3, 2), 5, (7, 8))
  np.testing.assert_array_equal(padded, [[0, 1], [2, 3], [4, 5], [7, 8], [7, 8]])
  with pytest.raises(ValueError, match="do not fit"):
    buckets.pad(np.zeros(3), 2, 0)


def _problem(seed, at_infinity, turn=0.02):
  """A noisy scene (v views, t points, every point seen by most views) and a perturbed start."""
  rng = np.random.default_rng(seed)
  v, t = 5, 70
  rot = np.stack([viewgraph._exp(rng.normal(0, 0.2, 3)) for _ in range(v)])
  centre = np.zeros((v, 3)) if at_infinity else rng.normal(0, 0.6, (v, 3))
  points = rng.normal(0, 1.0, (t, 3)) + np.array([0, 0, 6.0])
  if at_infinity:
    points /= np.linalg.norm(points, axis=1, keepdims=True)
  view, track = np.nonzero(rng.random((v, t)) < 0.8)
  y = np.einsum("nij,nj->ni", rot[view], points[track] - centre[view])
  bearing = y / np.linalg.norm(y, axis=1, keepdims=True) + rng.normal(0, 1e-3, y.shape)
  bearing /= np.linalg.norm(bearing, axis=1, keepdims=True)
  obs = bundle.observations(view, track, bearing, rng.uniform(300, 600, len(view)),
                            dtype=np.float64)
  start_rot = np.stack([viewgraph._exp(rng.normal(0, turn, 3)) @ r for r in rot])
  start_points = points + rng.normal(0, 0.05, points.shape)
  if at_infinity:
    start_points /= np.linalg.norm(start_points, axis=1, keepdims=True)
  start_centre = centre + (0.0 if at_infinity else rng.normal(0, 0.05, centre.shape))
  return start_rot, start_centre, start_points, obs


@pytest.mark.x64  # float64: both runs take the same LM path, so they can be compared closely
@pytest.mark.parametrize("mode", ["points", "at_infinity", "positions_and_focal"])
def test_padded_stage_equals_unpadded(mode):
  """A stage on inputs padded to their buckets (extra views, points, observations and pairs)
  returns the unpadded stage's unknowns, cost and iterations: the padding is inert."""
  at_inf = mode == "at_infinity"
  # With the rotations held (positions only) they start at the truth.
  rot, centre, points, obs = _problem(3, at_inf, 0.0 if mode == "positions_and_focal" else 0.02)
  padded = buckets.pad_problem(rot, centre, points, obs)
  assert len(padded[0]) > len(rot) and len(padded[2]) > len(points)  # 5 -> 6 views, 70 -> 80
  assert len(padded[3].view) > len(obs.view) and len(padded[3].pairs) > len(obs.pairs)
  kw = dict(max_iterations=30, tolerance=1e-10, at_infinity=at_inf,
            fix_rotations=mode == "positions_and_focal",
            refine_focal=mode == "positions_and_focal")
  a = bundle.run_stage(rot, centre, points, obs, 2.0, **kw, bucketed=True)
  b = bundle.run_stage(rot, centre, points, obs, 2.0, **kw, bucketed=False)
  for x, y in zip(a[:3], b[:3]):
    assert x.shape == y.shape and np.all(np.isfinite(x))
    np.testing.assert_allclose(x, y, rtol=0, atol=1e-6)
  np.testing.assert_allclose(a[3], b[3], atol=1e-9)
  assert a[4].iterations == b[4].iterations and a[4].message == b[4].message
  np.testing.assert_allclose([a[4].cost_start, a[4].cost_end], [b[4].cost_start, b[4].cost_end],
                             rtol=1e-9)
  assert a[4].cost_end < 0.1 * a[4].cost_start                  # it did fit something
  assert jnp.asarray(a[0]).dtype == jnp.float64


def test_stage_through_the_program_store(tmp_path, monkeypatch):
  """With the program store on (a process that reuses an earlier one's lowered LM program), a
  stage returns what the plain jit returns, and a new process loads the program."""
  from jaxrecon import program_store
  rot, centre, points, obs = (np.asarray(x, np.float32) if isinstance(x, np.ndarray) else x
                              for x in _problem(4, False))
  obs = obs._replace(**{k: np.asarray(v, np.float32) for k, v in obs._asdict().items()
                        if np.asarray(v).dtype == np.float64})
  kw = dict(max_iterations=20, tolerance=1e-6, at_infinity=False)
  monkeypatch.setattr(program_store, "store_dir", lambda: None)
  plain = bundle.run_stage(rot, centre, points, obs, 2.0, **kw)
  monkeypatch.setattr(program_store, "store_dir", lambda: tmp_path)
  for _ in range(2):   # exported and stored, then loaded as by a new process
    monkeypatch.setattr(program_store, "_PROGRAMS", {})
    stored = bundle.run_stage(rot, centre, points, obs, 2.0, **kw)
    for x, y in zip(stored[:4], plain[:4]):
      np.testing.assert_array_equal(x, y)
    assert stored[4] == plain[4] and stored[4].iterations > 1
  assert len(list(tmp_path.glob("*.jaxexport"))) == 1
