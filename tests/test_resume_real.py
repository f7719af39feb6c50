"""Determinism and exact resume through the real training code (smoke profile, CPU, seconds).

The issue's requirements: "Deterministic mode on CPU: the same config and seed give the same final
metrics; an interrupted-then-resumed run ends with the same weights as an uninterrupted one" and "a
kill-and-resume test compares final weights with an uninterrupted run".

Runs `experiments.run.execute` on experiments/rq3_sharing/configs/part.yaml (profile smoke, the
synthetic benchmark at the profile's data.root, generated on first use), shortened by overrides:
2 epochs x 2 pretraining steps, last.pt every 2 steps, the held-out CPP / MEP accuracy after each
epoch (the smoke profile inherits tiny's pretrain.heldout_dataset: pretrain_val), and two cheap
downstream evaluations on the
audio stream: a linear one (the smoke profile's protocol; not checkpointed, a requeue redoes it)
and a one-epoch fine-tuning (it checkpoints and resumes itself). Stops use the project's own
mechanism: a real SIGUSR1 through `preemption.install()`'s handler, raised while the loop waits for
the batch after a known one, so the loop saves last.pt at that step boundary at once and raises
`Preempted`; calling
execute again resumes, as a requeued job does. A crash (an exception standing for a hard kill: no
save) resumes from the last periodic last.pt instead.

Runtime: about 30 s on 2 shared CPU cores (load average 1-3); several seconds of it are the first
use of deterministic mode in the process (torch imports its compiler stack).
"""
from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import pytest
import torch

from common import paths
import data.pipeline
from data.pipeline import resolve_folder
from data.shards import read_manifest
from experiments import preemption
from experiments.config import load_config
from experiments.run import execute
from experiments.run_folder import run_dir

CONFIG = "experiments/rq3_sharing/configs/part.yaml"
STOP_STEP = 3  # pretraining: epoch 1, one batch into it, not a checkpoint_every multiple (saved by the stop)
STOP_FT_BATCH = 2  # fine-tuning: mid-epoch (the smoke train split makes ceil(16 / 4) = 4 batches)
CRASH_BATCH = 4  # a crash while step 4 trains: the last periodic last.pt is step 2's
_EVAL = "task: ks_like, model: a_bert, modalities: [audio], segments: 2, spatial_crops: 1, batch_size: 4, dropout: 0.0"
OVERRIDES = [
    "runtime.device=cpu",
    "runtime.deterministic=true",
    "runtime.log_every=2",  # a logging window spans the pretraining stop: its running sums must survive
    "pretrain.epochs=2",
    "pretrain.steps_per_epoch=2",
    "pretrain.checkpoint_every=2",
    f"downstream=[{{name: lin, protocol: linear, epochs: 3, lr: 1.0e-2, {_EVAL}}}, "
    f"{{name: ft, protocol: finetune, epochs: 1, lr: 1.0e-2, finetune_lr: 1.0e-3, {_EVAL}}}]",
]
# differ between runs by nature: timings, throughput, memory
VOLATILE = {"wall_s", "wall_time_s", "peak_memory_mb", "clips_per_s", "time", "log_bytes"}


def _cfg(root: Path, *extra: str):
    return load_config(CONFIG, [f"output_root={root}", *OVERRIDES, *extra], "smoke")


@pytest.fixture(scope="module", autouse=True)
def _process_state():
    """Deterministic mode, torch threads and signal handlers are process-wide: restore them afterwards."""
    det, warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    threads = torch.get_num_threads()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGTERM)}
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    preemption.install()
    yield
    for s, h in handlers.items():
        signal.signal(s, h)
    preemption.reset()
    torch.use_deterministic_algorithms(det, warn_only=warn)
    torch.set_num_threads(threads)
    if cublas is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


class _Crash(Exception):
    """Stands for a hard kill: the loop saves nothing."""


def _sigusr1() -> None:
    signal.raise_signal(signal.SIGUSR1)  # the handler only sets the stop flag


def _crash() -> None:
    raise _Crash


