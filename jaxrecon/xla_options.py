"""`jit` with XLA compiler options chosen per program, for the programs measured to gain.

XLA:CPU has two code generators for fused elementwise work: the newer fusion emitters (the
default in jax 0.10) and the older LLVM-IR emitters (`xla_cpu_use_fusion_emitters=False`).
Measured on 2 CPU cores, jax 0.10.2, same results:
  - the bundle adjustment's LM program (`fit.bundle.lm_stage`, templeRing): compile 1.14 ->
    0.66 s, its three stages 0.56 -> 0.52 s;
  - a plane-sweep view (`mvs.view_depth`, CamVid 480x360, 48 hypotheses): 2.07 -> 1.73 s,
    320x240: 0.68 -> 0.57 s;
  - not everywhere: XFeat's mutual-nearest-neighbour matching 21 -> 31 ms per pair and
    LighterGlue 663 -> 764 ms, so it is not a process-wide flag.
The option is read by XLA:CPU only (other backends ignore it). An XLA that no longer knows it
makes `options()` empty, and the programs compile with the defaults.
"""
from __future__ import annotations

import functools

import jax

_LEGACY_FUSION = {"xla_cpu_use_fusion_emitters": False}


@functools.cache
def options() -> dict:
  """The compiler options `jit` passes: XLA:CPU's LLVM-IR fusion emitters, if this XLA has the
  option (checked once by compiling a one-operation program), else {}."""
  try:
    jax.jit(lambda x: x + 1, compiler_options=_LEGACY_FUSION).lower(1.0).compile()
  except Exception:  # noqa: BLE001  (an XLA without the option: "No such compile option")
    return {}
  return dict(_LEGACY_FUSION)


class _Jit:
  """A `jax.jit` built on first use (the options need a backend, which importing must not
  start)."""

  def __init__(self, fun, kwargs):
    self._fun, self._kwargs = fun, kwargs
    functools.update_wrapper(self, fun)

  @functools.cached_property
  def jitted(self):
    return jax.jit(self._fun, compiler_options=options(), **self._kwargs)

  def __call__(self, *args, **kwargs):
    return self.jitted(*args, **kwargs)

  def lower(self, *args, **kwargs):
    return self.jitted.lower(*args, **kwargs)


def jit(fun=None, **kwargs):
  """`jax.jit(fun, **kwargs)` compiled with `options()`; usable as a decorator, also as
  `functools.partial(jit, static_argnames=...)`."""
  if fun is None:
    return functools.partial(jit, **kwargs)
  return _Jit(fun, kwargs)
