"""Submitting planned runs with submitit and waiting for them: SLURM arrays, a paced local executor,
and in-process debug runs.

Why three paths:
* slurm: a sweep is ONE job array (`executor.batch()`), so `%array_parallelism` throttles it and
  `scancel <array id>` stops it. One array has one submitit folder (`<rq>/.submitit/%j`, hidden from the
  table scripts); each run folder gets `submitit/<job id>` as a link to its logs, plus `last_job.json`.
  A single run uses `<run>/submitit/%j` directly.
* local: submitit's LocalExecutor starts every job at once; on a 2-core laptop/CI box five runs would
  fight over the cores, so we submit at most `array_parallelism` at a time and top up as they finish.
* debug: in-process, one after the other. submitit's DebugJob.result() drops into pdb on an exception;
  `exception()` runs the job without pdb, so we collect through it.
Every submission happens with the code snapshot as the working directory: the job's sys.path[0].
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import submitit
import submitit.local.debug
from tqdm import tqdm

from common.fsutil import atomic_write_json
from experiments import run_progress
from experiments.cluster_profile import ClusterProfile, local_parameters, slurm_parameters
from experiments.launch_plan import RunPlan

ACTIVE_SLURM_STATES = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED",
                       "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT"}


@dataclass
class Outcome:
    """One planned run and what happened to it."""

    plan: RunPlan
    status: str  # skipped | submitted | ran | failed | unfinished
    job: Any = None
    metrics: Any = None
    error: str = ""
    wall_s: float | None = None
    started: float | None = None
    exc: BaseException | None = None

    @property
    def job_id(self) -> str:
        if isinstance(self.job, submitit.local.debug.DebugJob):
            return "in-process"
        return str(self.job.job_id) if self.job is not None else ""

    @property
    def logs(self) -> tuple[Path, Path] | None:
        if self.job is None or isinstance(self.job, submitit.local.debug.DebugJob):
            return None  # debug runs print to the launcher's console
        return Path(self.job.paths.stdout), Path(self.job.paths.stderr)


# ---- bookkeeping in the run folder -----------------------------------------------------------------
def _record_job(plan: RunPlan, job: Any, cluster: str) -> None:
    """`<run>/submitit/last_job.json` (+ a link to an array task's log folder): where the logs are, and
    what a relaunch checks to avoid submitting a run that is still queued."""
    folder = plan.run_dir / "submitit"
    folder.mkdir(parents=True, exist_ok=True)
    job_folder = Path(job.paths.folder)
    if job_folder.parent != folder:
        link = folder / str(job.job_id)
        if not link.is_symlink() and not link.exists():
            link.symlink_to(os.path.relpath(job_folder, folder), target_is_directory=True)
    atomic_write_json(folder / "last_job.json", {
        "cluster": cluster, "job_id": str(job.job_id), "submitted": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr), "pid": os.getpid()})


def active_job(plan: RunPlan) -> str | None:
    """Id of a still queued/running SLURM job recorded for this run (relaunch must not duplicate it)."""
    try:
        rec = json.loads((plan.run_dir / "submitit" / "last_job.json").read_text())
    except (OSError, ValueError):
        return None
    if rec.get("cluster") != "slurm" or not rec.get("job_id"):
        return None
    try:
        out = subprocess.run(["squeue", "-h", "-j", rec["job_id"], "-o", "%T"], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    states = set(out.stdout.split()) if out.returncode == 0 else set()
    return rec["job_id"] if states & ACTIVE_SLURM_STATES else None


# ---- executors ---------------------------------------------------------------------------------------
def make_executor(cluster: str, folder: Path, res: ClusterProfile, job_name: str):
    if cluster == "slurm":
        ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=res.max_num_timeout)
        ex.update_parameters(**slurm_parameters(res, job_name))
    elif cluster == "local":
        ex = submitit.LocalExecutor(folder=folder, max_num_timeout=res.max_num_timeout)
        ex.update_parameters(**local_parameters(res))
    elif cluster == "debug":
        ex = submitit.DebugExecutor(folder=folder)
    else:
        raise ValueError(f"unknown cluster {cluster!r}: choose local, slurm or debug")
    return ex


def _drop_template_dir(folder: Path) -> None:
    """submitit leaves an empty literal `%j` folder next to the real job folders: remove it if empty."""
    with contextlib.suppress(OSError):
        Path(folder).rmdir()


def _in(code_dir: Path | None):
    return contextlib.chdir(code_dir) if code_dir is not None else contextlib.nullcontext()


def submit_slurm(outcomes: list[Outcome], res: ClusterProfile, make_job: Callable[[], Any],
                 code_dir: Path | None) -> None:
    """All runs as one job array (a single run as a plain job in its own folder)."""
    if not outcomes:
        return
    first = outcomes[0].plan
    if len(outcomes) == 1:
        folder, name = first.run_dir / "submitit" / "%j", f"avbert-{first.cfg.rq}-{first.name}"
    else:
        folder, name = first.run_dir.parent / ".submitit" / "%j", f"avbert-{first.cfg.rq}"
    ex = make_executor("slurm", folder, res, name)
    with _in(code_dir):
        if len(outcomes) == 1:
            outcomes[0].job = ex.submit(make_job(), outcomes[0].plan.config)
        else:
            with ex.batch():
                for o in outcomes:
                    o.job = ex.submit(make_job(), o.plan.config)
    _drop_template_dir(folder)
    for o in outcomes:
        o.status, o.started = "submitted", time.time()
        _record_job(o.plan, o.job, "slurm")


def submit_local(o: Outcome, res: ClusterProfile, make_job: Callable[[], Any], code_dir: Path | None) -> None:
    folder = o.plan.run_dir / "submitit" / "%j"
    ex = make_executor("local", folder, res, o.plan.name)
    with _in(code_dir):
        o.job = ex.submit(make_job(), o.plan.config)
    _drop_template_dir(folder)
    o.status, o.started = "submitted", time.time()
    _record_job(o.plan, o.job, "local")


def run_debug(o: Outcome, make_job: Callable[[], Any]) -> None:
    """In-process; `exception()` runs the job without submitit's pdb post-mortem."""
    ex = make_executor("debug", o.plan.run_dir / "submitit" / "%j", ClusterProfile(), o.plan.name)
    o.job = ex.submit(make_job(), o.plan.config)
    o.started = time.time()
    collect(o)
    if o.exc is not None:  # DebugJob.exception() re-runs the job on every call: use the stored one
        traceback.print_exception(type(o.exc), o.exc, o.exc.__traceback__, file=sys.stderr)


# ---- waiting and collecting ---------------------------------------------------------------------------
def collect(o: Outcome) -> None:
    """Fill status/metrics/error of a job that is done."""
    exc = o.job.exception()
    o.wall_s = round(time.time() - o.started, 1) if o.started else None
    with contextlib.suppress(Exception):  # the job process may have made the literal `%j` folder again
        _drop_template_dir(Path(o.job.paths.folder).parent / "%j")
    if exc is None:
        results = o.job.results()
        o.status, o.metrics = "ran", results[0] if results else None
    else:
        o.status, o.exc = "failed", exc
        text = str(exc).strip()
        lines = [ln for ln in text.splitlines() if ln.strip() and not set(ln.strip()) <= {"-"}]
        tail = [ln for ln in lines if not ln.startswith(("You can check", "or at paths", "  - "))]
        o.error = (tail[-1] if tail else type(exc).__name__)[:300]


def _done(o: Outcome) -> bool:
    try:
        return bool(o.job.done())
    except Exception:  # noqa: BLE001 - a flaky sacct call must not kill the launcher
        return False


def wait(outcomes: list[Outcome], *, poll_s: float, timeout_s: float | None = None,
         start_next: Callable[[], None] | None = None, progress: bool = True) -> None:
    """Poll until every submitted job is done (or `timeout_s`). `start_next()` tops up paced local runs.
    Shows a tqdm bar with running/pending counts (periodic status lines when stderr is not a terminal)."""

    total = sum(o.status in ("submitted", "pending") for o in outcomes)
    if not total:
        return
    deadline = None if timeout_s is None else time.time() + timeout_s
    tty = sys.stderr.isatty()
    bar = tqdm(total=total, unit="run", desc="runs", disable=not (progress and tty), dynamic_ncols=True)
    last_line, forced = time.time(), 0.0
    announced: set[int] = set()
    try:
        while True:
            if start_next is not None:
                start_next()
            live = [o for o in outcomes if o.status == "submitted"]
            for o in live:
                if progress and id(o) not in announced and o.logs is not None:
                    announced.add(id(o))
                    bar.write(f"  started {o.plan.name} (job {o.job_id}): per-step log in {o.logs[1]}",
                              file=sys.stdout)
            slurm_live = [o for o in live if isinstance(o.job, submitit.SlurmJob)]
            if slurm_live and time.time() - forced > max(poll_s, 5.0):
                with contextlib.suppress(Exception):  # one sacct call for all jobs; failures are retried
                    slurm_live[0].job.watcher.update()
                forced = time.time()
            for o in live:
                if _done(o):
                    collect(o)
                    bar.update(1)
                    if progress and not tty:
                        print(f"  finished {o.plan.name}: {o.status}" + (f" ({o.error})" if o.error else ""),
                              flush=True)
            pending = sum(o.status == "pending" for o in outcomes)
            running = sum(o.status == "submitted" for o in outcomes)
            failed = sum(o.status == "failed" for o in outcomes)
            line_due = progress and not tty and time.time() - last_line > 60
            # the runs' log tails are read only when shown: in the bar (terminal) or the minute line
            now = {o.plan.name: run_progress.progress(o.plan.run_dir, o.plan.cfg) for o in outcomes
                   if o.status == "submitted"} if progress and (tty or line_due) else {}
            first = next(((n, t) for n, t in now.items() if t), None)
            bar.set_postfix(running=running, pending=pending, failed=failed,
                            **({"now": f"{first[0]}: {first[1]}"} if first else {}))
            if not running and not pending:
                return
            if deadline is not None and time.time() > deadline:
                for o in outcomes:
                    if o.status in ("submitted", "pending"):
                        o.status, o.error = "unfinished", f"still {'running' if o.job else 'not submitted'} " \
                                                          f"after the {timeout_s:.0f} s wait limit"
                return
            if line_due:
                done = total - running - pending
                print(f"  [{time.strftime('%H:%M:%S')}] {done}/{total} done, {running} running, "
                      f"{pending} waiting, {failed} failed", flush=True)
                for name, text in now.items():
                    print(f"    {name}: {text or 'starting'}", flush=True)
                last_line = time.time()
            time.sleep(poll_s)
    finally:
        bar.close()
