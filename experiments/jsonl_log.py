"""Append-only JSON-lines training log (loss curves, eval results), written by rank 0 only.

Each line is one flushed write, so a killed job leaves a readable log. A resumed stage first
truncates the log to the length its checkpoint recorded (`truncate`), so steps replayed after a kill
are logged once, then appends.
"""
from __future__ import annotations

import json
import time
from pathlib import Path


class JsonlLog:
    def __init__(self, path: Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled

    def write(self, **record) -> None:
        if not self.enabled:
            return
        record.setdefault("time", round(time.time(), 3))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(record, default=float) + "\n")

    def size(self) -> int | None:
        """Current length in bytes (None on ranks that do not write)."""
        if not self.enabled:
            return None
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def truncate(self, nbytes: int) -> bool:
        """Cut the log back to `nbytes` (a length recorded at a step boundary); True if it was longer."""
        if not self.enabled or not self.path.is_file() or self.path.stat().st_size <= nbytes:
            return False
        with open(self.path, "r+b") as f:
            f.truncate(nbytes)
        return True
