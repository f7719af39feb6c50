"""The launcher on this machine (no SLURM needed): dry runs, validation before submission, idempotent
relaunches, --only, resource flags, failures, the code snapshot, and preemption -> requeue -> resume with
submitit's local executor. Fake targets (tests/launcher_targets.py) stand in for training: seconds each."""
from __future__ import annotations

import io
import json
import os
import signal
import time
from pathlib import Path

import pytest

from common.paths import CODE_ROOT
from experiments import launch_jobs, launcher, preemption
from experiments.cluster_profile import ClusterProfile, load_cluster_profile
from experiments.config import ConfigError
from experiments.launch_plan import load_plans
from experiments.snapshot import code_files, make_snapshot
from experiments.submitit_job import RunJob
from tests.launcher_targets import starts

RUN = "rq: rqx\nmodel: {fusion: mid, sharing: part}\n"


@pytest.fixture
def rq(tmp_path):
    """A throw-away research question with two valid configs and a `_tiny.yaml` delta (never a run)."""
    configs = tmp_path / "rqx" / "configs"
    configs.mkdir(parents=True)
    (configs / "a.yaml").write_text(RUN)
    (configs / "b.yaml").write_text("rq: rqx\nmodel: {fusion: mid, sharing: none}\n")
    (configs / "_tiny.yaml").write_text("seed: 3\n")
    return tmp_path / "rqx"


def args(tmp_path, *extra, target="quick"):
    return [*extra, "--target", f"tests.launcher_targets:{target}", f"output_root={tmp_path / 'results'}"]


def run(rq_dir, argv):
    out = io.StringIO()
    summary = launcher.launch(rq_dir, argv, out=out)
    return summary, out.getvalue()


@pytest.fixture
def no_submit(monkeypatch):
    """Fail the test if anything is submitted."""
    calls = []

    def boom(*a, **k):
        calls.append(a)
        raise AssertionError("submitted")

    for name in ("submit_local", "submit_slurm", "run_debug"):
        monkeypatch.setattr(launcher, name, boom)
    return calls


def test_dry_run_prints_every_job_and_submits_nothing(rq, tmp_path, no_submit):
    summary, text = run(rq, args(tmp_path, "--dry-run", "--cluster", "slurm", "pretrain.epochs=2"))
    assert summary.exit_code == 0 and summary.dry_run and no_submit == []
    for name in ("a", "b"):
        assert f"] {name} " in text
        assert str(tmp_path / "results" / "rqx" / name) in text
    assert "_tiny" not in text  # profile deltas are not runs
    assert text.count("resources: cluster=slurm partition=debug") == 2
    assert "pretrain=2x" in text and "sharing=none" in text and "hash=" in text
    assert "nothing submitted" in text
    assert not (tmp_path / "results").exists()  # no folders, no snapshot, no data


def test_invalid_config_fails_before_any_submission(rq, tmp_path, no_submit):
    (rq / "configs" / "c_typo.yaml").write_text(RUN + "pretrain: {epoch: 3}\n")
    (rq / "configs" / "d_type.yaml").write_text(RUN + "seed: zero\n")
    summary, text = run(rq, args(tmp_path))
    assert summary.exit_code == 2 and no_submit == [] and summary.outcomes == []
    assert "c_typo.yaml" in text and "'pretrain.epoch'" in text and "valid keys" in text
    assert "d_type.yaml" in text and "'seed'" in text and "expected int" in text  # every error, not just the first
    assert "nothing was submitted" in text
    assert not (tmp_path / "results").exists()


def test_local_runs_write_results_from_a_snapshot_and_relaunch_skips(rq, tmp_path):
    summary, text = run(rq, args(tmp_path))
    assert summary.exit_code == 0, text
    assert [o.status for o in summary.outcomes] == ["ran", "ran"]
    for name in ("a", "b"):
        folder = tmp_path / "results" / "rqx" / name
        assert json.loads((folder / "metrics.json").read_text())["status"] == "complete"
        (start,) = starts(folder)
        assert Path(start["code"]) == summary.snapshot  # the job ran the snapshot, not the live tree
        assert summary.snapshot.parent == tmp_path / "results" / ".snapshots"
        assert start["avbert_root"] == str(CODE_ROOT) and start["threads"] == "1"  # tiny: 1 cpu per task, 2 runs at once
        assert (folder / "submitit" / "last_job.json").is_file()
        assert not (folder / "submitit" / "%j").exists()  # submitit's literal template folder is removed
    assert len({o.job_id for o in summary.outcomes}) == 2 and all(o.job_id for o in summary.outcomes)
    assert "2 ran, 0 skipped, 0 failed" in text and "python tables/make_table1.py --profile tiny" in text
    runs = " ".join(str(tmp_path / "results" / "rqx" / n) for n in "ab")  # outside the repo: absolute
    assert f"curves: python tables/plot_curves.py {runs}\n" in text

    again, text = run(rq, args(tmp_path))
    assert again.exit_code == 0 and [o.status for o in again.outcomes] == ["skipped", "skipped"]
    assert "0 ran, 2 skipped" in text and again.snapshot is None
    assert all(len(starts(tmp_path / "results" / "rqx" / n)) == 1 for n in "ab")

    changed, _ = run(rq, args(tmp_path, "--only", "a", "seed=4"))  # another config hash: not complete
    assert changed.count("ran") == 1


