"""Counters of skipped samples, by reason, that survive DataLoader worker processes.

Why this shape: workers are separate processes, so each worker counts locally and attaches the counts
accumulated since its previous batch to the next batch it yields (key `_skipped`); the loader wrapper
in the main process strips that key and adds the counts here. Nothing is lost with num_workers=0 or
>0. Counts are per process (per rank); samples passed over while a resumed loader skips ahead are
not counted again.
"""
from __future__ import annotations

import logging
from collections import Counter
from typing import Any

log = logging.getLogger("data")

_TOTAL: Counter = Counter()  # since the process started (metrics.json "samples_skipped")
_SINCE_REPORT: Counter = Counter()  # since the last report_skipped() (per-epoch log lines)
_WORKER: Counter = Counter()  # worker-local, drained into batches
KEY = "_skipped"


def count_in_worker(reason: str, key: str = "", detail: str = "") -> None:
    """Called where a sample is dropped (inside a worker or the main process)."""
    _WORKER[reason] += 1
    (log.warning if reason == "read_error" else log.info)("skipping sample %s: %s (%s)", key or "?", reason,
                                                          detail[:200])


def drain_worker() -> dict[str, int]:
    """The worker's counts since the last call (attached to the batch being yielded)."""
    out = dict(_WORKER)
    _WORKER.clear()
    return out


def record(counts: dict[str, Any] | None) -> None:
    """Main process: add counts that arrived with a batch."""
    for reason, n in (counts or {}).items():
        _TOTAL[reason] += int(n)
        _SINCE_REPORT[reason] += int(n)


def skipped_summary() -> dict[str, int]:
    """All samples skipped by this process so far, by reason."""
    return {k: int(v) for k, v in sorted(_TOTAL.items()) if v}


def report_skipped(log_writer: Any = None, **fields: Any) -> dict[str, int]:
    """Counts since the previous report (call at the end of an epoch). Written to `log_writer.write`
    (e.g. experiments' JsonlLog) with `fields` (stage, epoch) when given, and logged when non-zero."""
    counts = {k: int(v) for k, v in sorted(_SINCE_REPORT.items()) if v}
    _SINCE_REPORT.clear()
    if counts:
        log.warning("skipped samples %s: %s", fields, counts)
    if log_writer is not None:
        log_writer.write(event="samples_skipped", skipped=counts, **fields)
    return counts


def reset() -> None:
    """Forget all counts (tests)."""
    _TOTAL.clear()
    _SINCE_REPORT.clear()
    _WORKER.clear()
