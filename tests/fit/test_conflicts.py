"""The view graph's spanning tree and the missing-correspondence check (`fit.conflicts`): a false
match of a symmetric object is cut and reported, a sequence whose every pair is a bridge is kept."""
import itertools
from typing import NamedTuple

import numpy as np
import pytest

from jaxrecon.fit import FitSettings, viewgraph
from tests.fit.test_fit_scene import K, fit_quietly, look_at, rotation_errors_deg


class Edge(NamedTuple):
  i: int
  j: int
  num_inliers: int


def test_spanning_tree_is_a_maximum_one():
  """Against brute force over every set of v - 1 edges (small random graphs, distinct weights)."""
  rng = np.random.default_rng(0)
  for _ in range(30):
    v = int(rng.integers(2, 6))
    all_edges = [e for e in itertools.combinations(range(v), 2) if rng.uniform() < 0.7]
    weights = rng.permutation(100)[:len(all_edges)]
    edges = [Edge(i, j, int(w)) for (i, j), w in zip(all_edges, weights)]
    views = list(range(v))
    tree = viewgraph.spanning_tree(views, edges)
    comps = viewgraph.components(v, edges)
    assert len(tree) == v - len(comps)                       # a spanning forest
    for comp in comps:                                        # ... connecting each component
      assert viewgraph.side_of(comp[0], comp, [e for e in tree if e.i in comp]) == set(comp)
    best = max((sum(e.num_inliers for e in subset)
                for subset in itertools.combinations(edges, len(tree))
                if len(viewgraph.components(v, list(subset))) == len(comps)), default=0)
    assert sum(e.num_inliers for e in tree) == best


def surface(t, rng):
  """(t, 3) points on a bumpy closed surface around the origin and their outward normals."""
  d = rng.normal(size=(t, 3))
  d /= np.linalg.norm(d, axis=1, keepdims=True)
  r = 1.0 + 0.15 * np.sin(3 * np.arctan2(d[:, 1], d[:, 0])) * np.cos(2 * np.arcsin(d[:, 2]))
  return d * r[:, None], d


def observe(points, normals, cams, rng, keep=0.85, facing=0.6):
  """Exact pixels (t, v, 2) and visibility (t, v): a point is seen where its surface faces the
  camera (cosine > facing), inside the 640 x 480 image, with probability keep (the detector)."""
  cam = np.einsum("vij,tj->tvi", cams[:, :3, :3], points) + cams[:, :3, 3]
  pixels = np.einsum("ij,tvj->tvi", K, cam / cam[..., 2:])[..., :2]
  centres = -np.einsum("vji,vj->vi", cams[:, :3, :3], cams[:, :3, 3])
  to_cam = centres[None] - points[:, None]
  cos = np.einsum("ti,tvi->tv", normals, to_cam) / np.linalg.norm(to_cam, axis=-1)
  inside = np.all((pixels >= 0) & (pixels < [640, 480]), -1) & (cam[..., 2] > 0)
  return pixels, (cos > facing) & inside & (rng.uniform(size=cos.shape) < keep)


def ring_cameras(azimuths_deg, radius=4.0, height=1.0):
  az = np.deg2rad(np.asarray(azimuths_deg, np.float64))
  return np.stack([look_at(np.array([radius * np.cos(a), radius * np.sin(a), height]),
                           np.zeros(3)) for a in az])


AZIMUTHS = (0, 15, 30, 45, 60, 170, 200, 230)   # degrees: views 0-4 and views 5-7


