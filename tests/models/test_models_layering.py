"""jaxrecon.models may import geometry only: never losses, data, experts, fit, evaluate or train."""
import subprocess
import sys


def test_models_import_no_forbidden_layer():
  code = ("import sys, jaxrecon.models; "
          "bad = sorted(m for m in sys.modules if m.startswith(('jaxrecon.data', 'jaxrecon.losses', "
          "'jaxrecon.experts', 'jaxrecon.train', 'jaxrecon.fit', 'jaxrecon.evaluate'))); "
          "print(bad); sys.exit(1 if bad else 0)")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stdout + result.stderr
