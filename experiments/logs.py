"""Logging set up once per process, at the entry points (run.py, the submitit job, the launcher).

Why: data/ reports skipped samples and shard layouts through the `data` logger; without a handler
Python prints only its warnings, bare, and never the per-sample notes. Rank-aware: rank 0 shows INFO
and up, the other ranks only warnings (under SLURM / submitit each rank's stderr is its own log file,
so their notes are not lost, they just do not repeat rank 0's).
"""
from __future__ import annotations

import logging
import sys

LOGGERS = ("data", "experiments")
_MARK = "_avbert_handler"


class _Stderr(logging.StreamHandler):
    """Writes to the *current* sys.stderr (or the given stream): a handler that kept the stderr of the
    moment it was made would write to a closed file once a test runner or a job wrapper swaps it."""

    def __init__(self, stream=None):
        super().__init__()
        self._fixed = stream

    @property
    def stream(self):
        return self._fixed if self._fixed is not None else sys.stderr

    @stream.setter
    def stream(self, value):  # StreamHandler.__init__ assigns it; we resolve it at each write instead
        pass


def configure(rank: int = 0, stream=None) -> None:
    """Attach one stderr handler to the project's loggers (idempotent: a second call replaces it)."""
    handler = _Stderr(stream)
    handler.setFormatter(logging.Formatter(f"%(asctime)s [rank {rank}] %(name)s %(levelname)s: %(message)s",
                                           datefmt="%H:%M:%S"))
    setattr(handler, _MARK, True)
    for name in LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, _MARK, False)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
        # propagation stays on: the root logger has no handler in our entry points (nothing printed
        # twice), and test runners that capture from the root still see the records
