"""Test-wide set-up: 8 virtual CPU devices, float64 on demand, a persistent compile cache.

The environment must be set before jax is imported anywhere, so this runs first.
"""
import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
  os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()

import jax  # noqa: E402
import pytest  # noqa: E402
from absl import flags  # noqa: E402

# float64 is needed for the reference computations and check_grads; every library function is
# tested in float32 explicitly where float32 accuracy is the claim.
jax.config.update("jax_enable_x64", True)
_CACHE = pathlib.Path(__file__).resolve().parent.parent / ".jax_cache"
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

# grain's multiprocessing reads absl flags; outside absl.app they must be marked as parsed.
if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()

SHARED_DATA = pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data():
  """Path to ../shared/data; skips the test with a message when it is absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f"real data not found at {SHARED_DATA} (see the project README)")
  return SHARED_DATA
