"""Per-program compiler options: chosen when this XLA knows them, dropped when it does not."""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon import xla_options


def test_the_option_is_known_here_and_an_unknown_one_is_dropped(monkeypatch):
  # jax 0.10-0.12 (the pinned range) know the option; the check must find it.
  assert xla_options.options() == {"xla_cpu_use_fusion_emitters": False}
  monkeypatch.setattr(xla_options, "_LEGACY_FUSION", {"xla_no_such_option_anywhere": True})
  xla_options.options.cache_clear()
  try:
    assert xla_options.options() == {}
  finally:
    monkeypatch.undo()
    xla_options.options.cache_clear()
  assert xla_options.options() == {"xla_cpu_use_fusion_emitters": False}


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
