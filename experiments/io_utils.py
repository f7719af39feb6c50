"""Atomic file writes: results and checkpoints are never left half-written (temp file in the same
folder + fsync + rename: `data.fsutil.atomic_write_bytes`, shared with the data tools)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from data.fsutil import atomic_torch_save, atomic_write_bytes

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_torch_save"]


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
