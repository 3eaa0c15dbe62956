"""LLVM's -O0 for the suite's XLA programs: most tests run tiny models and small geometry programs
once, so compiling them is their cost, not running them (2 cores: the tiny Rewis3d step's gradient
with and without remat 137 -> 90 s; the tiny Rewis3d `jaxrecon.main` run 252 -> 191 s;
tests/losses + tests/geometry + the Reliev3R objective tests 397 -> 320 s). The programs compute
the same functions; the code generator only optimises them less.

The library's long-running programs (bundle adjustment, plane sweeps, the synthetic renderer)
state full optimisation in their own compiler options (jaxrecon.xla_options), which XLA_FLAGS do
not override: under -O0 they doubled the fit and plane-sweep tests' time (308 -> 566 s).

    os.environ["XLA_FLAGS"] += " " + XLA_FLAGS   # the test process (conftest)
    env["XLA_FLAGS"] = XLA_FLAGS                 # a launched command (main_runs.command_env)
"""
XLA_FLAGS = "--xla_backend_optimization_level=0"
