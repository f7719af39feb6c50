"""experiments/run_folder.py: the one run-folder contract that the launcher (launch_plan) and run.py both
use: the four states, the stamp read the same way by both, claim / move aside, and the launch plan
reporting the folder's state. No training happens here."""
from __future__ import annotations

import json

import pytest

from experiments.config import load_config
from experiments.launch_plan import PlanState, load_plans
from experiments.run_folder import ConfigChanged, FolderState, RunFolder, result_hash

CONFIG = "experiments/rq3_sharing/configs/part.yaml"


def _folder(tmp_path) -> RunFolder:
    return RunFolder.of(load_config(CONFIG, [f"output_root={tmp_path}"], "smoke"))


def _write_metrics(folder: RunFolder, config_hash: str, status: str = "complete") -> None:
    folder.path.mkdir(parents=True, exist_ok=True)
    (folder.path / "metrics.json").write_text(json.dumps({"status": status, "config_hash": config_hash}))


def test_states_new_resume_complete_conflict(tmp_path):
    folder = _folder(tmp_path)
    assert folder.state()[0] is FolderState.NEW and folder.metrics() is None
    folder.claim()  # creates the folder and stamps it; run.py then writes config.yaml
    (folder.path / "config.yaml").write_text("this: run\n")
    assert folder.stamp() == folder.result_hash and folder.state()[0] is FolderState.NEW
    (folder.path / "checkpoints" / "last.pt").write_bytes(b"x")
    assert folder.state()[0] is FolderState.RESUME
    _write_metrics(folder, folder.result_hash)
    assert folder.state()[0] is FolderState.COMPLETE and folder.is_complete()
    other = RunFolder(folder.path, "0123456789ab")  # another config wants the same folder
    state, note = other.state()
    assert state is FolderState.CONFLICT and "different config" in note and "--restart" in note
    assert str(state) == "conflict" and state == "conflict"


def test_a_folder_without_a_stamp_is_judged_by_its_metrics(tmp_path):
    """A run folder (config.yaml) without checkpoints/hash still belongs to its metrics' config: the
    launcher reports the conflict before submitting, as run.py refuses it (they used to disagree); a
    folder without config.yaml holds no run (a fake or foreign metrics.json is not a claim on it)."""
    folder = _folder(tmp_path)
    _write_metrics(folder, "0123456789ab", status="partial")
    assert folder.stamp() is None and folder.state()[0] is FolderState.NEW
    (folder.path / "config.yaml").write_text("old: run\n")
    assert folder.stamp() == "0123456789ab" and folder.state()[0] is FolderState.CONFLICT
    with pytest.raises(ConfigChanged, match="different config"):
        folder.claim()
    assert (folder.path / "config.yaml").read_text() == "old: run\n"  # nothing touched


def test_claim_moves_a_different_config_aside_only_when_asked(tmp_path):
    folder = _folder(tmp_path)
    folder.path.mkdir(parents=True)
    (folder.path / "config.yaml").write_text("old: run\n")
    (folder.path / "checkpoints").mkdir()
    folder.stamp_file.write_text("0123456789ab\n")
    folder.claim(restart=True)
    aside = [p for p in folder.path.parent.iterdir() if p.name.startswith(f"{folder.path.name}.old-")]
    assert len(aside) == 1 and (aside[0] / "config.yaml").read_text() == "old: run\n"
    assert folder.stamp_file.read_text().strip() == folder.result_hash and not (folder.path / "config.yaml").exists()


def test_claim_keeps_a_run_of_the_same_config_and_fresh_moves_it(tmp_path):
    folder = _folder(tmp_path)
    folder.claim()
    (folder.path / "config.yaml").write_text("same: run\n")
    folder.claim()  # resumable: kept
    assert (folder.path / "config.yaml").is_file()
    folder.claim(fresh=True)  # --no-resume
    assert not (folder.path / "config.yaml").exists()
    assert any(p.name.startswith(f"{folder.path.name}.old-") for p in folder.path.parent.iterdir())


def test_the_launch_plan_reports_the_folder_state(tmp_path):
    from pathlib import Path

    plans, errors = load_plans([Path(CONFIG)], [f"output_root={tmp_path}"], "smoke")
    assert not errors and plans[0].state is PlanState.NEW and plans[0].submit
    _write_metrics(RunFolder.of(plans[0].cfg), result_hash(plans[0].cfg))
    plans, errors = load_plans([Path(CONFIG)], [f"output_root={tmp_path}"], "smoke")
    assert plans[0].state is PlanState.COMPLETE and not plans[0].submit
    assert {s.value for s in FolderState} <= {s.value for s in PlanState}
