"""The run-folder contract, in one place: where a config's results go (`results/<rq>/<name>/`, confined
to output_root), the hash that says which config they belong to, and what state the folder is in.

Why one type: the launcher classifies folders before submitting (launch_plan) and run.py checks them
again before training; when each wrote its own check they drifted (one compared the launch hash with
`config_hash`, the other with `result_hash`; one read the checkpoint stamp, the other fell back to
metrics.json). Both now ask a RunFolder.

Files a run folder holds: config.yaml, checkpoints/hash (the result hash, written before training),
checkpoints/last.pt, metrics.partial.json while running, metrics.json (status complete) at the end.
"""
from __future__ import annotations

import json
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from common import paths
from experiments import run_lock
from experiments.config import RunConfig, config_hash, to_dict, without_keys

METRICS = "metrics.json"  # the finished run's results (status complete)
PARTIAL = "metrics.partial.json"  # finished stages of a run still going on (experiments.stages)


class FolderState(str, Enum):
    """What a run folder holds, as the launcher reports it (a str, so it prints and compares as one)."""
    NEW = "new"  # nothing of this run yet
    RESUME = "resume"  # unfinished: resumes from checkpoints/last.pt
    COMPLETE = "complete"  # metrics.json complete for this config
    CONFLICT = "conflict"  # results of a different config: never mixed or overwritten

    def __str__(self) -> str:
        return self.value


class ConfigChanged(RuntimeError):
    """The run folder holds results of a different config; we refuse to mix or overwrite them."""


def result_hash(cfg: RunConfig) -> str:
    """Hash of everything that can change a result (not where results go, not logging cadence:
    experiments.config.NON_RESULT_KEYS)."""
    return config_hash(without_keys(to_dict(cfg)))


def run_dir(cfg: RunConfig) -> Path:
    """output_root/rq/name, refused if it resolves outside output_root (the schema already allows only
    plain folder names; this also covers a symlinked rq folder)."""
    root = paths.resolve(cfg.output_root)
    folder = root / cfg.rq / cfg.name
    real, base = folder.resolve(), root.resolve()
    if real == base or not real.is_relative_to(base):
        raise ValueError(f"run folder {real} (rq {cfg.rq!r}, name {cfg.name!r}) is not inside output_root {root}")
    return folder


@dataclass(frozen=True)
class RunFolder:
    path: Path
    result_hash: str  # of the config that wants this folder

    @classmethod
    def of(cls, cfg: RunConfig) -> RunFolder:
        return cls(run_dir(cfg), result_hash(cfg))

    @property
    def stamp_file(self) -> Path:
        return self.path / "checkpoints" / "hash"

    def metrics(self) -> dict | None:
        try:
            data = json.loads((self.path / METRICS).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def stamp(self) -> str | None:
        """The result hash of the run the folder holds (None: it holds none; a run has written its
        config.yaml): its checkpoint stamp, else its metrics.json's."""
        if not (self.path / "config.yaml").is_file():
            return None
        if self.stamp_file.is_file():
            return self.stamp_file.read_text().strip() or None
        return (self.metrics() or {}).get("config_hash")

    def is_complete(self) -> bool:
        m = self.metrics()
        return bool(m) and m.get("status") == "complete" and m.get("config_hash") == self.result_hash

    def state(self) -> tuple[FolderState, str]:
        """(state, a note for the user)."""
        if self.is_complete():
            return FolderState.COMPLETE, "metrics.json complete for this config hash"
        stamp = self.stamp()
        if stamp and stamp != self.result_hash:
            return FolderState.CONFLICT, self._conflict(stamp)
        if (self.path / "checkpoints" / "last.pt").is_file():
            return FolderState.RESUME, "unfinished: resumes from checkpoints/last.pt"
        return FolderState.NEW, ""

    def _conflict(self, stamp: str) -> str:
        """What the launcher reports and run.py refuses with: the folder belongs to another config."""
        return (f"{self.path} holds a run of a different config (hash {stamp} != {self.result_hash}): use "
                "another name (name=...) or move the folder aside (python experiments/run.py --config ... "
                "--restart)")

    def move_aside(self, why: str) -> Path:
        """Never delete a run: rename it to <name>.old-<timestamp> beside the new one."""
        aside = self.path.with_name(f"{self.path.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        self.path.rename(aside)
        print(f"moved the previous run ({why}) to {aside}")
        return aside

    def claim(self, *, restart: bool = False, fresh: bool = False) -> None:
        """Make the folder this config's before training: a previous run of the same config stays (it
        resumes); one of a different config raises ConfigChanged, or with restart is moved aside;
        fresh moves any previous run aside. Then the folder exists and carries this config's stamp."""
        if fresh and (self.path / "config.yaml").is_file():
            self.move_aside("--no-resume")
        elif (stamp := self.stamp()) not in (None, self.result_hash):
            if not restart:
                raise ConfigChanged(self._conflict(stamp))
            self.move_aside("a different config")
        self.stamp_file.parent.mkdir(parents=True, exist_ok=True)
        self.stamp_file.write_text(self.result_hash + "\n")

    def lock(self) -> AbstractContextManager:
        """One process per run folder (experiments.run_lock): raises run_lock.RunFolderLocked if held."""
        return run_lock.hold(self.path)
