"""LLVM's -O0 for the suite's XLA programs: most tests run tiny models and small geometry programs
once, so compiling them is their cost, not running them (2 cores: the tiny Rewis3d step's gradient
with and without remat 137 -> 90 s; the tiny Rewis3d `jaxrecon.main` run 252 -> 191 s;
tests/losses + tests/geometry + the Reliev3R objective tests 397 -> 320 s). The programs compute
the same functions; the code generator only optimises them less.

The library's long-running programs (bundle adjustment, plane sweeps, the synthetic renderer)
state full optimisation in their own compiler options (jaxrecon.xla_options), which XLA_FLAGS do
not override: under -O0 they doubled the fit and plane-sweep tests' time (308 -> 566 s).

A test that compares two float32 algorithms to rounding (attention kernels) compiles both with
FULL, the code generation users get: -O0 rounds differently (no fused multiply-adds), which moved
one near-cancelling attention output by 1.4e-6 against the reference's.

    os.environ["XLA_FLAGS"] += " " + XLA_FLAGS   # the test process (conftest)
    env["XLA_FLAGS"] = XLA_FLAGS                 # a launched command (main_runs.command_env)
    jax.jit(f, compiler_options=FULL)            # a rounding-level comparison
"""
XLA_FLAGS = "--xla_backend_optimization_level=0"
FULL = {"xla_backend_optimization_level": 3}   # XLA's default level
