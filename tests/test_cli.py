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
