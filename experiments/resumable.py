"""One resumable training loop: a position plus the objects whose states must agree with it.

Why one object: a checkpoint is only useful if the model, optimizer, scheduler, RNG and data position
in it describe the same moment. Inside a step they do not (a forward pass has already moved the
BatchNorm statistics, a backward pass the gradients, `opt.step()` the weights, but the position
still names the previous step), so the loop knows when it is inside one and never saves from there:

* `with loop.step():` brackets everything that changes state (forward, backward, optimizer and
  scheduler steps, the position update). On leaving it the loop records the boundary: a copy of the
  position and the RNG states (cheap references; model and optimizer are live objects that only
  steps change).
* `save()` (step boundaries, stop requests, periodic) writes the boundary into `last.pt`, atomically,
  with the byte length of the run's log at that boundary (the resumed run truncates the log there, so
  steps replayed after a kill -9 are logged once).
* `save_from_signal()` is what submitit's checkpoint() reaches (SIGUSR2, inside the signal handler):
  it saves when the signal landed between steps (a data fetch, an evaluation pass) and declines
  inside one. `preemption.defer_in_step()` makes that rare: a job signal that arrives inside a step
  becomes a stop request honoured at the end of the step (see preemption.py).
* `batches(loader)` iterates a loader without touching the global RNG (`runtime.rng_neutral`) and
  lets a stop signal interrupt a wait for the next batch (one process only; DDP ranks stop together
  at step boundaries).
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch

from experiments import checkpoint, distributed, preemption, runtime


def _copy(obj: Any) -> Any:
    """Copy of nested dicts/lists; leaves (numbers, tensors, strings) shared: a boundary snapshot."""
    if isinstance(obj, dict):
        return {k: _copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_copy(v) for v in obj]
    return obj


def _plain(obj: Any) -> Any:
    """Nested position with 0-d tensors (device scalars kept to avoid a host sync per step) as floats."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return float(obj)
    return obj


def _gather(obj: Any) -> list[Any]:
    """Every rank's `obj` (tensors inside), in rank order. Sent as torch.save bytes: all_gather_object
    of tensors themselves fails to unpickle on receipt (torch 2.14, gloo: "UntypedStorage has no
    attribute dtype"), which crashed every multi-rank run at its first checkpoint."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return [torch.load(io.BytesIO(b), weights_only=True) for b in distributed.all_gather_object(buf.getvalue())]


class ResumableLoop:
    """`objects`: name -> anything with state_dict()/load_state_dict() (model, optimizer, scheduler);
    `position`: the loop's plain-data position (epoch, step, ...), mutated by the caller inside
    `step()` only; `log`: the run's JsonlLog (its length is part of the boundary)."""

    def __init__(self, folder: Path, stage: str, cfg_hash: str, objects: dict[str, Any], position: dict,
                 log=None, rank: int = 0, world_size: int = 1):
        self.folder, self.stage, self.cfg_hash = Path(folder), stage, cfg_hash
        self.objects, self.position, self.log = objects, dict(position), log
        self.rank, self.world_size = rank, world_size
        self._in_step = False
        self._mark()

    # ------------------------------------------------------------------ state
    def _mark(self) -> None:
        self._boundary = {"position": _copy(self.position), "rng": runtime.rng_state(),
                          "log_bytes": self.log.size() if self.log is not None else None}

    def resume(self, map_location="cpu") -> bool:
        """Load this stage's `last.pt` if there is one (True), after removing temp files that a kill
        during an earlier save left behind; the log is truncated to the checkpoint's boundary."""
        if self.rank == 0:
            checkpoint.remove_stale_temps(self.folder)
        state = checkpoint.load_for(self.folder, self.stage, self.cfg_hash, map_location=map_location)
        if state is None:
            return False
        self.load_state_dict(state)
        if self.log is not None and state.get("log_bytes") is not None:
            self.log.truncate(int(state["log_bytes"]))
        self._mark()
        return True

    def load_state_dict(self, state: dict) -> None:
        for name, obj in self.objects.items():
            obj.load_state_dict(state[name])
        rngs = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]
        runtime.set_rng_state(rngs[self.rank] if self.rank < len(rngs) else rngs[0])
        self.position = dict(state["position"])

    def state_dict(self) -> dict:
        """The boundary state. Live objects are read now: valid between steps only (see step())."""
        if self._in_step:
            raise RuntimeError(f"{self.stage}: state_dict() inside a step would mix two steps' states")
        rngs = _gather(self._boundary["rng"]) if self.world_size > 1 else [self._boundary["rng"]]
        return {"stage": self.stage, "config_hash": self.cfg_hash, "rng": rngs,
                "position": _plain(self._boundary["position"]), "log_bytes": self._boundary["log_bytes"],
                **{name: obj.state_dict() for name, obj in self.objects.items()}}

    # ------------------------------------------------------------------ saving
    def save(self) -> None:
        """Write the boundary to last.pt (every rank calls it: the RNG gather is a collective)."""
        state = self.state_dict()
        if self.rank == 0:
            checkpoint.save(self.folder, state)

    def save_from_signal(self) -> bool:
        """submitit's checkpoint(): save between steps; inside a step or under DDP (collectives are
        unsafe in a signal handler) keep the previous last.pt and say so."""
        if self._in_step or self.world_size > 1:
            return False
        checkpoint.save(self.folder, self.state_dict())
        return True

    def __enter__(self) -> "ResumableLoop":
        preemption.register_saver(self.save_from_signal)
        return self

    def __exit__(self, *exc) -> None:
        preemption.unregister_saver()
        preemption.set_in_step(False)

    # ------------------------------------------------------------------ stepping
    def begin_step(self) -> None:
        """From here until end_step() the live state is between two steps (gradient accumulation
        spans several micro-batches, fetches included); nothing saves it."""
        self._in_step = True
        preemption.set_in_step(True)

    def end_step(self) -> None:
        """The step is complete, position included: record the new boundary."""
        self._mark()
        self._in_step = False
        preemption.set_in_step(False)

    @contextlib.contextmanager
    def step(self) -> Iterator[dict]:
        """begin_step() ... end_step(). An exception leaves the loop marked as inside a step, so
        nothing later saves the mixed state."""
        self.begin_step()
        yield self.position
        self.end_step()

    def batches(self, loader: Iterable) -> Iterator:
        """The loader's batches, RNG-neutral; a stop signal during a wait saves and raises Preempted."""
        it = iter(runtime.rng_neutral(loader))
        while True:
            try:
                with preemption.interruptible(self.world_size == 1 and not self._in_step):
                    batch = next(it)
            except StopIteration:
                return
            except preemption.StopWhileWaiting:
                self.save()
                raise preemption.Preempted(f"stop requested while {self.stage} waited for data") from None
            yield batch

    def stop_if_requested(self, what: str) -> None:
        """At a step boundary: every rank agrees on a stop; if so save and raise Preempted."""
        if distributed.any_flag(preemption.stop_requested()):
            self.save()
            raise preemption.Preempted(f"stop requested in {self.stage} at {what}")
