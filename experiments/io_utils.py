"""Atomic file writes: results and checkpoints are never left half-written (temp file in the same
folder + fsync + rename). The implementation is `data/fsutil.py`, shared with the data tools and the
tables; this module only re-exports it for the training code."""
from __future__ import annotations

from data.fsutil import atomic_torch_save, atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_torch_save"]
