"""The launcher and slurm/run_array.sbatch on a real SLURM cluster (the local one-node cluster:
`bash slurm/local_slurm.sh up`): a job-array sweep, submitit preemption -> requeue -> resume, and the
plain-sbatch USR1 trap -> exit 3 -> `scontrol requeue` -> resume path. Fake targets keep each job to
seconds; most of the ~1.5 min is Slurm's requeue delay (BeginTime = cred_expire, then a scheduler pass).
Every wait has a timeout: `result()` on a job Slurm lost can otherwise wait forever."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.paths import CODE_ROOT
from experiments import launcher
from tests.launcher_targets import starts
from tests.slurm_cluster import sacct_states, slurm_marks, wait_until

RUN = "rq: rqx\nmodel: {fusion: mid, sharing: part}\n"


pytestmark = [pytest.mark.slurm, *slurm_marks()]


def step(folder: Path) -> int:
    try:
        return json.loads((folder / "checkpoints" / "last.json").read_text())["step"]
    except (OSError, ValueError):
        return -1


@pytest.fixture
def rq(tmp_path):
    configs = tmp_path / "rqx" / "configs"
    configs.mkdir(parents=True)
    for name in ("a", "b"):
        (configs / f"{name}.yaml").write_text(RUN)
    return tmp_path / "rqx"


def common(tmp_path, target):
    return ["--cluster", "slurm", "--profile", "smoke", "--poll-s", "1", "--target", f"tests.launcher_targets:{target}",
            f"output_root={tmp_path / 'results'}"]


def test_sweep_is_one_job_array(rq, tmp_path):
    out = io.StringIO()
    summary = launcher.launch(rq, common(tmp_path, "quick") + ["--wait-timeout-min", "2"], out=out)
    assert summary.exit_code == 0, out.getvalue()
    ids = [o.job_id for o in summary.outcomes]
    array = {i.split("_")[0] for i in ids}
    assert len(array) == 1 and sorted(i.split("_")[1] for i in ids) == ["0", "1"], ids  # one array, 2 tasks
    wait_until(lambda: set(sacct_states(ids).values()) == {"COMPLETED"}, 30, "sacct COMPLETED")
    for o in summary.outcomes:
        folder = tmp_path / "results" / "rqx" / o.plan.name
        assert json.loads((folder / "metrics.json").read_text())["status"] == "complete"
        assert starts(folder)[0]["code"] == str(summary.snapshot)
        assert (folder / "submitit" / o.job_id).is_symlink() and (folder / "submitit" / o.job_id / ".").is_dir()
    again = launcher.launch(rq, common(tmp_path, "quick"), out=io.StringIO())
    assert [o.status for o in again.outcomes] == ["skipped", "skipped"]


def test_submitit_preemption_requeues_and_resumes(rq, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_STEP_S", "0.2")
    args = common(tmp_path, "progress") + ["--only", "a", "pretrain.steps_per_epoch=30"]
    summary = launcher.launch(rq, args + ["--no-wait"], out=io.StringIO())
    outcome = summary.get("a")
    folder = tmp_path / "results" / "rqx" / "a"
    wait_until(lambda: step(folder) >= 5, 60, "5 steps of the first attempt")

    assert f"skip (queued: job {outcome.job_id}" in _plan_states(rq, args)  # a relaunch must not duplicate it

    outcome.job._interrupt()  # SIGTERM then SIGUSR2, as Slurm does on preemption
    launcher.wait_for(summary, timeout_s=150, poll_s=1, out=io.StringIO())
    assert outcome.status == "ran", outcome.error
    first, second = starts(folder)
    assert (first["restart"], second["restart"]) == (0, 1)
    assert first["resumed_from"] == 0 and second["resumed_from"] >= 5
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["steps"] == 30 and metrics["status"] == "complete"
    # the result pickle can arrive before Slurm records the job's end: wait for accounting, bounded
    wait_until(lambda: sacct_states([outcome.job_id]).get(outcome.job_id) == "COMPLETED", 60,
               f"sacct COMPLETED for job {outcome.job_id}", poll_s=1)


def _plan_states(rq, args) -> str:
    out = io.StringIO()
    launcher.launch(rq, args + ["--dry-run"], out=out)
    return out.getvalue()


def test_sbatch_array_usr1_trap_requeues_and_resumes(tmp_path):
    """slurm/run_array.sbatch with a fake entry point: USR1 to the batch shell -> forwarded to the run ->
    it saves and exits 3 -> the script requeues the task -> the rerun resumes from the saved step."""
    listing = tmp_path / "list.txt"
    listing.write_text("# one config per line\nexperiments/rq3_sharing/configs/part.yaml\n")
    env = {**os.environ, "AVBERT_ENTRY": "tests/fake_run.py", "PYTHON": sys.executable, "FAKE_STEP_S": "0.2"}
    cmd = ["sbatch", "--parsable", "--array=0-0", f"--output={tmp_path}/%A_%a.out", "--cpus-per-task=1",
           "--time=5", "slurm/run_array.sbatch", str(listing), "--profile", "smoke",
           f"output_root={tmp_path / 'results'}", "pretrain.steps_per_epoch=30"]
    array_id = subprocess.run(cmd, cwd=CODE_ROOT, env=env, capture_output=True, text=True, timeout=30,
                              check=True).stdout.strip().split(";")[0]
    task = f"{array_id}_0"
    folder = tmp_path / "results" / "rq3_sharing" / "part"
    try:
        wait_until(lambda: step(folder) >= 5, 60, "5 steps of the first attempt")
        subprocess.run(["scancel", "--batch", "--signal=USR1", task], check=True, timeout=30)
        wait_until(lambda: sacct_states([task]).get(task) in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"),
                   150, f"job {task} to finish after its requeue", poll_s=1)
    finally:
        subprocess.run(["scancel", task], capture_output=True, timeout=30)
    log = (tmp_path / f"{array_id}_0.out").read_text()
    assert sacct_states([task])[task] == "COMPLETED", log
    assert "USR1: asking the run to save" in log and "asked for a requeue" in log  # --open-mode=append kept both
    first, second = starts(folder)
    assert (first["restart"], second["restart"]) == (0, 1), log
    assert second["resumed_from"] >= 5
    assert json.loads((folder / "metrics.json").read_text())["steps"] == 30
