"""`jit` with XLA compiler options chosen per program, for the programs measured to gain.

XLA:CPU has two code generators for fused elementwise work: the newer fusion emitters (the
default in jax 0.10) and the older LLVM-IR emitters (`xla_cpu_use_fusion_emitters=False`).
Measured on 2 CPU cores, jax 0.10.2, same results:
  - the bundle adjustment's LM program (`fit.bundle.lm_stage`, templeRing): compile 1.14 ->
    0.66 s, its three stages 0.56 -> 0.52 s;
  - a plane-sweep view (`mvs.view_depth`, CamVid 480x360, 48 hypotheses): 2.07 -> 1.73 s,
    320x240: 0.68 -> 0.57 s;
  - a synthetic view (`data.synthetic.render.render_view`, 320x240): compile 11.8 -> 8.6 s, run
    0.58 -> 0.55 s;
  - not everywhere: XFeat's mutual-nearest-neighbour matching 21 -> 31 ms per pair and
    LighterGlue 663 -> 764 ms, so it is not a process-wide flag.
The options are read by XLA:CPU only (other backends ignore them). An XLA that no longer knows
one drops it from `options()`, and the programs compile with its default.

These programs also state XLA's default backend optimisation level (3), so that they keep it when
XLA_FLAGS lowers the level for everything else: the test suite does
(--xla_backend_optimization_level=0, for the tiny models whose cost is compiling them), where the
bundle adjustment, the plane sweeps and the synthetic renderer run long enough that -O0 code
doubled their tests' time (tests/fit/test_fit_cases.py + tests/mvs: 308 -> 566 s on 2 cores; a
rendered 320x240 view 0.58 -> 3.9 s).
"""
from __future__ import annotations

import functools

import jax

_CANDIDATES = ({"xla_cpu_use_fusion_emitters": False}, {"xla_backend_optimization_level": 3})


def _known(option: dict) -> bool:
  try:
    jax.jit(lambda x: x + 1, compiler_options=option).lower(1.0).compile()
  except Exception:  # noqa: BLE001  (an XLA without the option: "No such compile option")
    return False
  return True


@functools.cache
def options() -> dict:
  """The compiler options `jit` passes: XLA:CPU's LLVM-IR fusion emitters and the full backend
  optimisation level, each if this XLA has the option (checked once by compiling a one-operation
  program)."""
  return {k: v for option in _CANDIDATES if _known(option) for k, v in option.items()}


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
