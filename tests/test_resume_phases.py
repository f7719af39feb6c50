"""submitit's checkpoint signal at every phase of a training step, for pretraining and fine-tuning.

submitit calls our checkpoint() from inside its SIGUSR2 handler and then exits, so whatever last.pt
holds at that moment is what the requeued job resumes from. The signal can land anywhere: while the
next batch is fetched, in the forward pass (BatchNorm statistics already moved), in the backward pass
(gradients accumulated), right after the optimizer step or the scheduler step (weights and LR moved,
position not yet). Each case here raises a real SIGUSR2 at that phase of one chosen step, through the
handler chain a managed job installs (RunJob: submitit's handler, wrapped by
`preemption.defer_in_step`); the stand-in for submitit's handler calls `preemption.save_now()` and
then exits (an exception). When the loop raises `Preempted` first (a deferred signal), the test does
what RunJob does: raises the signal again. The resumed run must then end bit-identical to an
uninterrupted one (weights, optimizer, metrics, the log without duplicated lines).

Smoke profile, CPU; about 30 s on 2 cores.
"""
from __future__ import annotations

import signal

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

import data.pipeline
from experiments import preemption
from experiments.config import load_config
from experiments.pretrain import PretrainModule
from experiments.run import execute
from experiments.run_folder import run_dir
from model.heads import DownstreamModel
from tests.test_resume_real import _assert_same_tensors, _history, _log, _stable, _StopAt, _weights

CONFIG = "experiments/rq3_sharing/configs/part.yaml"
AT = 3  # the step (1-based batch) the signal lands in
PHASES = ("fetch", "forward", "backward", "optimizer", "scheduler")
_EVAL = ("task: ks_like, model: a_bert, modalities: [audio], segments: 2, spatial_crops: 1, batch_size: 4, "
         "dropout: 0.0")
STAGES = {
    # pretraining alone: 5 steps in one epoch, periodic last.pt only at step 2 and 4
    "pretrain": ["pretrain.epochs=1", "pretrain.steps_per_epoch=5", "pretrain.checkpoint_every=2",
                 "pretrain.heldout_dataset=''", "downstream=[]"],
    # fine-tuning alone (random init): 2 epochs of 4 batches, last.pt at epoch ends
    "finetune": ["pretrain.enabled=false",
                 f"downstream=[{{name: ft, protocol: finetune, epochs: 2, lr: 1.0e-2, finetune_lr: 1.0e-3, {_EVAL}}}]"],
}


class _Exit(BaseException):
    """submitit's handler exits the process after checkpoint() returns."""


def _cfg(root, stage):
    return load_config(CONFIG, [f"output_root={root}", "runtime.device=cpu", "runtime.deterministic=true",
                                "runtime.log_every=1", *STAGES[stage]], "smoke")


@pytest.fixture(autouse=True)
def _signals():
    det, warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    old = signal.getsignal(signal.SIGUSR2)
    saves: list[bool] = []

    def fake_submitit_handler(signum, frame):  # checkpoint(), then the process exits
        saves.append(preemption.save_now())
        raise _Exit

    signal.signal(signal.SIGUSR2, fake_submitit_handler)
    preemption.defer_in_step(signal.SIGUSR2)  # what RunJob installs in a managed job
    preemption.reset()
    yield saves
    signal.signal(signal.SIGUSR2, old)
    preemption.reset()
    torch.use_deterministic_algorithms(det, warn_only=warn)


class _Inject:
    """Raise SIGUSR2 once, at `phase` of the AT-th training step (counted by training batches fetched)."""

    def __init__(self, mp: pytest.MonkeyPatch, stage: str, phase: str):
        self.phase, self.armed, self.fired = phase, False, False
        inj = self

        def arrive() -> None:  # the AT-th training batch is being handed to the loop
            inj.armed = True
            inj.hit("fetch")

        if stage == "pretrain":
            _StopAt(mp, "make_pretrain_loader", AT, action=arrive)
        else:
            _StopAt(mp, "make_downstream_loader", AT, want=lambda kw: kw.get("train"), action=arrive)
        owner, method = (PretrainModule, "forward") if stage == "pretrain" else (DownstreamModel, "head_logits")
        real_forward = getattr(owner, method)

        def forward(self_, *a, **k):
            out = real_forward(self_, *a, **k)
            inj.hit("forward")
            return out

        mp.setattr(owner, method, forward)
        real_backward = torch.Tensor.backward

        def backward(self_, *a, **k):
            real_backward(self_, *a, **k)
            inj.hit("backward")

        mp.setattr(torch.Tensor, "backward", backward)
        real_sched = torch.optim.lr_scheduler.LRScheduler.step

        def sched_step(self_, *a, **k):
            real_sched(self_, *a, **k)
            inj.hit("scheduler")

        mp.setattr(torch.optim.lr_scheduler.LRScheduler, "step", sched_step)
        self.handle = register_optimizer_step_post_hook(lambda *a: inj.hit("optimizer"))

    def hit(self, phase: str) -> None:
        if not self.fired and phase == self.phase and self.armed:
            self.fired = True
            signal.raise_signal(signal.SIGUSR2)


