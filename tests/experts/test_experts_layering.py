"""jaxrecon.experts sits below jaxrecon.data: it must not import data, losses, models or train."""
import subprocess
import sys


def test_experts_import_no_higher_layer():
  code = ("import sys, jaxrecon.experts; "
          "bad = sorted(m for m in sys.modules if m.startswith(('jaxrecon.data', 'jaxrecon.models', "
          "'jaxrecon.train', 'jaxrecon.losses'))); print(bad); sys.exit(1 if bad else 0)")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stdout + result.stderr