class _StopAt:
    """Wrap the loader factory `name` of data.pipeline (as the training loops import it) and run
    `action` at the `at`-th batch (1-based, counted over the loaders matching `want`): by default
    SIGUSR1 arrives when the loop asks for the next batch after training it (a stop while waiting for
    data: the loop saves and stops at once); a crash comes before the batch is handed over."""

    def __init__(self, mp: pytest.MonkeyPatch, name: str, at: int, want=lambda kw: True, action=_sigusr1):
        self.seen, self.at, self.want, self.action = 0, at, want, action
        self.after = action is _sigusr1
        real = getattr(data.pipeline, name)

        def factory(*args, **kw):
            loader = real(*args, **kw)
            return self._wrap(loader) if self.want(kw) else loader

        mp.setattr(data.pipeline, name, factory)

    def _wrap(self, loader):
        stopper = self

        class Wrapped:
            def __getattr__(self, attr):
                return getattr(loader, attr)

            def __len__(self):
                return len(loader)

            def __iter__(self):
                for batch in loader:
                    stopper.seen += 1
                    hit = stopper.seen == stopper.at
                    if hit and not stopper.after:
                        stopper.action()
                    yield batch
                    if hit and stopper.after:
                        stopper.action()

        return Wrapped()


def _training_loader(kw: dict) -> bool:
    """The pretraining loop's loaders (the held-out pass uses the same factory, without skip_batches)."""
    return "skip_batches" in kw


def _run(cfg) -> dict:
    preemption.reset()
    return execute(cfg)


def _stable(obj):
    """The metrics without the fields that legitimately differ between runs."""
    if isinstance(obj, dict):
        return {k: _stable(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_stable(v) for v in obj]
    return obj


def _weights(cfg, name: str = "pretrained.pt") -> dict:
    return torch.load(run_dir(cfg) / "checkpoints" / name, map_location="cpu", weights_only=True)


def _assert_same_tensors(a, b, where: str = "") -> None:
    """Exact equality of nested dicts/lists of tensors and plain values (VOLATILE keys skipped)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"{where}: max |diff| {(a.double() - b.double()).abs().max().item()}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys differ"
        for k in a:
            if k not in VOLATILE:
                _assert_same_tensors(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _log(cfg) -> list[dict]:
    return [json.loads(line) for line in (run_dir(cfg) / "log.jsonl").read_text().splitlines()]


def _history(cfg) -> list[dict]:
    """The training log (per-step pretraining losses, per-epoch downstream losses and val metrics,
    results) without resume events and timings: a resumed run must write the uninterrupted run's."""
    return [_stable(r) for r in _log(cfg) if r.get("event") != "resumed"]


def _pretrain_losses(cfg) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in _log(cfg) if r.get("stage") == "pretrain" and "loss" in r}


# ------------------------------------------------------------------------------------------ runs
@pytest.fixture(scope="module")
def run_a(tmp_path_factory):
    cfg = _cfg(tmp_path_factory.mktemp("a"))
    return cfg, _run(cfg)


@pytest.fixture(scope="module")
def run_a2(tmp_path_factory):
    cfg = _cfg(tmp_path_factory.mktemp("a2"))
    return cfg, _run(cfg)


@pytest.fixture(scope="module")
def run_b(tmp_path_factory):
    """Four processes' worth of one run: stopped in pretraining after step STOP_STEP; resumed, then
    crashed in the linear evaluation (nothing saved); redone in a process that did not pretrain,
    stopped in fine-tuning; resumed to the end."""
    cfg = _cfg(tmp_path_factory.mktemp("b"))
    stops = {}
    with pytest.MonkeyPatch.context() as mp:
        _StopAt(mp, "make_pretrain_loader", STOP_STEP, want=_training_loader)
        with pytest.raises(preemption.Preempted):
            _run(cfg)
    stops["pretrain"] = (preemption.stop_reason(), _weights(cfg, "last.pt"))
    assert not (run_dir(cfg) / "checkpoints" / "pretrained.pt").exists()
    with pytest.MonkeyPatch.context() as mp:  # the first evaluation loader is the linear eval's train split
        _StopAt(mp, "make_downstream_loader", 1, want=lambda kw: not kw.get("train"), action=_crash)
        with pytest.raises(_Crash):
            _run(cfg)
    assert (run_dir(cfg) / "checkpoints" / "pretrained.pt").is_file()
    assert "lin" not in json.loads((run_dir(cfg) / "metrics.partial.json").read_text()).get("downstream", {})
    with pytest.MonkeyPatch.context() as mp:
        # counts the fine-tuning train batches only (the linear eval's loaders are evaluation loaders)
        _StopAt(mp, "make_downstream_loader", STOP_FT_BATCH, want=lambda kw: kw.get("train"))
        with pytest.raises(preemption.Preempted):
            _run(cfg)
    stops["finetune"] = (preemption.stop_reason(), _weights(cfg, "last.pt"))
    metrics = _run(cfg)
    return cfg, metrics, stops


