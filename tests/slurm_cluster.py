"""Is the local SLURM cluster usable? Tests that need it skip with the reason, except under
AVBERT_REQUIRE_SLURM=1 (set by .ci/run, which starts the cluster): there a missing cluster fails,
so CI can never pass by silently skipping the SLURM tests."""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest


def cluster_problem() -> str | None:
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "SLURM client tools not installed (start the local cluster: bash slurm/local_slurm.sh up)"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%a %t"], capture_output=True, text=True, timeout=20)
        acct = subprocess.run(["sacct", "-n", "-X", "-S", "now"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as e:
        return f"SLURM cluster not reachable ({e}); bash slurm/local_slurm.sh up"
    if out.returncode != 0:
        return f"SLURM cluster is down (sinfo: {out.stderr.strip()[:200]}); bash slurm/local_slurm.sh up"
    usable = [ln for ln in out.stdout.splitlines() if ln.startswith("up ") and ln.split()[1].rstrip("*~#")
              in ("idle", "mix", "alloc", "comp")]
    if not usable:
        return f"no usable SLURM partition/node (sinfo: {out.stdout.strip()[:200]})"
    if acct.returncode != 0:
        return ("SLURM accounting (sacct) unavailable: submitit cannot see job states and result() may hang "
                f"({acct.stderr.strip()[:200]})")
    return None


def slurm_marks() -> list:
    """Module-level pytest marks: [] when the cluster works, else skip (or fail under CI)."""
    problem = cluster_problem()
    if problem is None:
        return []
    if os.environ.get("AVBERT_REQUIRE_SLURM") == "1":
        pytest.fail(f"AVBERT_REQUIRE_SLURM=1 but the SLURM cluster is unusable: {problem}", pytrace=False)
    return [pytest.mark.skip(reason=problem)]


def sacct_states(job_ids: list[str]) -> dict[str, str]:
    """JobID -> State from sacct (first word: 'CANCELLED by 0' -> 'CANCELLED')."""
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(job_ids)],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return {k: v.split()[0] for k, v in (line.split("|")[:2] for line in out.splitlines() if "|" in line)}


def wait_until(predicate, timeout_s: float, what: str, poll_s: float = 0.2) -> None:
    """Poll `predicate` until true; fail the test (never hang) after `timeout_s`."""
    deadline = time.time() + timeout_s
    while not predicate():
        if time.time() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)
