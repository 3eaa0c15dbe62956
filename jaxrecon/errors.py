"""`UserError`: the one exception type for expected failures caused by the user's input.

Library code (readers, configs, commands) raises it with a message that is the whole report: it
names the file / config key / argument and says what was expected. The commands turn it into one
stderr line and exit status 2 (`jaxrecon.cli`); anything else is a bug and keeps its traceback.
This module imports nothing, so every layer may raise it.
"""


class UserError(ValueError):
  """An expected failure caused by the input. Subclasses ValueError so callers that guard library
  calls with `except ValueError` keep working."""
