"""Test-wide set-up: 8 virtual CPU devices, float64 on demand, a persistent compile cache.

The environment must be set before jax is imported anywhere, so this runs first.
"""
import contextlib
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from compile_bound import XLA_FLAGS as COMPILE_BOUND_XLA_FLAGS  # noqa: E402

os.environ.setdefault("JAX_PLATFORMS", "cpu")
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
  _flags += " --xla_force_host_platform_device_count=8"
# LLVM -O0 for the suite's programs (see compile_bound: compiling is most tests' cost).
if "xla_backend_optimization_level" not in _flags:
  _flags += " " + COMPILE_BOUND_XLA_FLAGS
os.environ["XLA_FLAGS"] = _flags.strip()
# The persistent compile cache is set through the environment so that the commands the end-to-end
# tests launch (python -m jaxrecon.main, ...) and both pytest workers share it: a resumed,
# evaluated or re-run command loads the programs an earlier one compiled. Every program is kept,
# however fast it compiled: a model's eager initialisation is ~70 small programs, each ~0.05-0.3 s
# to compile and ~10 ms to load (measured before models/initializers, at ~150 programs: the Rewis3d
# demo's train states 21 s -> 2.7 s, its whole tiny run 154 s -> 60 s).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      str(pathlib.Path(__file__).resolve().parent.parent / ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from absl import flags  # noqa: E402

# In this process only small programs are left out of the cache again (the environment's 0 above
# is for the launched commands): keying and writing every tiny eager program made the in-process
# tests slower (CI: fit cases 24 -> 28-32 s, point-transformer tests 26 -> 35 s).
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

# grain's multiprocessing reads absl flags; outside absl.app they must be marked as parsed.
if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()

SHARED_DATA = pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "data"


# float64 is off, as for a user, so that a float64 leak in the library shows as a float64 array
# or a dtype error; a test whose reference (or check_grads) needs jax in float64 is marked x64 and
# runs its set-up, body and tear-down with float64 on (numpy references need no marker).
def _x64(item):
  return jax.enable_x64(True) if item.get_closest_marker("x64") else contextlib.nullcontext()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
  with _x64(item):
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
  with _x64(item):
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item):
  with _x64(item):
    return (yield)


def pytest_collection_modifyitems(config, items):
  """The slow tests (minutes each) run first, in their collection order: under `-n 2 --dist
  worksteal` one worker starts on them while the other runs the short tests and then steals from
  the end of the first one's queue, so no long test starts last and leaves a worker idle."""
  items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def shared_data():
  """Path to ../shared/data; skips the test with a message when it is absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f"real data not found at {SHARED_DATA} (see the project README)")
  return SHARED_DATA


def _assert_same_updates(fresh, one, eight, rtol=1e-3):
  """Parameter UPDATES theta_1 - theta_0 of a 1- and an 8-device step agree per leaf: the norm of
  their difference is below rtol times the norm of the update (a relative tolerance per leaf).
  Not per entry: an entry whose gradient is near Adam's eps (1e-8) carries the all-reduce's float32
  summation-order error into its update at up to ~lr / 4 times its relative size (measured worst
  entries: 1.3e-3 of lr for Reliev3R, 1.2e-2 of lr in one SegFormer entry of 4608), while a
  gauge-noise gradient (the defect this guards against) moves whole leaves by +-lr.
  Returns (worst norm ratio, worst entry difference / leaf's largest update)."""
  worst, worst_entry = 0.0, 0.0
  leaves = [jax.tree_util.tree_leaves_with_path(t) for t in (fresh, one, eight)]
  assert len({len(x) for x in leaves}) == 1
  for (path, a0), (_, a1), (_, a8) in zip(*leaves):
    u1 = np.asarray(a1, np.float64) - np.asarray(a0, np.float64)
    u8 = np.asarray(a8, np.float64) - np.asarray(a0, np.float64)
    ratio = np.linalg.norm(u1 - u8) / max(np.linalg.norm(u1), 1e-30)
    worst = max(worst, ratio)
    worst_entry = max(worst_entry, np.max(np.abs(u1 - u8)) / max(np.max(np.abs(u1)), 1e-30))
    name = jax.tree_util.keystr(path)
    assert ratio < rtol, f"{name}: |u1 - u8| / |u1| = {ratio:.3g}"
  print(f"1 vs 8 devices: worst |u1 - u8| / |u1| per leaf {worst:.3g}, worst entry "
        f"{worst_entry:.3g} of its leaf's largest update")
  return worst, worst_entry


@pytest.fixture(scope="session")
def assert_same_updates():
  """The 1-vs-8-device update comparison of both trainers' step tests (a function)."""
  return _assert_same_updates
