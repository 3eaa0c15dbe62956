"""Exported programs kept beside the persistent compilation cache: a new process skips tracing.

jax's persistent compilation cache (`jaxrecon.cli.use_compile_cache`) saves XLA's compile of a
program seen before, but every process still traces the Python function to a jaxpr and lowers it
to StableHLO to compute the cache key: for the fit's LM program (`fit.bundle.lm_stage`) tracing
is about 0.2 s on 2 CPU cores, and skipping it cut a warm 8-view run of tracking + fit by 27 %
(experiments/bench_fit_store.md). `call` keeps the lowered program
(`jax.export`: StableHLO in a versioned flatbuffer, no pickle) in `<cache dir>/exported/`, one
file per key, and a later process deserialises it (milliseconds) and compiles it through jit,
where the persistent cache serves XLA's executable.

The key: the source of the function's module (and of any `modules` named), the static
arguments, the pytree structure and the shapes and dtypes of the traced arguments, the jax and
jaxlib versions, the backend, the compiler options and the jax settings that change a trace
(float64, matmul precision, dtype and rank promotion). A program that calls code outside its
module must name those modules, or an edit there would not change the key. An unreadable or
stale file is exported again. The store is on exactly when jax's persistent cache is
(`jax_compilation_cache_dir` set to a local folder) and jax.export can serialise (flatbuffers
installed); otherwise `call` is the plain jit call. At most `MAX_FILES` programs are kept (the
least recently written go).
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import pathlib
import sys
import tempfile
from typing import Any, Callable, Iterable, Mapping

import jax
import numpy as np

MAX_FILES = 256
_SUFFIX = ".jaxexport"
_TRACE_SETTINGS = ("jax_enable_x64", "jax_default_matmul_precision", "jax_numpy_dtype_promotion",
                   "jax_numpy_rank_promotion")


@functools.cache
def _source_hash(module_name: str) -> str:
  """sha256 of a module's source file (its name where the source cannot be read)."""
  path = getattr(sys.modules[module_name], "__file__", None)
  data = pathlib.Path(path).read_bytes() if path else module_name.encode()
  return hashlib.sha256(data).hexdigest()


@functools.cache
def _serialisable() -> bool:
  """Whether jax.export can serialise here (it needs the flatbuffers package, a dependency of
  jaxrecon that a machine with a preinstalled jax and no network may lack)."""
  return importlib.util.find_spec("flatbuffers") is not None


def store_dir() -> pathlib.Path | None:
  """`<jax_compilation_cache_dir>/exported`, or None when jax's persistent cache is off or not
  a local folder (a gs:// cache keeps the plain path)."""
  base = jax.config.jax_compilation_cache_dir
  return pathlib.Path(base) / "exported" if base and "://" not in str(base) else None


def _key(fun: Callable, leaves: list, tree, static: Mapping[str, Any], modules: Iterable[str],
         compiler_options: Mapping[str, Any]) -> str:
  import jaxlib
  parts = [fun.__module__, fun.__qualname__,
           *(_source_hash(m) for m in (fun.__module__, *modules)),
           repr(sorted(static.items())), str(tree),
           repr([(x.shape, str(x.dtype)) for x in leaves]),
           jax.__version__, jaxlib.__version__, jax.default_backend(),
           repr(sorted(compiler_options.items())),
           # The settings that change what a trace produces.
           *(repr(getattr(jax.config, name, None)) for name in _TRACE_SETTINGS)]
  return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _load(path: pathlib.Path):
  """The deserialised program at `path`, or None (missing or unreadable)."""
  try:
    return jax.export.deserialize(bytearray(path.read_bytes()))
  except Exception:  # noqa: BLE001  (missing, truncated, or from an incompatible jax)
    return None


def _save(folder: pathlib.Path, path: pathlib.Path, exported) -> None:
  """Writes atomically (several processes may store the same program), then trims the folder to
  MAX_FILES. A folder that cannot be written leaves the program unsaved, not the call failed."""
  try:
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".tmp", delete=False) as f:
      f.write(exported.serialize())
    try:
      os.replace(f.name, path)
    finally:
      pathlib.Path(f.name).unlink(missing_ok=True)
    files = sorted(folder.glob(f"*{_SUFFIX}"), key=lambda p: p.stat().st_mtime)
    for old in files[:max(0, len(files) - MAX_FILES)]:
      old.unlink(missing_ok=True)
  except OSError:
    pass


_PROGRAMS: dict[str, Callable] = {}   # key -> this process's jitted program


def _program(fun, key: str, tree, avals: tuple, static: Mapping[str, Any],
             compiler_options: Mapping[str, Any]) -> Callable:
  """The jitted program of one key in this process: loaded from the store, or exported (and
  stored) from `fun`."""
  if key in _PROGRAMS:
    return _PROGRAMS[key]
  folder = store_dir()
  path = folder / f"{key}{_SUFFIX}"
  exported = _load(path)
  if exported is None:
    def flat(*leaves):
      args, kwargs = jax.tree.unflatten(tree, leaves)
      return fun(*args, **kwargs, **static)
    exported = jax.export.export(jax.jit(flat))(*avals)
    _save(folder, path, exported)
  _PROGRAMS[key] = jax.jit(exported.call, compiler_options=dict(compiler_options) or None)
  return _PROGRAMS[key]


def call(fun: Callable, *args, static: Mapping[str, Any] | None = None,
         modules: Iterable[str] = (), compiler_options: Mapping[str, Any] | None = None,
         **kwargs):
  """`jax.jit(fun, static_argnames=static, compiler_options=...)(*args, **kwargs, **static)`,
  through the store when it is on (see the module docstring).

  Args:
    fun: the Python function (not jitted); args, kwargs: its traced arguments (arrays, scalars,
      pytrees of them: each leaf becomes an array of its canonical dtype); static: its static
      keyword arguments (hashable); modules: names of other modules whose code the program runs;
      compiler_options: XLA compiler options of the program.
  """
  static = dict(static or {})
  options = dict(compiler_options or {})
  if store_dir() is None or not _serialisable():
    jitted = _plain(fun, tuple(static), tuple(sorted(options.items())))
    return jitted(*args, **kwargs, **static)
  leaves, tree = jax.tree.flatten((args, kwargs))
  leaves = [np.asarray(x) for x in leaves]
  leaves = [x.astype(jax.dtypes.canonicalize_dtype(x.dtype), copy=False) for x in leaves]
  avals = tuple(jax.ShapeDtypeStruct(x.shape, x.dtype) for x in leaves)
  key = _key(fun, leaves, tree, static, tuple(modules), options)
  program = _program(fun, key, tree, avals, static, options)
  return program(*leaves)


@functools.lru_cache(maxsize=64)
def _plain(fun, static_names: tuple, compiler_options: tuple) -> Callable:
  return jax.jit(fun, static_argnames=static_names,
                 compiler_options=dict(compiler_options) or None)