def symmetric_object_scene(false_pairs, seed=0):
  """Views 0-4 (azimuths 0-60 deg) and 5-7 (170-230 deg) see opposite sides of an object and no
  common point. 60 false tracks per (a, b) in false_pairs join view a to view b as the object's
  180-degree symmetry would: each pairs a point seen by view a with its rotated twin, which view
  b sees exactly as a camera at its azimuth - 180 deg would see the original. Every false pair is
  rigid (a relative pose explains it), and all agree with one mirrored placement of views 5-7:
  one false pair is a bridge, several form loops that rotation averaging cannot contradict."""
  rng = np.random.default_rng(seed)
  points, normals = surface(3000, rng)
  cams = ring_cameras(AZIMUTHS)
  pixels, visible = observe(points, normals, cams, rng)
  assert not (visible[:, :5].any(1) & visible[:, 5:].any(1)).any()   # no true shared point
  twin = np.diag([-1.0, -1.0, 1.0])                          # rotation by 180 deg about z
  for a, b in false_pairs:
    both = observe(points, normals, ring_cameras([AZIMUTHS[a], AZIMUTHS[b] - 180]), rng,
                   keep=1.0)[1].all(1)
    chosen = rng.choice(np.nonzero(both)[0], 60, replace=False)
    false_pix = np.zeros((60, 8, 2))
    false_vis = np.zeros((60, 8), bool)
    false_pix[:, a] = observe(points[chosen], normals[chosen], cams[a:a + 1], rng,
                              keep=1.0)[0][:, 0]
    false_pix[:, b] = observe(points[chosen] @ twin.T, normals[chosen] @ twin.T, cams[b:b + 1],
                              rng, keep=1.0)[0][:, 0]
    false_vis[:, [a, b]] = True
    pixels, visible = np.concatenate([pixels, false_pix]), np.concatenate([visible, false_vis])
  return pixels, visible, np.tile(K, (8, 1, 1)), cams


@pytest.mark.parametrize("false_pairs", [((3, 7),), ((3, 7), (4, 6))],
                         ids=["bridge", "loop"])
def test_false_join_of_a_symmetric_object_is_cut_and_reported(false_pairs):
  pixels, visible, intrinsics, gt = symmetric_object_scene(false_pairs)
  # Without the check the second group is registered on the wrong side of the object.
  blind, _ = fit_quietly(pixels, visible, intrinsics, settings=FitSettings(conflict_ratio=0.0))
  assert blind.registered.all() and blind.conflicts == ()
  assert np.max(rotation_errors_deg(blind.cam_from_world, gt)) > 30
  result, caught = fit_quietly(pixels, visible, intrinsics)
  assert sorted(result.conflicts) == sorted(false_pairs)
  assert result.registered.tolist() == [True] * 5 + [False] * 3
  assert np.all(np.isnan(result.cam_from_world[5:]))
  assert any("[5, 6, 7]" in w and all(f"{a}-{b}" in w for a, b in false_pairs) and "cut" in w
             for w in caught), caught
  assert any("not registered" in w and "[5, 6, 7]" in w for w in caught)
  assert np.max(rotation_errors_deg(result.cam_from_world[:5], gt[:5])) < 0.01


def test_sequence_whose_every_pair_is_a_bridge_is_kept():
  # A camera sliding along a bumpy wall: each view overlaps only its neighbours, so the view
  # graph is a chain and every pair a bridge; nothing contradicts any of them.
  rng = np.random.default_rng(3)
  x, y = rng.uniform(-2, 30, 4000), rng.uniform(-2.5, 2.5, 4000)
  points = np.stack([x, y, 5.0 + 0.4 * np.sin(x) * np.cos(1.3 * y)], -1)
  normals = np.tile([0.0, 0.0, -1.0], (4000, 1))
  cams = np.stack([look_at(np.array([4.0 * k, 0.0, 0.0]), np.array([4.0 * k, 0.0, 5.0]) + 1e-3)
                   for k in range(8)])
  pixels, visible = observe(points, normals, cams, rng, facing=0.3)
  shared = visible.T.astype(int) @ visible.astype(int)
  assert np.all(np.diag(shared, 1) > 100) and np.all(np.diag(shared, 2) == 0)   # a chain
  result, caught = fit_quietly(pixels, visible, np.tile(K, (8, 1, 1)))
  assert result.conflicts == () and result.registered.all(), caught
  assert np.max(rotation_errors_deg(result.cam_from_world, cams)) < 0.01
