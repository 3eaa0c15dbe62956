"""jaxrecon.cli: user errors end in one stderr line and exit status 2; bugs keep their traceback;
the commands' persistent compilation cache."""
import warnings

import pytest

from jaxrecon import cli
from jaxrecon.errors import UserError


def test_user_error_is_one_line_and_status_2(capsys):
  def main(argv):
    raise UserError("config.steps: expected a positive integer,\n got -3")
  assert cli.guarded(main, "main")(["main"]) == 2
  err = capsys.readouterr().err
  assert err == "main: error: config.steps: expected a positive integer, got -3\n"


def test_os_error_names_the_path(capsys):
  def main(argv):
    open("/nonexistent/folder/x.json")
  assert cli.guarded(main, "prepare")(["prepare"]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "/nonexistent/folder/x.json" in err and "prepare: error:" in err


def test_bug_keeps_its_traceback():
  def main(argv):
    raise KeyError("depth")
  with pytest.raises(KeyError):
    cli.guarded(main, "main")(["main"])


def test_verbose_environment_reraises(monkeypatch):
  monkeypatch.setenv("JAXRECON_VERBOSE", "1")
  def main(argv):
    raise UserError("bad")
  with pytest.raises(UserError):
    cli.guarded(main, "main")(["main"])


def test_flag_errors_are_one_line_naming_the_flag():
  # What ml_collections' config_flags raises for --config.stpes=10 on a locked config.
  typo = AttributeError(KeyError("'stpes'\nDid you mean \"steps\" instead of \"stpes\"?"))
  argv = ["main", "--config=configs/reliev3r.py", "--config.stpes=10"]
  assert cli.flag_message(typo, argv) == \
      "--config.stpes: the config has no field 'stpes'; did you mean \"steps\"?"
  nothing_close = AttributeError(KeyError("'zzz'"))
  assert cli.flag_message(nothing_close, ["main", "--config.model.zzz=1"]) == \
      "--config.model.zzz: the config has no field 'zzz'"
  from_the_file = ValueError("flag --config=c.py:bogus: Error whilst parsing config file:\n\n"
                             "Traceback (most recent call last):\n  File \"c.py\", line 3\n"
                             "ValueError: c.py: variant must be one of ('demo',)")
  assert cli.flag_message(from_the_file, ["main"]) == \
      "flag --config=c.py:bogus: ValueError: c.py: variant must be one of ('demo',)"


def test_compile_cache_folder_follows_the_environment(monkeypatch, tmp_path):
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
  monkeypatch.delenv("JAXRECON_COMPILE_CACHE", raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert cli.compile_cache_dir() == str(tmp_path / "xdg" / "jaxrecon" / "xla")
  monkeypatch.setenv("JAXRECON_COMPILE_CACHE", str(tmp_path / "mine"))
  assert cli.compile_cache_dir() == str(tmp_path / "mine")
  monkeypatch.setenv("JAXRECON_COMPILE_CACHE", "off")
  assert cli.compile_cache_dir() is None
  # jax's own variable wins, and the command then leaves jax's settings as the user made them.
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax"))
  assert cli.compile_cache_dir() == str(tmp_path / "jax")


def test_commands_keep_compiled_programs_on_disk(monkeypatch, tmp_path):
  # What `run` does before a command: a jitted program lands in the folder (jax needs filelock
  # for the size bound, a dependency), and a fresh in-memory cache loads it instead of compiling.
  import jax
  import jax.numpy as jnp
  from jax.experimental.compilation_cache import compilation_cache
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
  monkeypatch.setenv("JAXRECON_COMPILE_CACHE", str(tmp_path / "xla"))
  hits = []

  def on_event(event, **kwargs):
    if event == "/jax/compilation_cache/cache_hits":
      hits.append(event)

  names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
           "jax_compilation_cache_max_size")
  old = {name: getattr(jax.config, name) for name in names}
  jax.monitoring.register_event_listener(on_event)
  try:
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always")
      assert cli.use_compile_cache() == str(tmp_path / "xla")
      x = jnp.arange(5.0)
      jax.block_until_ready(jax.jit(lambda v: jnp.cos(v) * 7.0 - 0.5)(x))
      entries = [p.name for p in (tmp_path / "xla").iterdir() if p.name.endswith("-cache")]
      jax.clear_caches()
      jax.block_until_ready(jax.jit(lambda v: jnp.cos(v) * 7.0 - 0.5)(x))
  finally:
    jax.monitoring.unregister_event_listener(on_event)
    for name, value in old.items():
      jax.config.update(name, value)
    compilation_cache.reset_cache()
  assert not [w for w in caught if "compilation cache" in str(w.message)]
  assert any(name.startswith("jit__lambda") for name in entries)
  assert hits, "the second compilation was not served from the folder"


def test_multiprocess_commands_use_a_cache_only_when_named(monkeypatch, tmp_path):
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
  monkeypatch.delenv("JAXRECON_COMPILE_CACHE", raising=False)
  assert cli.use_compile_cache(multiprocess=True) is None
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax"))
  assert cli.use_compile_cache(multiprocess=True) == str(tmp_path / "jax")
