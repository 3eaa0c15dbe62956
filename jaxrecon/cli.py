"""How every command (main, prepare, reconstruct, segment) ends on a user's mistake: one line on
stderr that names the file / key / argument and what was expected, and exit status 2.

A traceback is for bugs. Library code raises `jaxrecon.errors.UserError` (or one of the OS errors below, whose
messages already name the path) for an expected failure caused by the input; `run` turns those
into the one line and a non-zero exit, and lets everything else propagate as a traceback.
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


def run(main: Callable[[list[str]], int | None], command: str) -> None:
  """absl's app.run of `main` with the user-error handling of `guarded` and `parse_flags`."""
  app.run(guarded(main, command), flags_parser=parse_flags(command))
