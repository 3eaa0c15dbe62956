"""Tests of the space-filling-curve serialisation against brute-force numpy references."""
import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from jaxrecon.models import serialization as ser


def _interleave_ref(x, y, z, bits):
  code = 0
  for i in range(bits):
    code |= ((x >> i) & 1) << (3 * i + 2)
    code |= ((y >> i) & 1) << (3 * i + 1)
    code |= ((z >> i) & 1) << (3 * i)
  return code


def test_z_order_matches_bit_interleaving():
  rng = np.random.default_rng(0)
  coords = rng.integers(0, 1 << 10, size=(500, 3))
  got = np.asarray(ser.z_order(jnp.asarray(coords, jnp.int32), bits=10))
  want = np.array([_interleave_ref(int(x), int(y), int(z), 10) for x, y, z in coords])
  np.testing.assert_array_equal(got, want)
  assert got.dtype == np.int32


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_hilbert_bijective_and_face_adjacent(bits):
  side = 1 << bits
  cube = np.array(list(itertools.product(range(side), repeat=3)), np.int32)
  codes = np.asarray(ser.hilbert(jnp.asarray(cube), bits=bits))
  # Bijection onto [0, 8^bits).
  np.testing.assert_array_equal(np.sort(codes), np.arange(side ** 3))
  # Consecutive codes are face-adjacent cells (L1 distance 1).
  path = cube[np.argsort(codes)]
  steps = np.abs(np.diff(path, axis=0)).sum(-1)
  np.testing.assert_array_equal(steps, 1)
  assert path[0].tolist() == [0, 0, 0]


def test_transposed_orders_swap_x_and_y():
  rng = np.random.default_rng(1)
  coords = jnp.asarray(rng.integers(0, 64, size=(100, 3)), jnp.int32)
  swapped = coords[:, jnp.array([1, 0, 2])]
  for name, fn in (("z", ser.z_order), ("hilbert", ser.hilbert)):
    np.testing.assert_array_equal(ser.encode(coords, order=name + "-trans", bits=6),
                                  fn(swapped, bits=6))
    np.testing.assert_array_equal(ser.encode(coords, order=name, bits=6), fn(coords, bits=6))


def test_codes_clip_out_of_range_coords():
  c = jnp.array([[2000, -5, 3]], jnp.int32)
  np.testing.assert_array_equal(ser.z_order(c, bits=10), ser.z_order(jnp.array([[1023, 0, 3]]), bits=10))


def test_bad_arguments():
  with pytest.raises(ValueError, match="bits"):
    ser.z_order(jnp.zeros((2, 3), jnp.int32), bits=11)
  with pytest.raises(ValueError, match="order"):
    ser.encode(jnp.zeros((2, 3), jnp.int32), order="peano")
  with pytest.raises(ValueError, match="grid_size"):
    ser.grid_coords(jnp.zeros((2, 3)), jnp.ones((2,), bool), grid_size=0.0)


def test_grid_coords_relative_to_valid_min():
  xyz = jnp.array([[[1.0, 2.0, 3.0], [1.25, 2.5, 3.0], [-100.0, -100.0, -100.0]]])
  valid = jnp.array([[True, True, False]])
  g = np.asarray(ser.grid_coords(xyz, valid, grid_size=0.25))
  np.testing.assert_array_equal(g, [[[0, 0, 0], [1, 2, 0], [0, 0, 0]]])
  assert g.dtype == np.int32


@pytest.mark.parametrize("order", ser.ORDERS)
def test_serialize_sorts_by_code_with_padding_last(order):
  rng = np.random.default_rng(2)
  b, n = 2, 300
  xyz = rng.uniform(-1, 3, size=(b, n, 3)).astype(np.float32)
  valid = rng.uniform(size=(b, n)) < 0.7
  perm, inv = ser.serialize(jnp.asarray(xyz), jnp.asarray(valid), grid_size=0.1, order=order)
  perm, inv = np.asarray(perm), np.asarray(inv)
  coords = np.asarray(ser.grid_coords(xyz, valid, grid_size=0.1))
  codes = np.asarray(ser.encode(coords, order=order))
  for i in range(b):
    assert sorted(perm[i].tolist()) == list(range(n))
    np.testing.assert_array_equal(perm[i][inv[i]], np.arange(n))
    nv = valid[i].sum()
    assert valid[i][perm[i][:nv]].all() and not valid[i][perm[i][nv:]].any()
    assert (np.diff(codes[i][perm[i][:nv]]) >= 0).all()


def test_serialize_ignores_input_order():
  rng = np.random.default_rng(3)
  n = 400
  xyz = rng.uniform(0, 1, size=(n, 3)).astype(np.float32)
  valid = np.ones(n, bool)
  shuffle = rng.permutation(n)
  # Coarse grid: many points share a voxel, so the within-voxel tie-break matters.
  p1, _ = ser.serialize(jnp.asarray(xyz), jnp.asarray(valid), grid_size=0.25, order="hilbert")
  p2, _ = ser.serialize(jnp.asarray(xyz[shuffle]), jnp.asarray(valid), grid_size=0.25,
                        order="hilbert")
  np.testing.assert_array_equal(xyz[np.asarray(p1)], xyz[shuffle][np.asarray(p2)])
