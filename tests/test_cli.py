"""jaxrecon.cli: user errors end in one stderr line and exit status 2; bugs keep their traceback."""
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
