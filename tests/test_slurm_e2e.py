"""End to end on the local SLURM cluster (`bash slurm/local_slurm.sh up`): the real rq3_sharing launcher,
the real entry point (experiments.run:execute, no fake target), real training on the synthetic benchmark,
then Table 1 from those results.

One launch serves all three tests (a module fixture), so the file costs about one smoke run plus a
requeue instead of three runs (~70 s in all on 2 cores, plus ~30 s the first time anyone generates the
synthetic benchmark into data/cache/):
    rq3_sharing --cluster slurm --profile smoke --only part,all   (one job array of 2 tasks, 1 CPU each)
with 12 pretraining steps instead of 4 (so a preemption lands inside pretraining) and a log line per
step. While both tasks run, `part` is preempted through submitit (`job._interrupt()`: SIGTERM, then
SIGUSR2 -> RunJob.checkpoint() writes last.pt -> `scontrol requeue`); Slurm restarts it after
cred_expire (10 s), it resumes from last.pt and finishes.
  * test_sweep_results: one array, sacct COMPLETED, every run folder's files, a relaunch skips both;
  * test_preempted_run_resumed: the requeued attempt resumed pretraining at the saved step;
  * test_table1_from_results: make_table1 on these results: `ours` cells for part/all, `missing` else.
Every wait has a timeout (a lost job fails the test instead of hanging it); jobs left on failure are
cancelled at teardown."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import time
from pathlib import Path

import pytest

from common.paths import CODE_ROOT
from experiments import launcher
from experiments.run_folder import result_hash
from tests.slurm_cluster import sacct_states, slurm_marks, wait_until

pytestmark = [pytest.mark.slurm, *slurm_marks()]

RQ_DIR = CODE_ROOT / "experiments" / "rq3_sharing"
RUNS = ("part", "all")
OTHERS = ("multi2", "none", "cross_layer")
PREEMPTED = "part"
STEPS = 12  # smoke profile: 4; more leaves room to interrupt inside pretraining (~1 s/step on 1 CPU)
INTERRUPT_AT = 3  # interrupt once the log shows this step (last.pt holds step 2: checkpoint_every=2)
OVERRIDES = [f"pretrain.steps_per_epoch={STEPS}", "pretrain.checkpoint_every=2", "runtime.log_every=1"]
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE"}


def read_log(folder: Path) -> list[dict]:
    path = folder / "log.jsonl"
    if not path.is_file():
        return []
    lines = []
    for line in path.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:  # a line being written right now
            pass
    return lines


def pretrain_step(folder: Path) -> int:
    steps = [r["step"] for r in read_log(folder) if r.get("stage") == "pretrain" and "step" in r]
    return max(steps, default=0)


def job_log(outcome) -> str:
    """The job's stdout+stderr (where a failure's traceback is)."""
    parts = []
    for p in outcome.logs or ():
        try:
            parts.append(Path(p).read_text(errors="replace")[-4000:])
        except OSError:
            pass
    return "\n".join(parts)


def restarts(job_id: str) -> int | None:
    """Slurm's restart count of a job it still remembers (MinJobAge=300 s on the local cluster)."""
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=30).stdout
    for tok in out.split():
        if tok.startswith("Restarts="):
            return int(tok.split("=", 1)[1])
    return None


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Launch part+all as one array, preempt `part` mid-pretraining, wait for both. Returns a dict."""
    tmp = tmp_path_factory.mktemp("e2e")
    results = tmp / "results"
    args = ["--cluster", "slurm", "--profile", "smoke", "--only", ",".join(RUNS), "--poll-s", "1",
            f"output_root={results}", *OVERRIDES]
    t0 = time.time()
    out = io.StringIO()
    summary = launcher.launch(RQ_DIR, args + ["--no-wait"], out=out)
    ids = [o.job_id for o in summary.outcomes if o.job is not None]
    try:
        assert summary.exit_code == 0 and [o.status for o in summary.outcomes] == ["submitted"] * 2, out.getvalue()
        t_submitted = time.time()
        target = summary.get(PREEMPTED)
        folder = results / "rq3_sharing" / PREEMPTED
        # first attempt: running, last.pt written, the log shows progress; fail fast if it died
        wait_until(lambda: pretrain_step(folder) >= INTERRUPT_AT or target.job.done(), 120,
                   f"{PREEMPTED}: pretraining step {INTERRUPT_AT} in {folder / 'log.jsonl'}")
        assert not target.job.done(), f"{PREEMPTED} ended before it could be preempted:\n{job_log(target)}"
        assert (folder / "checkpoints" / "last.pt").is_file()
        step_at_interrupt = pretrain_step(folder)
        t_interrupt = time.time()
        target.job._interrupt()  # SIGTERM then SIGUSR2, as Slurm does on preemption
        launcher.wait_for(summary, timeout_s=240, poll_s=1, out=out)
        # sacct can lag the result pickles by a poll
        wait_until(lambda: set(sacct_states(ids)).issuperset(ids)
                   and all(s in TERMINAL for s in sacct_states(ids).values()), 30, "sacct final states", poll_s=1)
        t_done = time.time()
    finally:
        if ids:  # never leave jobs of a failed test on the cluster
            subprocess.run(["scancel", *ids], capture_output=True, timeout=30)
    times = {"submit_s": t_submitted - t0, "to_interrupt_s": t_interrupt - t_submitted,
             "interrupt_to_done_s": t_done - t_interrupt, "total_s": t_done - t0}
    print(f"\ne2e sweep timings: {json.dumps({k: round(v, 1) for k, v in times.items()})}")
    return {"summary": summary, "results": results, "ids": ids, "args": args, "out": out, "tmp": tmp,
            "step_at_interrupt": step_at_interrupt, "times": times}


def test_sweep_results(sweep):
    summary, results = sweep["summary"], sweep["results"]
    assert summary.exit_code == 0, sweep["out"].getvalue() + "\n".join(job_log(o) for o in summary.outcomes)
    ids = sweep["ids"]
    assert len({i.split("_")[0] for i in ids}) == 1 and sorted(i.split("_")[1] for i in ids) == ["0", "1"], ids
    assert sacct_states(ids) == dict.fromkeys(ids, "COMPLETED")
    for name in RUNS:
        folder = results / "rq3_sharing" / name
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["status"] == "complete" and metrics["run"] == name and metrics["profile"] == "smoke"
        assert metrics["rq"] == "rq3_sharing" and metrics["config_hash"] == result_hash(summary.get(name).plan.cfg)
        assert metrics["pretrain"]["steps"] == STEPS
        params = metrics["params"]
        assert params["transformer"] > 0 and params["total"] >= params["transformer"] + params["visual_cnn"]
        av = metrics["downstream"]["av"]
        assert av["task"] == "ks_like" and av["model"] == "m_bert" and av["init"] == "pretrained"
        for key in ("top1", "top5"):  # percentages (model.metrics.topk_accuracy), like the paper's tables
            assert isinstance(av[key], float) and 0.0 <= av[key] <= 100.0, (key, av)
        assert av["top5"] >= av["top1"]
        assert summary.get(name).metrics["downstream"]["av"]["top1"] == av["top1"]  # what the job returned
        prov = json.loads((folder / "provenance.json").read_text())
        assert isinstance(prov, dict) and prov
        cfg = (folder / "config.yaml").read_text()
        assert f"sharing: {name}" in cfg and f"steps_per_epoch: {STEPS}" in cfg
        assert not (folder / "metrics.partial.json").exists()
        # jobs ran from the code snapshot, results landed under output_root
        last = json.loads((folder / "submitit" / "last_job.json").read_text())
        assert last["cluster"] == "slurm" and last["job_id"] == summary.get(name).job_id
    assert summary.snapshot is not None and summary.snapshot.is_relative_to(results)
    again = io.StringIO()
    relaunch = launcher.launch(RQ_DIR, sweep["args"], out=again)
    assert [o.status for o in relaunch.outcomes] == ["skipped"] * 2, again.getvalue()
    assert "0 ran, 2 skipped, 0 failed" in again.getvalue() and "submitted" not in again.getvalue()
    assert f"tables: python tables/make_table1.py --profile smoke --results {results}\n" in again.getvalue()


def test_preempted_run_resumed(sweep):
    folder = sweep["results"] / "rq3_sharing" / PREEMPTED
    outcome = sweep["summary"].get(PREEMPTED)
    assert outcome.status == "ran", f"{outcome.error}\n{job_log(outcome)}"
    log = read_log(folder)
    resumed = [r for r in log if r.get("event") == "resumed"]
    assert len(resumed) == 1 and resumed[0]["stage"] == "pretrain", resumed
    at = resumed[0]["step"]
    # last.pt is written every 2 steps and by checkpoint() at the interrupt: never behind the periodic one
    assert at >= 2 and at >= sweep["step_at_interrupt"] - 1, (at, sweep["step_at_interrupt"])
    assert at < STEPS, "the preemption landed after pretraining: nothing to resume"
    i = log.index(resumed[0])
    before = [r["step"] for r in log[:i] if r.get("stage") == "pretrain" and "step" in r and "event" not in r]
    after = [r["step"] for r in log[i + 1:] if r.get("stage") == "pretrain" and "step" in r and "event" not in r]
    assert before and max(before) >= at and after == list(range(at + 1, STEPS + 1)), (before, after)
    # each downstream evaluation once, after the resume
    assert sum(r.get("event") == "result" for r in log) == len(metrics_evals := json.loads((folder / "metrics.json").read_text())["downstream"])
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["pretrain"]["steps"] == STEPS
    assert restarts(outcome.job_id) in (1, None)  # None: Slurm already forgot the job (MinJobAge)
    other = read_log(sweep["results"] / "rq3_sharing" / RUNS[1])
    assert not [r for r in other if r.get("event") == "resumed"]  # the other task was left alone


def test_table1_from_results(sweep, capsys):
    from tables import make_table1

    out = sweep["tmp"] / "tables"
    assert make_table1.main(["--results", str(sweep["results"]), "--profile", "smoke", "--out", str(out),
                             "--quiet"]) == 0
    for name in ("table1.md", "table1.csv", "table1_sharing.md", "table1_sharing.tex", "table1_sharing.csv",
                 "table1_fusion.md", "table1_negatives.tex", "table1_end_to_end.csv"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for name in ("table1_sharing.png", "table1_fusion.png", "table1_negatives.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name

    with open(out / "table1_sharing.csv", newline="") as f:
        cells = {(r["row"], r["column"]): r for r in csv.DictReader(f)}
    for name in RUNS:
        metrics = json.loads((sweep["results"] / "rq3_sharing" / name / "metrics.json").read_text())
        for col, want in (("top1", metrics["downstream"]["av"]["top1"]),
                          ("top5", metrics["downstream"]["av"]["top5"]),
                          ("params", metrics["params"]["transformer"])):
            c = cells[(name, col)]
            assert c["status"] == "ok" and float(c["ours_mean"]) == pytest.approx(want), c
            assert c["runs"] == f"rq3_sharing/{name}" and c["profile"] == "smoke" and not c["command"], c
    for name in OTHERS:
        for col in ("top1", "top5", "params"):
            c = cells[(name, col)]
            assert c["status"] == "missing" and not c["ours_mean"], c
            assert c["command"].endswith(f"--profile smoke --only {name}"), c

    md = (out / "table1_sharing.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| Multi")}
    assert len(rows) == 5, md
    for label, line in rows.items():
        filled = "Part" in label or label.endswith("All")
        assert ("missing" in line) != filled, line
        if filled:
            assert "rq3_sharing/" in line and "smoke" in line, line
    for name in OTHERS:
        assert f"--only {name}`" in md
    tex = (out / "table1_sharing.tex").read_text()
    assert "\\begin{tabular}" in tex and "missing" in tex
    assert "wrote" in capsys.readouterr().err
