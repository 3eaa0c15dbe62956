"""How every command (main, prepare, reconstruct, segment) ends on a user's mistake: one line on
stderr that names the file / key / argument and what was expected, and exit status 2.

A traceback is for bugs. Library code raises `jaxrecon.errors.UserError` (or one of the OS errors below, whose
messages already name the path) for an expected failure caused by the input; `run` turns those
into the one line and a non-zero exit, and lets everything else propagate as a traceback.
`--verbose` (or JAXRECON_VERBOSE=1) shows the traceback of user errors too, for bug reports.

    from jaxrecon import cli
    if __name__ == "__main__":
      cli.run(main, "reconstruct")
"""
from __future__ import annotations

import os
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


def run(main: Callable[[list[str]], int | None], command: str) -> None:
  """absl's app.run of `main` with the user-error handling of `guarded`."""
  app.run(guarded(main, command))