def _interrupted_then_resumed(cfg, stage, phase, saves):
    with pytest.MonkeyPatch.context() as mp:
        inj = _Inject(mp, stage, phase)
        try:
            with pytest.raises(_Exit):
                try:
                    execute(cfg)
                except preemption.Preempted:  # deferred: RunJob raises submitit's signal again
                    signal.raise_signal(signal.SIGUSR2)
        finally:
            inj.handle.remove()
    assert inj.fired, f"the {phase} phase of step {AT} was never reached"
    last = _weights(cfg, "last.pt")
    preemption.reset()
    return last, execute(cfg)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = {}
    for stage in STAGES:
        preemption.reset()
        cfg = _cfg(tmp_path_factory.mktemp(f"a-{stage}"), stage)
        out[stage] = (cfg, execute(cfg))
    return out


@pytest.mark.parametrize("stage", list(STAGES))
@pytest.mark.parametrize("phase", PHASES)
def test_signal_at_every_phase_resumes_bit_identically(uninterrupted, tmp_path, stage, phase, _signals):
    cfg_a, m_a = uninterrupted[stage]
    cfg = _cfg(tmp_path, stage)
    last, m_b = _interrupted_then_resumed(cfg, stage, phase, _signals)
    pos = last["position"]
    done = pos["step"] if stage == "pretrain" else pos["epoch"] * 4 + pos["batch"]
    if phase == "fetch":  # between steps: checkpoint() saved the state after step AT-1, at once
        assert _signals == [True] and done == AT - 1
    else:  # inside step AT: deferred to its end, saved there by the loop; checkpoint() then had no saver
        assert _signals == [False] and done == AT
    assert _stable(m_b) == _stable(m_a)
    if stage == "pretrain":
        _assert_same_tensors(_weights(cfg_a), _weights(cfg), "pretrained.pt")
    a, b = _weights(cfg_a, "last.pt"), _weights(cfg, "last.pt")
    for key in ("model" if stage == "finetune" else "module", "optimizer", "scheduler", "rng", "position"):
        _assert_same_tensors(a[key], b[key], f"last.pt.{key}")  # log_bytes differs: the resume event line
    # the log: the uninterrupted run's lines, each once (replayed steps were cut at the resume)
    assert _history(cfg) == _history(cfg_a)
    resumed = [r for r in _log(cfg) if r.get("event") == "resumed"]
    assert len(resumed) == 1
    assert not list((run_dir(cfg) / "checkpoints").glob(".*.tmp"))


@pytest.mark.parametrize("killed_after", [1, 3])
def test_kill_resume_cuts_replayed_log_lines_and_stale_temps(uninterrupted, tmp_path, killed_after):
    """kill -9 stand-in after step 3 (logged; the periodic last.pt is step 2's), or after step 1 (no
    last.pt yet), with the temp file of an interrupted save left behind: the resume deletes the temp
    file and cuts the log back to the checkpoint's length (or to the start), so replayed steps are
    logged once and the log equals the uninterrupted run's."""
    cfg_a, _ = uninterrupted["pretrain"]
    cfg = _cfg(tmp_path, "pretrain")

    class _Kill(BaseException):
        pass

    with pytest.MonkeyPatch.context() as mp:
        real = data.pipeline.make_pretrain_loader

        def loader(*a, **k):
            for i, batch in enumerate(real(*a, **k)):
                if i == killed_after:  # steps 1..killed_after trained and logged
                    raise _Kill
                yield batch
        mp.setattr(data.pipeline, "make_pretrain_loader", loader)
        with pytest.raises(_Kill):
            execute(cfg)
    assert [r["step"] for r in _log(cfg) if "loss" in r] == list(range(1, killed_after + 1))
    last = run_dir(cfg) / "checkpoints" / "last.pt"
    assert (_weights(cfg, "last.pt")["position"]["step"] if last.exists() else 0) == killed_after // 2 * 2
    stale = run_dir(cfg) / "checkpoints" / ".last.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    execute(cfg)
    assert not stale.exists()
    assert [r["step"] for r in _log(cfg) if "loss" in r] == [1, 2, 3, 4, 5]
    assert _history(cfg) == _history(cfg_a)
    _assert_same_tensors(_weights(cfg_a, "pretrained.pt"), _weights(cfg, "pretrained.pt"), "pretrained.pt")


def test_stop_signal_is_honoured_while_the_loader_waits(uninterrupted, tmp_path):
    """SIGUSR1 (plain sbatch's stop) while the loop waits 60 s for batch 3: it saves the state after
    step 2 and stops within seconds, not after the wait; the resume matches the uninterrupted run."""
    import os
    import threading
    import time

    cfg_a, _ = uninterrupted["pretrain"]
    cfg = _cfg(tmp_path, "pretrain")
    old = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGTERM)}
    preemption.install()
    try:
        with pytest.MonkeyPatch.context() as mp:
            real = data.pipeline.make_pretrain_loader

            def loader(*a, **k):
                for i, batch in enumerate(real(*a, **k)):
                    if i == 2:
                        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGUSR1)).start()
                        time.sleep(60)  # a loader stuck waiting (workers busy, a slow file system)
                    yield batch
            mp.setattr(data.pipeline, "make_pretrain_loader", loader)
            t0 = time.time()
            with pytest.raises(preemption.Preempted, match="waited for data"):
                execute(cfg)
            assert time.time() - t0 < 30
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    assert _weights(cfg, "last.pt")["position"]["step"] == 2
    preemption.reset()
    execute(cfg)
    _assert_same_tensors(_weights(cfg_a, "pretrained.pt"), _weights(cfg, "pretrained.pt"), "pretrained.pt")
    assert _history(cfg) == _history(cfg_a)
