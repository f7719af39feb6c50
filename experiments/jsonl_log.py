"""Append-only JSON-lines training log (loss curves, eval results), written by rank 0 only.

Each line is one flushed write, so a killed job leaves a readable log; a resumed job appends.
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
