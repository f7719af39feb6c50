"""Provenance of a run: enough to tell later which code, libraries and machine produced a number."""
from __future__ import annotations

import os
import platform
import shlex
import socket
import subprocess
import sys
import time
from importlib import metadata

from common.paths import CODE_ROOT

_PACKAGES = ("torch", "torchvision", "torchaudio", "webdataset", "submitit", "av", "numpy", "pandas", "pyyaml")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=CODE_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state() -> dict:
    """Commit and dirty flag of the code that runs (a submitit snapshot records its origin commit)."""
    snap = CODE_ROOT / "SNAPSHOT_COMMIT"
    if snap.is_file():  # jobs launched from a code snapshot carry the commit they were cut from
        commit, _, dirty = snap.read_text().strip().partition(" ")
        return {"commit": commit or None, "dirty": dirty == "dirty", "snapshot": True}
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None, "snapshot": False}


def versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        return platform.processor()


def bench_header(module: str, argv: list[str]) -> dict:
    """What every benchmark report starts with: the command that reproduces it, when, on which CPU, with
    which libraries and code."""
    return {"command": shlex.join(["python", "-m", module, *argv]), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "device": {"cpu_model": cpu_model(), "cpu_count": len(os.sched_getaffinity(0)),
                       "platform": platform.platform()},
            "versions": versions(), "git": git_state()}


def collect(seed: int, world_size: int = 1) -> dict:
    import torch  # lazy: the data tools' benchmarks record provenance without importing torch

    return {
        "git": git_state(),
        "seed": seed,
        "versions": versions(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": len(os.sched_getaffinity(0)),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "world_size": world_size,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": sys.argv,
    }
