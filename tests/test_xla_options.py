"""Per-program compiler options: chosen when this XLA knows them, dropped when it does not."""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon import xla_options


_WANT = {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 3}


def test_the_options_are_known_here_and_an_unknown_one_is_dropped(monkeypatch):
  # jax 0.10-0.12 (the pinned range) know both options; the check must find them.
  assert xla_options.options() == _WANT
  monkeypatch.setattr(xla_options, "_CANDIDATES", ({"xla_no_such_option_anywhere": True},
                                                   {"xla_backend_optimization_level": 3}))
  xla_options.options.cache_clear()
  try:
    assert xla_options.options() == {"xla_backend_optimization_level": 3}
  finally:
    monkeypatch.undo()
    xla_options.options.cache_clear()
  assert xla_options.options() == _WANT


def test_the_suite_lowers_the_default_that_these_programs_override():
  """conftest lowers XLA's backend optimisation level for the suite (tiny models are
  compile-bound), which is why the runtime-bound programs state level 3 in their options."""
  from jax._src import compiler
  default = compiler.get_compile_options(num_replicas=1, num_partitions=1)
  assert default.executable_build_options.debug_options.xla_backend_optimization_level == 0


def test_jit_with_options_computes_what_jax_jit_computes():
  def f(x, n):
    for _ in range(n):
      x = jnp.sin(x) * 1.5 + jnp.cumsum(x) / x.size
    return x

  ours = functools.partial(xla_options.jit, static_argnames=("n",))(f)
  x = jnp.linspace(-2.0, 2.0, 1000)
  np.testing.assert_allclose(ours(x, n=3), jax.jit(f, static_argnames=("n",))(x, n=3),
                             rtol=1e-6, atol=1e-6)
  assert ours.__name__ == "f"
  text = ours.lower(x, n=2).as_text()
  assert "sine" in text
