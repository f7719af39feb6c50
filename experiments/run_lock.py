"""One process per run folder: an exclusive lock held while a run executes.

Why: two launches of the same config (a second launcher, a `run.py` beside a SLURM job) would train
into one folder at once, interleave their log lines and overwrite each other's checkpoints. The lock is
an `fcntl.flock` on `<rq folder>/.<name>.lock`, beside the run folder rather than in it, so it stays
put when `--restart` moves the folder aside. The kernel drops it when the holder dies (kill -9
included), so there is no stale lock to clean; the file keeps who took it last (pid, host, SLURM job,
start time, command), which is what a refused second process prints. Under DDP only rank 0 locks.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator


class RunFolderLocked(RuntimeError):
    """Another live process holds the run folder."""


def lock_path(folder: Path) -> Path:
    folder = Path(folder)
    return folder.with_name(f".{folder.name}.lock")


def _describe(info: dict) -> str:
    job = f", SLURM job {info['slurm_job']}" if info.get("slurm_job") else ""
    return (f"pid {info.get('pid')} on {info.get('host')}{job}, since {info.get('since')} "
            f"({info.get('command', '?')})")


def _read(f) -> dict:
    f.seek(0)
    try:
        return json.loads(f.read() or "{}")
    except ValueError:
        return {}


def holder(folder: Path) -> str | None:
    """Who holds the folder now (a description), or None when it is free."""
    path = lock_path(folder)
    if not path.is_file():
        return None
    with open(path, "r") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _describe(_read(f))
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return None


@contextlib.contextmanager
def hold(folder: Path) -> Iterator[None]:
    """Hold the folder's lock for the block; RunFolderLocked (naming the holder) if it is taken."""
    path = lock_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunFolderLocked(
                f"{folder} is in use by {_describe(_read(f))}: two processes must not train into one run "
                "folder. Wait for it to finish (or stop it), or use another name (name=...).") from None
        try:
            f.seek(0)
            f.truncate()
            f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                "slurm_job": os.environ.get("SLURM_JOB_ID"),
                                "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                                "command": " ".join(sys.argv)[:300]}))
            f.flush()
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
