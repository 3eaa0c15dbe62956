"""The training engine: one loop for every method, driven by a small task interface.

    final = run(task, config, workdir)

`run`: the task's batch source -> restore (the run's own checkpoint -> config.init_from -> fresh)
-> the state placed on a ("data", "fsdp") mesh (config.mesh.fsdp; `jaxrecon.train.sharding`)
-> steps on batches split over every device, console progress, metrics.jsonl,
held-out evaluation every config.eval_every steps and Orbax checkpoints of {state, data iterator}
every config.checkpoint_every steps -> the task's final evaluation. The host waits for the device
only every config.log_every steps (and before a checkpoint or an evaluation): every step's
metrics are then checked for non-finite values (an error names the first bad step and term), so
a checkpoint never holds a non-finite state. A call that compiles again after its first time
(train step, evaluation, checkpoint) is logged as a warning: it means a shape, dtype or sharding
changed. Only process 0 logs. A method is a `Task` (jaxrecon.reliev3r, jaxrecon.rewis3d); the
engine knows no model, loss or dataset.

Before any of that, `open_workdir` refuses a config that differs from the one the workdir's
checkpoints were trained with (`jaxrecon.train.resume`) and removes temporary files an earlier,
killed run left; the run's records (config.json) are written only once its state is restored or
created, so a failed or mismatched run leaves the earlier record intact. The checkpoint of a step
is saved before that step's evaluation, so a failing evaluation never costs the step.

Config fields read: steps, log_every, eval_every (0: none), checkpoint_every, keep_checkpoints,
init_from. The run's scene files come from `jaxrecon.train.datasplit.cached_split`.
"""
from __future__ import annotations

import pathlib
import time
from typing import Any, Iterable, Mapping, NamedTuple, Protocol

import grain
import jax
import numpy as np
import optax

from jaxrecon.errors import UserError
from jaxrecon.train import config_check, resume, workdir as run_files
from jaxrecon.train.checkpoint import Checkpointer, restore_or_init
from jaxrecon.train.compiles import CompileCounter
from jaxrecon.train.progress import MetricsLog, Progress, log, timed
from jaxrecon.train.runs import stored_config
from jaxrecon.train.sharding import make_mesh, place_state, shard_batch


class Task(Protocol):
  """What a method gives the engine.

  label: prefix of the run's log lines ("" or e.g. "rewis3d ").
  init_state(): a fresh train state (a pytree of arrays; also traced under jax.eval_shape as the
    restore target, so it must be deterministic in its shapes).
  dataset(): the endless, checkpointable grain dataset of this process's training batches.
  step(state, batch, mesh): (new state, dict of scalar metrics with "grads_finite"); jitted,
    donating the state, which it returns in the layout `sharding.place_state` gives on `mesh`.
  describe(): what the run trains on, for the start line ("N train / M held-out scenes").
  evaluate(state): (scalar metrics, text) on the held-out data, every eval_every steps.
  finish(state, *, ran_last_step, metrics_log): the final evaluation and result of the run;
    ran_last_step says whether this call trained up to config.steps (False on a re-run of a
    finished run).
  """
  label: str

  def init_state(self) -> Any: ...

  def dataset(self) -> grain.IterDataset: ...

  def step(self, state, batch, mesh) -> tuple[Any, Mapping]: ...

  def describe(self) -> str: ...

  def evaluate(self, state) -> tuple[Mapping, str]: ...

  def finish(self, state, *, ran_last_step: bool, metrics_log: MetricsLog) -> Any: ...


def open_workdir(config, workdir, *, safe: Iterable[str] = resume.SAFE_ON_RESUME) -> None:
  """Checks that `config` may continue the run in `workdir` (UserError naming the differing
  fields when its checkpoints were trained with another config) and fits the devices (mesh and
  batch size), then removes the temporary files of writes an earlier run did not finish. Writes
  nothing else; call before building anything."""
  config_check.check_mesh(config)
  workdir = pathlib.Path(workdir)
  if run_files.checkpoint_folders(workdir):
    stored = stored_config(workdir)
    changes = resume.check_resume(None if stored is None else stored.to_dict(),
                                  resume.config_dict(config), workdir, safe=safe)
    if changes:
      log(f"resuming {workdir} with changed settings: {'; '.join(changes)}")
  if jax.process_index() == 0:
    removed = run_files.clean_stray_tmp(workdir)
    if removed:
      log(f"removed {len(removed)} temporary file(s) an interrupted write left: "
          f"{', '.join(str(p.relative_to(workdir)) for p in removed[:5])}")


def make_optimizer(optim: Mapping, steps: int) -> optax.GradientTransformation:
  """Gradient clipping + AdamW with linear warm-up and cosine decay to 1 % over `steps`.

  optim: learning_rate, warmup_steps (in [0, steps)), weight_decay, clip_norm (global norm).
  """
  if not 0 <= optim["warmup_steps"] < steps:
    raise UserError(f"optim.warmup_steps ({optim['warmup_steps']}) must be in [0, steps "
                     f"({steps}))")
  schedule = optax.warmup_cosine_decay_schedule(0.0, optim["learning_rate"],
                                                optim["warmup_steps"], max(steps, 1),
                                                end_value=0.01 * optim["learning_rate"])
  return optax.chain(optax.clip_by_global_norm(optim["clip_norm"]),
                     optax.adamw(schedule, weight_decay=optim["weight_decay"]))


def check_finite(step: int, metrics) -> None:
  """Raises FloatingPointError naming the step and every non-finite term (host-side check)."""
  bad = [name for name, value in metrics.items()
         if name != "grads_finite" and not np.all(np.isfinite(np.asarray(value)))]
  if not bool(np.asarray(metrics.get("grads_finite", True))):
    bad.append("gradients")
  if bad:
    raise FloatingPointError(f"step {step}: non-finite {', '.join(bad)}")


