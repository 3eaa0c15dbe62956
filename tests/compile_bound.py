"""LLVM's -O0 for the XLA programs of tests whose cost is compiling them, not running them: tiny
models through a whole train step (compiling the tiny Rewis3d step's gradient with and without
remat: 137 -> 90 s on 2 cores; the tiny Rewis3d `jaxrecon.main` run: 252 -> 191 s). Not test-wide:
the fit and plane-sweep tests run their programs long enough that -O0 code doubles their time
(tests/fit/test_fit_cases.py + tests/mvs: 308 -> 566 s). The programs compute the same functions;
the code generator only optimises them less.

    compiled = step.lower(state, batch, **static).compile(OPTIONS)
    fn = jax.jit(f, compiler_options=OPTIONS)
    env["XLA_FLAGS"] = XLA_FLAGS        # a launched command (main_runs.command_env)
"""
OPTIONS = {"xla_backend_optimization_level": 0}
XLA_FLAGS = "--xla_backend_optimization_level=0"
