"""Preemption and time-out handling shared by the training loops and the job wrappers.

Two ways a job learns it must stop:
* plain `sbatch` (slurm/*.sbatch) or a user's Ctrl-C/kill: SIGUSR1 or SIGTERM reaches Python;
  `install()`'s handler only sets a flag. Training loops poll `stop_requested()` at step boundaries,
  save `last.pt` there (so a resumed run is bit-identical to an uninterrupted one) and raise
  `Preempted`, which run.py turns into exit code REQUEUE_EXIT_CODE; the sbatch script then requeues.
* Forked children (DataLoader workers, data pools) must not act on these signals, which Slurm sends to
  every process of the job step: `shield_forked_children()` (see its docstring and submitit_job.py).
* submitit (SIGUSR2): submitit calls our Checkpointable's `checkpoint()` from inside its signal
  handler and exits right after, so there is no later step boundary. `checkpoint()` calls
  `save_now()`, which runs the saver the training loop registered: it writes the state of the last
  completed step. A signal that lands inside a step would save two steps' states mixed (the
  forward pass has moved BatchNorm statistics, the position has not), so jobs install
  `defer_in_step(SIGUSR2)`: inside a step the signal becomes a stop request, the loop saves at the
  end of the step and raises `Preempted`, and RunJob re-raises submitit's signal, now between steps.
* A stop signal that arrives while the loop waits for its next batch (`interruptible()`, one process
  only) raises `StopWhileWaiting` out of the wait: the loop saves and stops within seconds instead of
  after the batch.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Callable

REQUEUE_EXIT_CODE = 3


class Preempted(RuntimeError):
    """Raised by a training loop after it saved `last.pt` because a stop was requested."""


class StopWhileWaiting(BaseException):
    """Raised by the stop handler out of a wait for data (`interruptible()`). A BaseException, so the
    DataLoader's `except Exception` retry logic does not swallow it."""


_state = {"requested": False, "signal": None, "in_step": False, "interruptible": False}
_saver: list[Callable[[], bool]] = []
_lock = threading.Lock()


def _handler(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    _state["requested"] = True
    _state["signal"] = signal.Signals(signum).name
    if _state["interruptible"]:
        _state["interruptible"] = False
        raise StopWhileWaiting(_state["signal"])


def set_in_step(flag: bool) -> None:
    """The training loop says whether its live state is inside a step (see experiments.resumable)."""
    _state["in_step"] = bool(flag)


@contextlib.contextmanager
def interruptible(enabled: bool = True):
    """A stop signal inside this block raises StopWhileWaiting (a pending request raises at once)."""
    if enabled and _state["requested"]:
        raise StopWhileWaiting(_state["signal"])
    _state["interruptible"] = bool(enabled)
    try:
        yield
    finally:
        _state["interruptible"] = False


def defer_in_step(signum: int) -> None:
    """Wrap the handler installed for `signum` (submitit's): inside a training step the signal only
    requests a stop at the end of the step; elsewhere the wrapped handler runs as before."""
    inner = signal.getsignal(signum)

    def handler(s, frame):
        if _state["in_step"]:
            _state["requested"] = True
            _state["signal"] = f"{signal.Signals(s).name} (deferred to the end of the step)"
            return
        if callable(inner):
            inner(s, frame)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signum, handler)


def install(signals: tuple[int, ...] = (signal.SIGUSR1, signal.SIGTERM)) -> None:
    """Route the given signals to the stop flag (main thread only; elsewhere this is a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for s in signals:
        signal.signal(s, _handler)


def request_stop(reason: str = "manual") -> None:
    """Ask the running loop to save and stop at its next step boundary (tests use this)."""
    _state["requested"] = True
    _state["signal"] = reason


def stop_requested() -> bool:
    return bool(_state["requested"])


def stop_reason() -> str | None:
    return _state["signal"]


def reset() -> None:
    _state.update(requested=False, signal=None, in_step=False, interruptible=False)


def register_saver(fn: Callable[[], bool]) -> None:
    """The training loop registers a function that writes `last.pt` now and returns True on success."""
    with _lock:
        _saver.clear()
        _saver.append(fn)


def unregister_saver() -> None:
    with _lock:
        _saver.clear()


def save_now() -> bool:
    """Called from submitit's checkpoint(): save through the registered saver, if any."""
    with _lock:
        fn = _saver[0] if _saver else None
    return bool(fn()) if fn is not None else False


_SHIELDED = {"pid": None}


def _shield_child() -> None:
    """os.register_at_fork(after_in_child=...): USR1/USR2 ignored; SIGTERM blocked and taken by a thread
    that exits the child only when its parent sent it (or the parent is gone)."""
    try:
        for s in (signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(s, signal.SIG_IGN)
        parent = os.getppid()
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # inherited by the child's later threads

        def watch() -> None:
            while True:
                info = signal.sigwaitinfo({signal.SIGTERM})
                if info.si_pid == parent or os.getppid() != parent:
                    os._exit(0)  # what torch's worker handler does when its parent terminates it

        threading.Thread(target=watch, name="sigterm-from-parent", daemon=True).start()
    except Exception as e:  # noqa: BLE001 - never break a fork; the child then has the default handlers
        print(f"[preemption] could not shield forked child {os.getpid()} from job signals: {e!r}", file=sys.stderr)


def shield_forked_children() -> None:
    """Keep the job's signals (Slurm sends them to every process of the step) away from the processes it
    forks from now on; once per process (an at-fork hook cannot be removed; job processes run one job)."""
    if _SHIELDED["pid"] != os.getpid() and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_shield_child)
        _SHIELDED["pid"] = os.getpid()