# ----------------------------------------------------------------------------------------- tests
def test_same_seed_same_weights_and_metrics(run_a, run_a2):
    (cfg_a, m_a), (cfg_a2, m_a2) = run_a, run_a2
    assert m_a["status"] == "complete" and set(m_a["downstream"]) == {"lin", "ft"}
    assert m_a["pretrain"]["steps"] == 4 and sorted(_pretrain_losses(cfg_a)) == [2, 4]
    assert _stable(m_a) == _stable(m_a2)
    assert _history(cfg_a) == _history(cfg_a2)
    # held-out pretraining metrics: after every epoch (log.jsonl), the last epoch's in the summary
    pre = m_a["pretrain"]
    assert cfg_a.pretrain.heldout_dataset == "pretrain_val"
    assert 0 <= pre["heldout_cpp_acc"] <= 1 and 0 <= pre["heldout_mep_top1"] <= 1
    assert pre["heldout_mep_chance"] == round(1 / cfg_a.data.segments, 4)
    val = read_manifest(resolve_folder(paths.resolve(cfg_a.data.root) / "pretrain_val"))["total"]
    assert pre["heldout_clips"] == val // cfg_a.pretrain.batch_size * cfg_a.pretrain.batch_size > 0
    held = [r for r in _log(cfg_a) if r.get("event") == "heldout"]
    assert [(r["epoch"], r["step"]) for r in held] == [(0, 2), (1, 4)]
    assert {k: held[-1][k] for k in ("heldout_cpp_acc", "heldout_mep_top1")} == \
        {k: pre[k] for k in ("heldout_cpp_acc", "heldout_mep_top1")}
    assert json.loads((run_dir(cfg_a) / "metrics.json").read_text())["pretrain"]["heldout_mep_top1"] == \
        pre["heldout_mep_top1"]
    _assert_same_tensors(_weights(cfg_a), _weights(cfg_a2), "pretrained.pt")
    _assert_same_tensors(_weights(cfg_a, "last.pt"), _weights(cfg_a2, "last.pt"), "last.pt")


def test_other_seed_other_weights(run_a, tmp_path):
    cfg_a, _ = run_a
    cfg = _cfg(tmp_path, "seed=1", "downstream=[]")
    _run(cfg)
    a, b = _weights(cfg_a)["model"], _weights(cfg)["model"]
    assert a.keys() == b.keys()
    assert not all(torch.equal(a[k], b[k]) for k in a), "seed 1 gave seed 0's weights: the seed is ignored"


def test_stop_and_resume_matches_uninterrupted(run_a, run_b):
    (cfg_a, m_a), (cfg_b, m_b, stops) = run_a, run_b
    # the stops happened where intended, through the signal handler, and saved last.pt there
    reason, last = stops["pretrain"]
    assert reason == "SIGUSR1"
    assert last["stage"] == "pretrain" and last["position"]["step"] == STOP_STEP
    assert (last["position"]["epoch"], last["position"]["micro"]) == (1, 1)
    reason, last = stops["finetune"]
    assert reason == "SIGUSR1"
    assert last["stage"] == "downstream:ft"
    assert (last["position"]["epoch"], last["position"]["batch"]) == (0, STOP_FT_BATCH)

    resumed = [r for r in _log(cfg_b) if r.get("event") == "resumed"]
    assert [(r["stage"], r.get("step"), r.get("batch")) for r in resumed] == [
        ("pretrain", STOP_STEP, None), ("downstream:ft", None, STOP_FT_BATCH)]

    _assert_same_tensors(_weights(cfg_a), _weights(cfg_b), "pretrained.pt")
    _assert_same_tensors(_weights(cfg_a, "last.pt"), _weights(cfg_b, "last.pt"), "last.pt (fine-tuned)")
    _assert_same_tensors(_weights(cfg_a, "ft.best.pt"), _weights(cfg_b, "ft.best.pt"), "ft.best.pt")
    assert _stable(m_a) == _stable(m_b)
    assert _history(cfg_a) == _history(cfg_b)
    assert m_b["pretrain"]["heldout_cpp_acc"] == m_a["pretrain"]["heldout_cpp_acc"]  # with heldout set
    assert m_b["pretrain"]["heldout_mep_top1"] == m_a["pretrain"]["heldout_mep_top1"]


def test_heldout_metrics_leave_training_untouched(run_a, tmp_path):
    """The held-out pass (eval mode, its own RNGs) changes nothing in training: without it the same
    weights come out, and the summary has no heldout_* keys."""
    cfg_a, _ = run_a
    cfg = _cfg(tmp_path, "pretrain.heldout_dataset=''", "downstream=[]")
    m = _run(cfg)
    assert not [k for k in m["pretrain"] if k.startswith("heldout")]
    assert not [r for r in _log(cfg) if r.get("event") == "heldout"]
    _assert_same_tensors(_weights(cfg_a)["model"], _weights(cfg)["model"], "pretrained.pt")
    assert _pretrain_losses(cfg) == _pretrain_losses(cfg_a)


