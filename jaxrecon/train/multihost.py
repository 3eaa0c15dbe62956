"""Several processes (hosts) running one command: connecting them and sharing work among them.

    FLAGS = multihost.define_flags()             # at a command module's top level
    multihost.initialize_from_flags(FLAGS)       # in main(), before any jax computation
    mine = multihost.share(jobs)                 # this process's part of a job list
    multihost.barrier("cache written")           # every process gets here before any goes on
    failed = multihost.total(len(my_failures))   # a count summed over the processes

Started on every host with the same flags plus its own --process_id (or under a cluster manager
that jax.distributed detects: SLURM, Open MPI, a Cloud TPU pod; pass --distributed there), the
processes connect through the coordinator (process 0's address and a free port) and then see all
devices of all hosts as one jax.devices(). On CPU, cross-process collectives use gloo (jax's
default, set explicitly unless JAX_CPU_COLLECTIVES_IMPLEMENTATION chooses another). Without any
of these flags a command runs as the single process it is, and every function here is a no-op.
"""
from __future__ import annotations

import itertools
import os
from typing import Sequence, TypeVar

import jax
import orbax.checkpoint as ocp
from absl import flags

from jaxrecon.errors import UserError

T = TypeVar("T")


def define_flags() -> dict:
  """Defines the multi-process flags of a command (call once, at its module's top level);
  returns their holders for `initialize_from_flags`."""
  return {
      "coordinator_address": flags.DEFINE_string(
          "coordinator_address", None, "multi-process: host:port of process 0's coordinator "
          "(the same on every process; also JAX_COORDINATOR_ADDRESS)"),
      "num_processes": flags.DEFINE_integer(
          "num_processes", None, "multi-process: how many processes run this command"),
      "process_id": flags.DEFINE_integer(
          "process_id", None, "multi-process: this process's index in [0, num_processes)"),
      "distributed": flags.DEFINE_bool(
          "distributed", False, "multi-process: call jax.distributed.initialize() and let it "
          "detect the cluster (SLURM, Open MPI, Cloud TPU) for what the flags above leave unset"),
  }


def initialize_from_flags(holders: dict) -> bool:
  """`initialize` with the values of `define_flags`' flags."""
  return initialize(**{name: holder.value for name, holder in holders.items()})


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, distributed: bool = False) -> bool:
  """Connects this process to the others (jax.distributed.initialize) when any multi-process
  setting is given (or JAX_COORDINATOR_ADDRESS is set); returns whether it did. Call before any
  jax computation. UserError for an incomplete or inconsistent set of settings."""
  explicit = {"coordinator_address": coordinator_address, "num_processes": num_processes,
              "process_id": process_id}
  given = {k: v for k, v in explicit.items() if v is not None}
  if not (given or distributed or os.environ.get("JAX_COORDINATOR_ADDRESS")):
    return False
  if given and not distributed and len(given) < len(explicit):
    missing = ", ".join(f"--{k}" for k in explicit if k not in given)
    raise UserError(f"multi-process run: {missing} not set (give --coordinator_address, "
                    f"--num_processes and --process_id, or --distributed on a cluster that "
                    f"jax.distributed detects)")
  if num_processes is not None and num_processes < 1:
    raise UserError(f"--num_processes={num_processes}: must be >= 1")
  if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
    raise UserError(f"--process_id={process_id}: must be in [0, --num_processes="
                    f"{num_processes})")
  if not os.environ.get("JAX_CPU_COLLECTIVES_IMPLEMENTATION"):
    # Without a cross-process implementation, a CPU computation over several processes' devices
    # fails at run time; gloo (TCP) needs nothing installed.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)
  return True


def share(items: Sequence[T], process_index: int | None = None,
          process_count: int | None = None) -> list[T]:
  """This process's part of `items` (every process_count-th one, from its index): the parts of
  all processes are disjoint and together hold every item once. Every process must pass the
  same sequence in the same order."""
  index = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  if not 0 <= index < count:
    raise ValueError(f"process_index {index} not in [0, {count})")
  return list(items)[index::count]


# Waiting for other processes goes through the coordination service (jax.distributed's key-value
# store), not a collective computation: gloo on CPU gives up on a collective whose processes
# arrive more than 30 s apart (its rendezvous timeout is fixed), while one process may build its
# share of a cache for minutes longer than another. The calls are numbered so that the n-th
# barrier of every process is the same one (all processes call them in the same order).
WAIT_S = 24 * 3600   # how long a process waits for the others (a dead one ends the job sooner)
_calls = itertools.count()


def _client():
  return ocp.multihost.get_jax_distributed_client()


def barrier(name: str, timeout_s: int = WAIT_S) -> None:
  """Returns once every process has called barrier(name) (nothing to wait for with one)."""
  if jax.process_count() > 1:
    _client().wait_at_barrier(f"jaxrecon/{next(_calls)}/{name}", timeout_s * 1000)


def total(count: int, name: str = "total", timeout_s: int = WAIT_S) -> int:
  """The sum of `count` over all processes; waits for every process to call it (a barrier)."""
  if jax.process_count() == 1:
    return int(count)
  client, key = _client(), f"jaxrecon/{next(_calls)}/{name}"
  client.key_value_set(f"{key}/{jax.process_index()}", str(int(count)))
  return sum(int(client.blocking_key_value_get(f"{key}/{i}", timeout_s * 1000))
             for i in range(jax.process_count()))
