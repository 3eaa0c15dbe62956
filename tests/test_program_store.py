"""The program store: same results as jit, a later process loads instead of tracing, keys apart."""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrecon import program_store


class Pair(NamedTuple):
  a: jax.Array
  b: jax.Array


def _program(pair, scale, *, offset, power=2):
  """A small program with a pytree argument, a traced scalar and keyword, and statics."""
  y = jnp.linalg.solve(pair.a @ pair.a.T + jnp.eye(pair.a.shape[0]), pair.b)
  return scale * y ** power + offset, jnp.sum(y)


def _inputs(n=4, seed=0):
  rng = np.random.default_rng(seed)
  return Pair(rng.normal(size=(n, n)).astype(np.float32), rng.normal(size=n).astype(np.float32))


@pytest.fixture
def store(tmp_path, monkeypatch):
  """The store on, in a folder of this test (jax's own cache setting is left alone)."""
  folder = tmp_path / "exported"
  monkeypatch.setattr(program_store, "store_dir", lambda: folder)
  monkeypatch.setattr(program_store, "_PROGRAMS", {})
  return folder


def _files(folder):
  return sorted(folder.glob("*.jaxexport")) if folder.exists() else []


def _same(x, y):
  for u, v in zip(jax.tree.leaves(x), jax.tree.leaves(y)):
    np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def test_off_is_plain_jit(monkeypatch, tmp_path):
  monkeypatch.setattr(program_store, "store_dir", lambda: None)
  out = program_store.call(_program, _inputs(), 1.5, offset=0.25, static={"power": 3})
  want = jax.jit(_program, static_argnames=("power",))(_inputs(), 1.5, offset=0.25, power=3)
  _same(out, want)


def test_without_serialisation_is_plain_jit(store, monkeypatch):
  monkeypatch.setattr(program_store, "_serialisable", lambda: False)
  out = program_store.call(_program, _inputs(), 1.5, offset=0.25)
  _same(out, jax.jit(_program)(_inputs(), 1.5, offset=0.25))
  assert not _files(store)


def test_store_equals_jit_and_loads_in_a_new_process(store, monkeypatch):
  want = jax.jit(_program, static_argnames=("power",))(_inputs(), 1.5, offset=0.25, power=3)
  first = program_store.call(_program, _inputs(), 1.5, offset=0.25, static={"power": 3})
  _same(first, want)
  assert len(_files(store)) == 1
  # A new process: nothing in memory, and exporting is not allowed: the program must be loaded.
  monkeypatch.setattr(program_store, "_PROGRAMS", {})

  def no_export(*args, **kwargs):
    raise AssertionError("traced again instead of loading the stored program")
  monkeypatch.setattr(jax.export, "export", no_export)
  again = program_store.call(_program, _inputs(), 1.5, offset=0.25, static={"power": 3})
  _same(again, want)
  # Other values of the same shapes use the same program.
  other = program_store.call(_program, _inputs(seed=1), -2.0, offset=1.0, static={"power": 3})
  _same(other, jax.jit(_program, static_argnames=("power",))(_inputs(seed=1), -2.0, offset=1.0,
                                                             power=3))
  assert len(_files(store)) == 1


def test_keys_separate_shapes_statics_and_dtypes(store):
  program_store.call(_program, _inputs(4), 1.0, offset=0.0, static={"power": 2})
  program_store.call(_program, _inputs(4), 2.0, offset=1.0, static={"power": 2})   # same key
  assert len(_files(store)) == 1
  program_store.call(_program, _inputs(5), 1.0, offset=0.0, static={"power": 2})   # shape
  program_store.call(_program, _inputs(4), 1.0, offset=0.0, static={"power": 1})   # static
  wide = Pair(*(np.asarray(x, np.int32) for x in _inputs(4)))                        # dtype
  program_store.call(_program, wide, 1.0, offset=0.0, static={"power": 2})
  assert len(_files(store)) == 4


def test_unreadable_file_is_exported_again(store, monkeypatch):
  want = program_store.call(_program, _inputs(), 1.0, offset=0.5)
  (path,) = _files(store)
  path.write_bytes(b"not a program")
  monkeypatch.setattr(program_store, "_PROGRAMS", {})
  _same(program_store.call(_program, _inputs(), 1.0, offset=0.5), want)
  assert program_store._load(path) is not None                  # rewritten, readable


def test_folder_is_trimmed(store, monkeypatch):
  monkeypatch.setattr(program_store, "MAX_FILES", 2)
  for n in (2, 3, 4):
    program_store.call(_program, _inputs(n), 1.0, offset=0.0)
  assert len(_files(store)) == 2


def test_unwritable_folder_still_runs(tmp_path, monkeypatch):
  blocker = tmp_path / "file"
  blocker.write_text("a file where the folder should be")
  monkeypatch.setattr(program_store, "store_dir", lambda: blocker / "exported")
  monkeypatch.setattr(program_store, "_PROGRAMS", {})
  out = program_store.call(_program, _inputs(), 1.0, offset=0.0)
  _same(out, jax.jit(_program)(_inputs(), 1.0, offset=0.0))


def test_on_only_with_the_persistent_cache(tmp_path):
  # Nothing compiles between the updates, so jax's own cache is not started in tmp_path.
  before = jax.config.jax_compilation_cache_dir
  try:
    jax.config.update("jax_compilation_cache_dir", None)
    assert program_store.store_dir() is None
    jax.config.update("jax_compilation_cache_dir", str(tmp_path))
    assert program_store.store_dir() == tmp_path / "exported"
    jax.config.update("jax_compilation_cache_dir", "gs://bucket/cache")
    assert program_store.store_dir() is None
  finally:
    jax.config.update("jax_compilation_cache_dir", before)
