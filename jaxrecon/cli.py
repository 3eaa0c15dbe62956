"""How every command (main, prepare, reconstruct, segment) ends on a user's mistake: one line on
stderr that names the file / key / argument and what was expected, and exit status 2.

A traceback is for bugs. Library code raises `jaxrecon.errors.UserError` (or one of the OS errors
below, whose messages already name the path) for an expected failure caused by the input; `run`
turns those into the one line and a non-zero exit, and lets everything else propagate as a
traceback.
`--verbose` (or JAXRECON_VERBOSE=1) shows the traceback of user errors too, for bug reports.
Bad flags end the same way, including ml_collections' `--config.<field>=...` overrides, which are
parsed with the flags, before main runs (a typo gets the "did you mean" of the locked config).

    from jaxrecon import cli
    if __name__ == "__main__":
      cli.run(main, "reconstruct")
"""
from __future__ import annotations

import os
import re
import sys
from typing import Callable

from absl import app, flags

from jaxrecon.errors import UserError

_VERBOSE = flags.DEFINE_bool("verbose", False, "show the full traceback of errors caused by input")


# Expected failures: bad input the user can fix (the OS errors' messages name the path).
# Everything else is a bug and keeps its traceback.
USER_ERRORS = (UserError, FileNotFoundError, FileExistsError, PermissionError, NotADirectoryError,
               IsADirectoryError)


def error_line(command: str, error: BaseException) -> str:
  """The one line printed for a user error: `<command>: error: <message>` (message on one line)."""
  message = " ".join(str(error).split()) or type(error).__name__
  if isinstance(error, OSError) and error.filename and str(error.filename) not in message:
    message = f"{error.filename}: {message}"
  return f"{command}: error: {message}"


def _verbose() -> bool:
  if os.environ.get("JAXRECON_VERBOSE", "") not in ("", "0"):
    return True
  return bool(flags.FLAGS.is_parsed() and _VERBOSE.value)


def guarded(main: Callable[[list[str]], int | None], command: str) -> Callable:
  """`main` (an absl main(argv)) with user errors turned into one stderr line and exit status 2."""
  def wrapped(argv):
    try:
      return main(argv)
    except USER_ERRORS as error:
      if _verbose():
        raise
      print(error_line(command, error), file=sys.stderr)
      return 2
  return wrapped


# What flag parsing raises on bad input: absl's flags.Error, and from config_flags' overrides
# AttributeError / KeyError (no such field: a locked ConfigDict), ValueError / TypeError (value).
FLAG_ERRORS = (flags.Error, AttributeError, KeyError, ValueError, TypeError, OSError)
_NO_FIELD = re.compile(r"""^'([^']*)'(?:\s*Did you mean "([^"]+)")?""")


def flag_message(error: BaseException, argv: list[str]) -> str:
  """The message of a flag-parsing error, on one line, naming the flag."""
  inner = error.args[0] if error.args and isinstance(error.args[0], BaseException) else error
  text = str(inner.args[0]) if isinstance(inner, KeyError) and inner.args else str(inner)
  if "Traceback (most recent call last)" in text:   # an error raised by the config file itself
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    text = f"{text.split(': ', 1)[0]}: {lines[-1]}"
  match = _NO_FIELD.match(text)
  if isinstance(inner, KeyError) and match:
    field, suggestion = match.groups()
    names = [a.split("=", 1)[0] for a in argv[1:]]
    flag = next((n for n in names if n.endswith("." + field)), field)
    hint = f'; did you mean "{suggestion}"?' if suggestion else ""
    text = f"{flag}: the config has no field {field!r}{hint}"
  return text


def parse_flags(command: str) -> Callable[[list[str]], list[str]]:
  """A flags parser for app.run: bad flags end in one stderr line and exit status 2."""
  def parse(argv):
    try:
      return flags.FLAGS(argv)
    except FLAG_ERRORS as error:
      if "--verbose" in argv or os.environ.get("JAXRECON_VERBOSE", "") not in ("", "0"):
        raise
      print(error_line(command, UserError(flag_message(error, argv))), file=sys.stderr)
      sys.exit(2)
  return parse


