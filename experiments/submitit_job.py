"""What a submitit job runs: one resolved run config, with distributed setup and requeue on preemption.

Why a small Checkpointable class and not a bare function: submitit only requeues callables that can
checkpoint. On preemption or time-out submitit sends SIGUSR2 and calls `checkpoint()` *inside the
signal handler*, then requeues the job (`scontrol requeue`; the local executor restarts the process)
and exits. Our `checkpoint()` asks the training loop's registered saver to write `last.pt` now
(`experiments.preemption.save_now()`) and returns a fresh RunJob with the same arguments; the rerun
resumes from `last.pt` because `execute(..., resume=True)` always does. A signal that lands inside a
training step is deferred (`preemption.defer_in_step`): the loop finishes the step, saves and raises
`Preempted`, and `__call__` raises the signal again, now between steps, so the state saved is never
half a step (experiments.resumable). Under DDP the saver declines (no collectives in a handler) and
the previous `last.pt` stays.

Caveat (submitit issue #9): only global rank 0 receives `checkpoint()`. Other ranks are simply killed
by the requeue, so anything they must keep has to be in rank 0's `last.pt` (the training loop gathers
every rank's RNG state into it at step boundaries).

Forked children (DataLoader workers, data pools) must stay out of this: Slurm signals every process of
the job step (`scancel --signal`, `--signal=USR2@...`, preemption's SIGTERM), and a fork inherits the
job's Python handlers, so a worker got submitit's USR2 handler (it would call checkpoint() from a stale
copy of the training state and requeue the job a second time) and died of SIGTERM (torch's worker
handler re-raises it), which made the main process raise "DataLoader worker ... killed by signal" in
the middle of the checkpoint + requeue and record the job as failed. `preemption.shield_forked_children()`
therefore makes every child the job forks ignore USR1/USR2 and ignore SIGTERM unless its parent sends
it (multiprocessing's terminate(), as torch's own worker handler distinguishes).

A user-requested clean stop also works: `scancel --signal=USR1 <job>` sets the stop flag, the loop
saves at the next step boundary on every rank and raises `Preempted`; rank 0 then raises submitit's
own preemption signal on itself, which goes through the same checkpoint + requeue path as above.

The job receives a plain dict (not a RunConfig) and validates it again here: the pickle then holds only
builtins, so a job unpickled from a code snapshot never depends on class layouts of the launching tree.
The function it calls is a "module:function" string resolved inside the job (from the snapshot), so
tests can inject fake targets and the default stays `experiments.run:execute`.
"""
from __future__ import annotations

import importlib
import os
import signal
import sys
import time
from typing import Any, Callable

import submitit

from common.paths import CODE_ROOT
from experiments import distributed, logs, preemption
from experiments.config import RunConfig
from experiments.config.loader import build_dataclass

DEFAULT_TARGET = "experiments.run:execute"
MANAGED_EXECUTORS = ("slurm", "local")  # submitit executors whose jobs can requeue themselves


def resolve_target(target: str | Callable) -> Callable:
    """'package.module:function' -> the function (imported in the job, i.e. from the code snapshot)."""
    if callable(target):
        return target
    module, sep, name = str(target).partition(":")
    if not sep or not module or not name:
        raise ValueError(f"target must look like 'package.module:function', got {target!r}")
    return getattr(importlib.import_module(module), name)


def set_threads(cpus_per_task: int | None) -> int:
    """One torch/OpenMP thread per allocated CPU: SLURM's actual allocation wins over the request.
    Set through the environment so it also holds when torch is imported later (by the target)."""
    n = int(os.environ.get("SLURM_CPUS_PER_TASK") or 0) or int(cpus_per_task or 0)
    if n <= 0:
        return 0
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    return n


class RunJob(submitit.helpers.Checkpointable):
    """`RunJob(target, repo_root, cpus_per_task)(config_dict)` -> the target's metrics dict."""

    def __init__(self, target: str = DEFAULT_TARGET, repo_root: str | None = None,
                 cpus_per_task: int | None = None) -> None:
        self.target = target
        self.repo_root = repo_root  # the real checkout: results/ and data/ live there, not in the snapshot
        self.cpus_per_task = cpus_per_task

    def __call__(self, config_dict: dict, resume: bool = True) -> Any:

        if self.repo_root:
            os.environ["AVBERT_ROOT"] = str(self.repo_root)
        source = f"job config {config_dict.get('rq')}/{config_dict.get('name')}"
        cfg = build_dataclass(RunConfig, config_dict, source=source)
        threads = set_threads(self.cpus_per_task)
        managed = os.environ.get("SUBMITIT_EXECUTOR") in MANAGED_EXECUTORS
        preemption.reset()
        if managed:  # SIGUSR2/SIGTERM stay with submitit; USR1 = "save at the next step and requeue"
            preemption.install((signal.SIGUSR1,))
            preemption.defer_in_step(submitit.JobEnvironment._usr_sig())  # never save inside a step
            preemption.shield_forked_children()
        env = distributed.setup()
        logs.configure(env.rank)
        print(f"[RunJob] {cfg.rq}/{cfg.name} target={self.target} rank={env.rank}/{env.world_size} "
              f"({env.source}) threads={threads or 'default'} restart={os.environ.get('SLURM_RESTART_COUNT', '0')} "
              f"code={CODE_ROOT} root={os.environ.get('AVBERT_ROOT', '-')} "
              f"started={time.strftime('%Y-%m-%d %H:%M:%S')}", flush=True)
        try:
            return resolve_target(self.target)(cfg, resume=resume)
        except preemption.Preempted as e:
            print(f"[RunJob] stopped on request: {e}", flush=True)
            if managed and env.rank == 0:
                # submitit's handler calls checkpoint() (last.pt is already saved), requeues, exits
                signal.raise_signal(submitit.JobEnvironment._usr_sig())
            raise
        finally:
            distributed.cleanup()

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Called by submitit on rank 0 only, inside its signal handler: save now, requeue the same call."""
        try:
            saved = preemption.save_now()
        except Exception as e:  # noqa: BLE001 - never lose the requeue because the save failed
            print(f"[RunJob] checkpoint: saving last.pt failed ({e!r}); resuming from the previous one",
                  flush=True)
            saved = False
        print(f"[RunJob] checkpoint: last.pt {'written' if saved else 'kept as is'}; requeueing", flush=True)
        fresh = RunJob(self.target, self.repo_root, self.cpus_per_task)
        return submitit.helpers.DelayedSubmission(fresh, *args, **kwargs)