def log_evaluation(task: Task, step: int, scalars: Mapping, text: str,
                   metrics_log: MetricsLog) -> None:
  """The "eval" console line and the eval/ metrics of one held-out evaluation."""
  log(f"{task.label}eval {step:6d}  {text}")
  metrics_log.write(step, scalars, prefix="eval/")


def write_records(records: Mapping[pathlib.Path, str]) -> None:
  """Writes each {path: text} atomically on process 0 (the run's config.json)."""
  if jax.process_index() == 0:
    for path, text in records.items():
      run_files.write_text_atomic(path, text)


class _LoopResult(NamedTuple):
  state: Any
  events: list          # ["train step at step 7", ...]: calls that compiled again


def _read_checked(pending: list) -> Mapping:
  """Reads the (step, device metrics) of `pending` to the host in one transfer, checks each step
  in order (FloatingPointError naming the first non-finite step and term), empties `pending`
  and returns the last step's metrics."""
  host = jax.device_get([metrics for _, metrics in pending])
  for (step, _), metrics in zip(pending, host):
    check_finite(step, metrics)
  pending.clear()
  return host[-1]


def _loop(task: Task, config, state, start_step: int, data_iter, mesh, checkpointer,
          metrics_log: MetricsLog, progress: Progress, compiles: CompileCounter) -> _LoopResult:
  """Steps start_step + 1 .. config.steps of `run`: train, log, checkpoint, evaluate.

  The host reads the metrics only every config.log_every steps and before a checkpoint or an
  evaluation, never once per step: in between, the next step is dispatched while the device
  still runs the last (jax's asynchronous dispatch) and the host prepares the next batch. Every
  step's metrics are still checked, at most log_every steps late, and always before a checkpoint,
  so no non-finite state is ever saved. Each phase (train step, evaluation, checkpoint) may
  compile on its first call; a later call that compiles is reported as an event.
  """
  pending, seen, events = [], set(), []

  def watched(phase, step, fn, *args):
    before = compiles.count
    out = fn(*args)
    if compiles.count > before and phase in seen:
      events.append(f"{phase} at step {step}")
      log(f"{task.label}warning: the {phase} compiled again at step {step} "
          f"({compiles.count - before} compilation(s)): a shape, dtype or sharding changed, "
          f"and each compilation costs as much as the first step")
    seen.add(phase)
    return out

  for step in range(start_step + 1, config.steps + 1):
    first = step == start_step + 1
    if first:  # the first call compiles the step: tens of seconds with nothing else to show
      log(f"{task.label}compiling the train step (first batch) ...")
      began = time.perf_counter()
    state, metrics = watched("train step", step, task.step, state,
                             shard_batch(next(data_iter), mesh), mesh)
    pending.append((step, metrics))
    log_now = step % config.log_every == 0 or step == config.steps
    save_now = step % config.checkpoint_every == 0 or step == config.steps
    # The last step's evaluation is the task's final one (`finish`), after the loop.
    eval_now = config.eval_every and step % config.eval_every == 0 and step != config.steps
    if first or log_now or save_now or eval_now:
      metrics = _read_checked(pending)
    if first:
      log(f"{task.label}compiled and ran step {step} in {time.perf_counter() - began:.1f} s")
      progress.restart(step)
    if log_now:
      log(task.label + progress.line(step, metrics))
      metrics_log.write(step, metrics)
    # Saved before the evaluation of the same step: an evaluation that fails costs no step.
    if save_now:
      watched("checkpoint", step, checkpointer.save, step, state, data_iter)
    if eval_now:
      log_evaluation(task, step, *watched("evaluation", step, task.evaluate, state),
                     metrics_log)
  return _LoopResult(state, events)


def run(task: Task, config, workdir: pathlib.Path, *,
        records: Mapping[pathlib.Path, str] | None = None):
  """Trains (or resumes) `task` in `workdir` (checkpoints/, metrics.jsonl) up to config.steps;
  returns task.finish's result. `records` ({path: text}, e.g. config.json) are written once the
  state is restored or created, never before."""
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  data_iter = iter(task.dataset())
  checkpointer = Checkpointer(workdir / "checkpoints", keep=config.keep_checkpoints)
  try:
    with timed(f"{task.label}train state"):
      state, origin = restore_or_init(checkpointer, task.init_state, data_iterator=data_iter,
                                      init_from=config.init_from or None)
    write_records(records or {})
    mesh = make_mesh(fsdp=config_check.mesh_fsdp(config, jax.local_device_count()))
    state = place_state(state, mesh)
    start_step = int(state.step)
    log(f"{task.label}run {workdir}: {origin}, step {start_step} of {config.steps}, "
        f"{task.describe()}, {jax.device_count()} devices")
    metrics_log = MetricsLog(workdir / "metrics.jsonl", start_step)
    progress = Progress(start_step, config.steps)
    with CompileCounter() as compiles:
      recompiled = _loop(task, config, state, start_step, data_iter, mesh, checkpointer,
                         metrics_log, progress, compiles)
    state = recompiled.state
    if config.steps > start_step + 1:
      log(f"{task.label}compiled again after the first step: "
          f"{'; '.join(recompiled.events) if recompiled.events else 'nothing'}")
    checkpointer.wait()
    final = task.finish(state, ran_last_step=start_step < config.steps, metrics_log=metrics_log)
    metrics_log.close()
    return final
  finally:
    # Lets a pending save complete (so the step it holds is not lost) and stops Orbax's threads
    # before the exception propagates (otherwise they die with pages of "Event loop is closed").
    checkpointer.wait()
    checkpointer.close()
