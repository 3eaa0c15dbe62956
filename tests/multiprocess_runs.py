"""Running a command as several local processes joined by jax.distributed (CPU, gloo): what a
multi-host job does, on one machine.

    results = run_processes(["-m", "jaxrecon.main", ...], num_processes=2, devices_each=4)

Each process gets its own --process_id, the shared --coordinator_address (a free localhost port)
and --num_processes, and `devices_each` virtual CPU devices. A hang fails (every process is
killed after `timeout` seconds) instead of blocking CI, with every process's output in the message.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from typing import Sequence

import portpicker

from main_runs import REPO, command_env


def process_env(devices: int, cache: str | None = None) -> dict:
  """Environment of one CPU process with `devices` virtual devices (main_runs.command_env), with
  jax's persistent compile cache in `cache` or none. Only a cache of the process's own: gloo on
  CPU fails a collective whose processes arrive more than 30 s apart (a fixed rendezvous
  timeout), and a cache hit in one process but a compilation in the other would be such a gap;
  a relaunch of the same processes hits in every one of them."""
  env = command_env(devices)
  for name in ("JAX_COMPILATION_CACHE_DIR", "JAX_SHARE_BINARY_BETWEEN_HOSTS"):
    env.pop(name, None)
  if cache:
    env["JAX_COMPILATION_CACHE_DIR"] = cache
  else:
    env["JAXRECON_COMPILE_CACHE"] = "off"   # nor the commands' default one (jaxrecon.cli)
  return env


def describe(results: Sequence[subprocess.CompletedProcess], tail: int = 3000) -> str:
  """Every process's exit status and the end of its stdout / stderr (for assertion messages)."""
  return "\n".join(f"--- process {i}: exit {r.returncode}\nstdout: {r.stdout[-tail:]}\n"
                   f"stderr: {r.stderr[-tail:]}" for i, r in enumerate(results))


def run_processes(args: Sequence[str], *, num_processes: int, devices_each: int,
                  timeout: float, cache: str | None = None) -> list[subprocess.CompletedProcess]:
  """Runs `python <args> --coordinator_address=... --num_processes=N --process_id=i` for i < N
  from the repository root, at once; returns their results in process order. AssertionError with
  every process's output if they are not all done within `timeout` seconds (all are killed).
  `cache`: a folder whose subfolder process_<i> is process i's persistent compile cache."""
  address = f"localhost:{portpicker.pick_unused_port()}"
  # Output goes to files, not pipes: a process blocked on a full pipe while its peer waits for it
  # in a collective would hang both.
  logs = [(tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+"))
          for _ in range(num_processes)]
  procs = [subprocess.Popen(
      [sys.executable, *args, f"--coordinator_address={address}",
       f"--num_processes={num_processes}", f"--process_id={i}"],
      cwd=REPO, env=process_env(devices_each, cache and f"{cache}/process_{i}"),
      stdout=out, stderr=err, text=True)
      for i, (out, err) in enumerate(logs)]
  deadline = time.monotonic() + timeout
  hung = False
  for proc in procs:
    try:
      proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
      hung = True
      break
  for proc in procs:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  results = []
  for proc, (out, err) in zip(procs, logs):
    out.seek(0)
    err.seek(0)
    results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read()))
    out.close()
    err.close()
  if hung:
    raise AssertionError(f"{num_processes} processes not done in {timeout} s (killed):\n"
                         + describe(results))
  return results
