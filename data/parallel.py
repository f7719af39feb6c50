"""Ordered parallel map for the preparers and the synthetic generator.

Why fork (where available): spawn/forkserver re-import the caller's __main__, which breaks scripts and
notebooks without an `if __name__ == "__main__"` guard; the workers only run numpy/PyAV/torchaudio on
their own inputs, so forking a parent that has not started worker threads is safe. Results come back
in input order, so output files do not depend on the number of workers.
"""
from __future__ import annotations

import gc
import multiprocessing as mp
import sys
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def mp_context():
    return mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")


def ordered_map(fn: Callable[[T], R], jobs: Iterable[T], workers: int, chunksize: int = 1) -> Iterator[R]:
    """fn over jobs, in order; in-process when workers <= 1."""
    if workers <= 1:
        yield from map(fn, jobs)
        return
    # free unreachable objects before forking: a child that garbage-collects an inherited PyAV container
    # waits forever on the parent's codec threads, which do not exist in the child (seen: the test suite
    # hung here when a loader test ran first; data.pipeline.Loader does the same before its workers fork)
    gc.collect()
    pool = mp_context().Pool(workers)
    try:
        yield from pool.imap(fn, jobs, chunksize=chunksize)
        pool.close()
    finally:
        pool.terminate()
        pool.join()