def test_crash_resumes_from_periodic_checkpoint(run_a, tmp_path):
    """No save at the stop (a hard kill): the requeued run redoes the steps after last.pt's."""
    cfg_a, _ = run_a
    cfg = _cfg(tmp_path, "downstream=[]")  # pretraining does not depend on the evaluations listed
    with pytest.MonkeyPatch.context() as mp:
        _StopAt(mp, "make_pretrain_loader", CRASH_BATCH, action=_crash)
        with pytest.raises(_Crash):
            _run(cfg)
    assert _weights(cfg, "last.pt")["position"]["step"] == 2
    _run(cfg)
    assert [r["step"] for r in _log(cfg) if r.get("event") == "resumed"] == [2]
    _assert_same_tensors(_weights(cfg_a)["model"], _weights(cfg)["model"], "pretrained.pt")
    assert _pretrain_losses(cfg) == _pretrain_losses(cfg_a)


def test_stop_during_finetune_validation_keeps_the_epoch(run_a, tmp_path):
    """A stop in the fine-tune's validation pass saves the finished epoch's training (all its batches
    done) and the RNG state it validated from: the resumed run only re-validates, and matches."""
    cfg_a, m_a = run_a
    only_ft = f"downstream=[{{name: ft, protocol: finetune, epochs: 1, lr: 1.0e-2, finetune_lr: 1.0e-3, {_EVAL}}}]"
    cfg = _cfg(tmp_path, only_ft)
    with pytest.MonkeyPatch.context() as mp:  # the first evaluation loader is the fine-tune's val split
        _StopAt(mp, "make_downstream_loader", 1, want=lambda kw: not kw.get("train"))
        with pytest.raises(preemption.Preempted, match="val"):
            _run(cfg)
    last = _weights(cfg, "last.pt")
    assert last["stage"] == "downstream:ft" and last["position"]["epoch"] == 0
    train = read_manifest(resolve_folder(paths.resolve(cfg.data.root) / "ks_like", "train"))["total"]
    assert last["position"]["batch"] == math.ceil(train / 4)  # every training batch of the epoch is kept (_EVAL batch 4)
    metrics = _run(cfg)
    a, b = _weights(cfg_a, "last.pt"), _weights(cfg, "last.pt")
    for key in ("model", "optimizer", "scheduler", "rng", "position"):  # config_hash differs: other eval list
        _assert_same_tensors(a[key], b[key], f"last.pt (fine-tuned).{key}")
    _assert_same_tensors(_weights(cfg_a, "ft.best.pt"), _weights(cfg, "ft.best.pt"), "ft.best.pt")
    assert _stable(metrics["downstream"]["ft"]) == _stable(m_a["downstream"]["ft"])


def test_channels_last_cpu_resumes_exactly_and_changes_only_the_last_bits(run_a, tmp_path):
    """runtime.channels_last_cpu (ours; the tiny runs' CPU speed-up): the CNN weights train in the
    channels-last layout, a crashed run resumes from last.pt to the uninterrupted run's weights bit for
    bit, and those weights are the default layout's up to float rounding (amplified by AdamW)."""
    cfg_a, _ = run_a
    key = "runtime.channels_last_cpu=true"
    full = _cfg(tmp_path / "full", key, "downstream=[]")
    _run(full)
    w = _weights(full)["model"]
    conv = next(k for k in w if k.startswith("visual_cnn.") and w[k].dim() == 5)
    assert w[conv].is_contiguous(memory_format=torch.channels_last_3d) and not w[conv].is_contiguous()
    crashed = _cfg(tmp_path / "crashed", key, "downstream=[]")
    with pytest.MonkeyPatch.context() as mp:
        _StopAt(mp, "make_pretrain_loader", CRASH_BATCH, action=_crash)
        with pytest.raises(_Crash):
            _run(crashed)
    _run(crashed)
    _assert_same_tensors(w, _weights(crashed)["model"], "pretrained.pt (channels_last_cpu, resumed)")
    plain = _weights(cfg_a)["model"]  # 4 AdamW steps at lr 1e-3 move a weight by up to 4e-3
    for k in plain:
        assert torch.allclose(plain[k].double(), w[k].double(), rtol=1e-3, atol=1e-4), k