def test_local_array_parallelism_1_runs_one_at_a_time(rq, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_STEP_S", "0.05")
    summary, _ = run(rq, args(tmp_path, "--array-parallelism", "1", "pretrain.steps_per_epoch=10", target="progress"))
    assert summary.exit_code == 0
    a_done = (tmp_path / "results" / "rqx" / "a" / "metrics.json").stat().st_mtime
    b_start = starts(tmp_path / "results" / "rqx" / "b")[0]["time"]
    assert b_start >= a_done - 0.05  # array_parallelism 1: b starts only after a finished


def test_seeds_run_every_config_once_per_seed(rq, tmp_path):
    summary, text = run(rq, args(tmp_path, "--only", "a", "--seeds", "0,2"))
    assert summary.exit_code == 0, text
    assert sorted(o.plan.name for o in summary.outcomes) == ["a", "a_seed2"]
    for folder, seed in (("a", 0), ("a_seed2", 2)):
        metrics = json.loads((tmp_path / "results" / "rqx" / folder / "metrics.json").read_text())
        assert metrics["status"] == "complete" and metrics["seed"] == seed and metrics["run"] == folder
    again, _ = run(rq, args(tmp_path, "--only", "a", "--seeds", "0,2"))
    assert [o.status for o in again.outcomes] == ["skipped", "skipped"]
    for bad in ("1,1", "x", "-1"):
        with pytest.raises(SystemExit):
            run(rq, args(tmp_path, "--seeds", bad))


def test_only_selects_runs(rq, tmp_path, no_submit):
    summary, text = run(rq, args(tmp_path, "--dry-run", "--only", "b"))
    assert "] b " in text and "] a " not in text and "1 config(s)" in text
    summary, text = run(rq, args(tmp_path, "--dry-run", "--only", "b,zzz"))
    assert summary.exit_code == 2 and "zzz" in text and "available: a, b" in text


def test_resource_flags_override_the_cluster_profile(rq, tmp_path, no_submit):
    summary, text = run(rq, args(tmp_path, "--dry-run", "--cluster", "slurm", "--partition", "gpu", "--cpus-per-task",
                                 "3", "--time-min", "7", "--mem-gb", "12", "--array-parallelism", "2", "--qos", "high"))
    res = summary.resources
    assert (res.partition, res.cpus_per_task, res.timeout_min, res.mem_gb, res.array_parallelism, res.qos) == \
        ("gpu", 3, 7, 12.0, 2, "high")
    assert "partition=gpu" in text and "cpus/task=3" in text and "time=7min" in text and "mem=12GB" in text
    bad, text = run(rq, args(tmp_path, "--dry-run", "--nodes", "0"))
    assert bad.exit_code == 2 and "nodes must be >= 1" in text


def test_cluster_profiles_are_validated(tmp_path):
    for profile in ("tiny", "smoke", "paper"):
        assert isinstance(load_cluster_profile(profile), ClusterProfile)
    paper = load_cluster_profile("paper")
    assert paper.ntasks_per_node == paper.gpus_per_node == 8 and paper.timeout_min == 72 * 60
    (tmp_path / "typo.yaml").write_text("gpu_per_node: 8\n")
    with pytest.raises(ConfigError) as e:
        load_cluster_profile("typo", slurm_dir=tmp_path)
    assert "typo.yaml" in str(e.value) and "'gpu_per_node'" in str(e.value) and "gpus_per_node" in str(e.value)
    (tmp_path / "mismatch.yaml").write_text("gpus_per_node: 8\ntasks_per_node: 4\n")
    with pytest.raises(ConfigError, match="one task"):
        load_cluster_profile("mismatch", slurm_dir=tmp_path)
    (tmp_path / "wrongtype.yaml").write_text("cpus_per_task: many\n")
    with pytest.raises(ConfigError, match="expected int"):
        load_cluster_profile("wrongtype", slurm_dir=tmp_path)


def test_failed_run_is_reported_with_its_logs(rq, tmp_path):
    (rq / "configs" / "bad_one.yaml").write_text(RUN)
    summary, text = run(rq, args(tmp_path, "--array-parallelism", "3", target="fail_if_named_bad"))
    assert summary.exit_code == 1
    assert [(o.plan.name, o.status) for o in summary.outcomes] == [("a", "ran"), ("b", "ran"), ("bad_one", "failed")]
    bad = summary.get("bad_one")
    assert "boom in bad_one" in bad.error
    stdout, stderr = bad.logs
    assert stderr.is_file() and "boom in bad_one" in stderr.read_text() and str(stderr) in text
    assert "2 ran, 0 skipped, 1 failed" in text


def test_debug_cluster_runs_in_process_without_pdb(rq, tmp_path, capsys):
    (rq / "configs" / "bad_one.yaml").write_text(RUN)
    summary, _ = run(rq, args(tmp_path, "--cluster", "debug", target="fail_if_named_bad"))
    assert summary.exit_code == 1 and summary.get("a").status == "ran"
    assert summary.get("bad_one").status == "failed" and "boom" in summary.get("bad_one").error
    assert len(starts(tmp_path / "results" / "rqx" / "bad_one")) == 1  # ran once (no pdb, no re-run)
    assert starts(tmp_path / "results" / "rqx" / "a")[0]["pid"] == os.getpid()
    assert "boom in bad_one" in capsys.readouterr().err  # the traceback is printed
    assert not any((tmp_path / "results" / "rqx").glob("*/submitit/%j"))


def test_interrupted_local_run_requeues_and_resumes(rq, tmp_path, monkeypatch):
    """SIGUSR2 to the job process = submitit's preemption/time-out signal: checkpoint() saves through the
    registered saver, the local executor restarts the job, and it resumes from the saved step.
    (LocalJob._interrupt() signals the controller, which does not forward USR2; we signal the task.)"""
    monkeypatch.setenv("FAKE_STEP_S", "0.1")
    summary, _ = run(rq, args(tmp_path, "--only", "a", "--no-wait", "pretrain.steps_per_epoch=40",
                              target="progress"))
    folder = tmp_path / "results" / "rqx" / "a"
    ckpt = folder / "checkpoints" / "last.json"
    deadline = time.time() + 30
    while not (ckpt.is_file() and json.loads(ckpt.read_text())["step"] >= 5) and time.time() < deadline:
        time.sleep(0.1)
    os.kill(starts(folder)[0]["pid"], signal.SIGUSR2)
    launcher.wait_for(summary, timeout_s=60, poll_s=0.5, out=io.StringIO())
    assert summary.get("a").status == "ran", summary.get("a").error
    first, second = starts(folder)
    assert first["resumed_from"] == 0 and second["resumed_from"] >= 5
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["steps"] == 40 and metrics["resumed_from"] >= 5


def test_checkpoint_saves_then_returns_a_fresh_job_with_the_same_args():
    saved = []
    preemption.register_saver(lambda: saved.append(1) or True)
    try:
        job = RunJob("tests.launcher_targets:quick", repo_root="/x", cpus_per_task=3)
        delayed = job.checkpoint({"name": "a"}, resume=True)
    finally:
        preemption.unregister_saver()
    assert saved == [1]
    fresh = delayed.function
    assert isinstance(fresh, RunJob) and fresh is not job
    assert (fresh.target, fresh.repo_root, fresh.cpus_per_task) == ("tests.launcher_targets:quick", "/x", 3)
    assert delayed.args == ({"name": "a"},) and delayed.kwargs == {"resume": True}


def test_snapshot_is_content_addressed_and_keeps_untracked_code(tmp_path):
    files = code_files(CODE_ROOT)
    assert "experiments/launcher.py" in files and "experiments/profiles/tiny.yaml" in files
    assert not any(f.startswith(("results/", ".venv/", ".git/")) or "__pycache__" in f for f in files)
    one = make_snapshot(CODE_ROOT, tmp_path / "snaps")
    two = make_snapshot(CODE_ROOT, tmp_path / "snaps")
    assert one == two and (one / "experiments" / "launcher.py").is_file()
    assert (one / "SNAPSHOT_COMMIT").is_file() and (one / ".complete").is_file()
    assert not list((tmp_path / "snaps").glob(".tmp-*"))


def test_make_list_leaves_out_deltas_excluded_and_complete_runs(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_list", CODE_ROOT / "slurm" / "make_list.py")
    make_list = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_list)
    out = tmp_path / "list.txt"
    assert make_list.main(["rq5_transfer", "--profile", "tiny", "--out", str(out),
                           f"output_root={tmp_path / 'results'}"]) == 0
    listed = out.read_text().split()
    assert "experiments/rq5_transfer/configs/synthetic.yaml" in listed
    assert not any(p.endswith(("k700.yaml", "audioset.yaml", "_tiny.yaml")) for p in listed)  # paper-only/deltas
    cmd = capsys.readouterr().out
    assert cmd.startswith("sbatch --array=0-") and "slurm/run_array.sbatch" in cmd and "--profile tiny" in cmd


def test_record_and_active_job_roundtrip(rq, tmp_path, monkeypatch):
    """A relaunch must not resubmit a run whose recorded SLURM job is still queued."""
    plan = load_plans([rq / "configs" / "a.yaml"], [f"output_root={tmp_path / 'results'}"], "tiny")[0][0]

    class FakeJob:
        job_id = "77_1"
        paths = type("P", (), {"folder": tmp_path / "results" / "rqx" / ".submitit" / "77_1", "stdout": "o",
                               "stderr": "e"})()

    launch_jobs._record_job(plan, FakeJob(), "slurm")
    link = plan.run_dir / "submitit" / "77_1"
    assert link.is_symlink() and os.readlink(link) == "../../.submitit/77_1"

    class Done:
        returncode, stdout = 0, "RUNNING\n"

    monkeypatch.setattr(launch_jobs.subprocess, "run", lambda *a, **k: Done())
    assert launch_jobs.active_job(plan) == "77_1"
    Done.stdout = ""
    assert launch_jobs.active_job(plan) is None


def test_an_override_error_shared_by_every_config_is_reported_once():
    out = io.StringIO()
    summary = launcher.launch(CODE_ROOT / "experiments" / "rq3_sharing", ["--dry-run", "model.bogus=1"], out=out)
    assert len(summary.errors) == 5  # one per config, as load_plans found them
    text = out.getvalue()
    assert "1 error(s); nothing was submitted" in text and "invalid config" not in text
    assert text.count("unknown key 'model.bogus'") == 1
    assert "in each of 5 configs: all.yaml, cross_layer.yaml, multi2.yaml, none.yaml, part.yaml" in text
    mixed = launcher.collapse_errors(["/x/a.yaml (+ overrides k=1): bad", "--only: unknown run name(s) z",
                                      "/x/b.yaml (+ overrides k=1): bad", "/x/c.yaml (+ overrides k=1): other"])
    assert mixed == ["overrides k=1: bad (in each of 2 configs: a.yaml, b.yaml)", "--only: unknown run name(s) z",
                     "/x/c.yaml (+ overrides k=1): other"]


def test_profile_as_an_override_is_refused_with_the_flag_to_use(rq, tmp_path, no_submit):
    summary, text = run(rq, args(tmp_path, "--dry-run", "profile=smoke"))
    assert summary.exit_code != 0 and no_submit == []
    assert "--profile" in text and "profile=" in text


def test_the_launcher_generates_only_the_synthetic_tasks_its_runs_read(tmp_path):
    """ensure_data: one generation per data root, of the union of the tasks the submitted runs read (RQ3 reads
    the pretraining clips and ks_like / bind_like); the others are left for the launches that need them."""
    root = tmp_path / "syn"
    common = [f"data.root={root}", f"output_root={tmp_path / 'results'}"]
    rq3, errors = load_plans([CODE_ROOT / "experiments/rq3_sharing/configs/part.yaml"], common, "smoke")
    audio = "downstream=[{name: a, task: esc_like, protocol: linear, model: a_cnn, modalities: [audio]}]"
    rq1, more = load_plans([CODE_ROOT / "experiments/rq1_end_to_end/configs/no_pretrain.yaml"], [*common, audio], "smoke")
    assert not errors and not more
    out = io.StringIO()
    launcher.ensure_data(rq3, out)
    assert "for bind_like, ks_like, pretrain" in out.getvalue()
    assert sorted(p.name for p in root.iterdir()) == ["bind_like", "ks_like", "pretrain", "pretrain_val", "synthetic.json"]
    launcher.ensure_data(rq1, out)  # no pretraining clips read, one more task
    assert "for esc_like" in out.getvalue()
    assert sorted(p.name for p in root.iterdir()) == ["bind_like", "esc_like", "ks_like", "pretrain", "pretrain_val",
                                                      "synthetic.json"]