# Every program is kept, however fast it compiled: a model's eager initialisation is still ~70
# small programs (models/initializers), each ~0.05-0.3 s to compile and ~10 ms to load.
_CACHE_MIN_COMPILE_SECONDS = 0.0
_CACHE_MAX_BYTES = 2 * 2 ** 30


def compile_cache_dir() -> str | None:
  """Where the commands keep compiled XLA programs across runs, or None (off).

  JAX_COMPILATION_CACHE_DIR, when set, is jax's own setting and wins (with the user's other jax
  cache settings, untouched). Otherwise JAXRECON_COMPILE_CACHE names the folder ("off" or "0"
  turns the cache off), by default $XDG_CACHE_HOME/jaxrecon/xla (~/.cache/jaxrecon/xla).
  """
  if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return os.environ["JAX_COMPILATION_CACHE_DIR"]
  choice = os.environ.get("JAXRECON_COMPILE_CACHE", "")
  if choice.lower() in ("off", "0", "none", "false"):
    return None
  if choice:
    return choice
  home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(home, "jaxrecon", "xla")


def _multiprocess() -> bool:
  """Whether the parsed flags (`jaxrecon.train.multihost`'s, where defined) start several
  processes."""
  values = {name: flags.FLAGS[name].value for name in
            ("coordinator_address", "num_processes", "distributed") if name in flags.FLAGS}
  return bool(values.get("coordinator_address") or (values.get("num_processes") or 1) > 1
              or values.get("distributed") or os.environ.get("JAX_COORDINATOR_ADDRESS"))


def use_compile_cache(multiprocess: bool = False) -> str | None:
  """Turns on jax's persistent compilation cache for a command (see `compile_cache_dir`).

  A second run on inputs of the same shapes loads its programs instead of compiling them: the
  per-scene fit of templeRing spends 1.2 of its 4.2 s compiling on 2 CPU cores, a train step of
  the paper configs tens of seconds. The fit pads its problem to size buckets (`fit.buckets`), so
  other scenes of a similar size load its program too, and `jaxrecon.program_store` keeps the
  fit's lowered programs beside it, so they are not traced again. Least recently used entries
  go beyond 2 GiB. A multi-process run gets the default folder only when one is named
  (JAXRECON_COMPILE_CACHE or JAX_COMPILATION_CACHE_DIR): on CPU, gloo fails a collective whose
  processes arrive more than 30 s apart, which a cache hit in one process and a compilation in
  another can cause. Returns the folder, or None when off.
  """
  import jax  # here, not at import: `cli` is imported by the commands before jax is configured
  if multiprocess and not os.environ.get("JAXRECON_COMPILE_CACHE"):
    return os.environ.get("JAX_COMPILATION_CACHE_DIR") or None
  folder = compile_cache_dir()
  if folder is None or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return folder
  jax.config.update("jax_compilation_cache_dir", folder)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", _CACHE_MIN_COMPILE_SECONDS)
  jax.config.update("jax_compilation_cache_max_size", _CACHE_MAX_BYTES)
  # jax decides once, at its first compilation, whether a cache is in use; a command's imports may
  # already have compiled something (module-level constants), so that decision is taken again.
  from jax.experimental.compilation_cache import compilation_cache
  compilation_cache.reset_cache()
  return folder


def run(main: Callable[[list[str]], int | None], command: str) -> None:
  """absl's app.run of `main` with the user-error handling of `guarded` and `parse_flags`, and
  the persistent compilation cache of `use_compile_cache` (turned on once the flags are parsed)."""
  def cached(argv):
    use_compile_cache(multiprocess=_multiprocess())
    return main(argv)
  app.run(guarded(cached, command), flags_parser=parse_flags(command))
