"""The launcher's per-run progress: phase, step of total, loss and ETA from the tail of log.jsonl,
and the status lines that show it while a sweep waits."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from experiments import launch_jobs
from experiments.config import load_config
from experiments.launch_jobs import Outcome
from experiments.launch_plan import RunPlan
from experiments.run_progress import progress

CONFIG = "experiments/rq1_end_to_end/configs/end_to_end.yaml"


def _log(folder: Path, *records: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "log.jsonl", "a") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def test_pretraining_step_loss_and_eta(tmp_path):
    cfg = load_config(CONFIG, [], "tiny")  # 6 x 100 steps, downstream av, bind, bind_4, visual, audio, order
    assert progress(tmp_path, cfg) is None
    _log(tmp_path, {"stage": "pretrain", "step": 10, "loss": 3.7, "time": 1000.0},
         {"stage": "pretrain", "event": "heldout", "step": 100, "time": 1080.0},
         {"stage": "pretrain", "step": 110, "loss": 3.1234, "time": 1100.0})
    # 100 steps in 100 s -> 490 steps left at 1 step/s
    assert progress(tmp_path, cfg) == "pretraining step 110/600, loss 3.123, ETA 8 min"


def test_evaluation_phase_and_epoch(tmp_path):
    cfg = load_config(CONFIG, [], "tiny")
    _log(tmp_path, {"stage": "pretrain", "step": 600, "loss": 2.9, "time": 1.0},
         {"stage": "downstream:bind", "epoch": 39, "loss": 1.2, "time": 2.0})
    assert progress(tmp_path, cfg) == "evaluation bind (2/6), epoch 40/100"
    _log(tmp_path, {"stage": "downstream:bind", "event": "result", "time": 3.0})
    assert progress(tmp_path, cfg) == "evaluation bind (2/6) done"


def test_a_torn_or_huge_log_still_reads(tmp_path):
    cfg = load_config(CONFIG, [], "tiny")
    _log(tmp_path, *({"stage": "pretrain", "step": i, "loss": 1.0, "time": float(i), "pad": "x" * 200}
                     for i in range(1, 1001)))
    with open(tmp_path / "log.jsonl", "a") as f:
        f.write('{"stage": "pretr')  # a line being written
    assert progress(tmp_path, cfg).startswith("pretraining step 1000/600")


class _FakeJob:
    def __init__(self, folder: Path):
        self.job_id = "4242"
        self.paths = SimpleNamespace(stdout=folder / "out.log", stderr=folder / "err.log")
        self.polls = 0

    def done(self) -> bool:
        self.polls += 1
        return self.polls > 2

    def exception(self):
        return None

    def results(self):
        return [{"status": "complete"}]


def test_wait_names_the_log_and_shows_progress(tmp_path, capsys, monkeypatch):
    cfg = load_config(CONFIG, [f"output_root={tmp_path}"], "tiny")
    plan = RunPlan(path=Path(CONFIG), name="end_to_end", cfg=cfg)
    _log(plan.run_dir, {"stage": "pretrain", "step": 10, "loss": 3.5, "time": 0.0},
         {"stage": "pretrain", "step": 20, "loss": 3.25, "time": 10.0})
    o = Outcome(plan=plan, status="submitted", job=_FakeJob(tmp_path), started=0.0)
    clock = iter(range(0, 10_000, 61))  # every poll is a minute later: one status line per poll
    monkeypatch.setattr(launch_jobs.time, "time", lambda: float(next(clock)))
    monkeypatch.setattr(launch_jobs.time, "sleep", lambda s: None)
    launch_jobs.wait([o], poll_s=0.0)
    out = capsys.readouterr().out
    assert f"started end_to_end (job 4242): per-step log in {tmp_path / 'err.log'}" in out
    assert "    end_to_end: pretraining step 20/600, loss 3.250, ETA" in out
    assert "finished end_to_end: ran" in out
