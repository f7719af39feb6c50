"""Which raw samples a (rank, worker) slot reads, in which order: shard shuffle, node/worker split, repeat.

open_clip order: the shard list is permuted with a seed derived from (seed, epoch) (identical on every
rank), then split by node (rank) and by worker; every input is explicit (no torch.distributed or env
globals), so tests can simulate ranks. Slot g = rank * workers + worker of n = world * workers slots
reads shards perm[g::n]. With fewer shards than slots (tiny datasets) the split falls back to samples:
every slot reads all shards and keeps the samples whose global index i (in permuted shard order)
satisfies i % n == g, so slots stay disjoint. Training streams repeat (each new cycle reshuffles the
slot's shards with its own seed) so a fixed number of batches is always available; evaluation
streams make one pass.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import webdataset as wds

log = logging.getLogger("data")


def epoch_permutation(names: list[str], seed: int, epoch: int) -> list[str]:
    """The epoch's shard order, the same on every rank."""
    rng = np.random.default_rng([int(seed), int(epoch), 0x5A4D])
    return [names[i] for i in rng.permutation(len(names))]


@dataclass
class SlotPlan:
    shards: list[str]  # shard names this slot reads, in order
    modulo: int  # sample-level split: keep global index i with i % modulo == remainder (1 = keep all)
    remainder: int
    samples: int  # samples this slot gets per pass (before skipping broken ones)


def plan_slot(counts: Mapping[str, int], seed: int, epoch: int, slot: int, n_slots: int) -> SlotPlan:
    order = epoch_permutation(sorted(counts), seed, epoch)
    if len(order) >= n_slots:
        mine = order[slot::n_slots]
        return SlotPlan(mine, 1, 0, sum(counts[s] for s in mine))
    total = sum(counts.values())
    return SlotPlan(order, n_slots, slot, len(range(slot, total, n_slots)))


def _read_shards(folder: Path, names: list[str], handler: Callable[[Exception], bool],
                 count_errors: bool = True) -> Iterator[dict[str, Any]]:
    """Samples of the shards in order. A read error (a truncated or unreadable shard) reaches
    `handler` once per shard and pass: webdataset reports one truncation twice (the tar reader, then
    the expander re-raising it with the url), and with `count_errors` False (slots that share the
    shard with a counting slot) not at all. The sample cut short is still yielded, and counted once,
    by the one slot it belongs to, when it fails to decode."""
    for name in names:
        seen: list[Exception] = []

        def once(exn: Exception, seen=seen) -> bool:
            if not seen and count_errors:
                handler(exn)
            seen.append(exn)
            return True

        yield from wds.tarfile_to_samples(handler=once)(iter([{"url": str(folder / name)}]))


def slot_stream(folder: Path, plan: SlotPlan, seed: int, epoch: int, slot: int, repeat: bool,
                handler: Callable[[Exception], bool]) -> Iterator[dict[str, Any]]:
    """Raw samples (bytes) of one slot: one pass, or endless cycles when `repeat`."""
    cycle = 0
    names = list(plan.shards)
    while True:
        i = 0
        # splitting by sample (modulo > 1): every slot reads every shard, the first one counts its errors
        for sample in _read_shards(folder, names, handler, count_errors=plan.modulo == 1 or plan.remainder == 0):
            if i % plan.modulo == plan.remainder:
                yield sample
            i += 1
        if not repeat:
            return
        if plan.samples == 0:
            raise RuntimeError(f"slot {slot} has no samples to repeat in {folder}")
        cycle += 1
        if plan.modulo == 1:  # reshuffle this slot's own shards for the next cycle
            perm = np.random.default_rng([int(seed), int(epoch), slot, cycle, 0xC1C]).permutation(len(plan.shards))
            names = [plan.shards[k] for k in perm]


def warn_fallback(folder: Path, n_shards: int, n_slots: int) -> None:
    log.warning("%s: %d shard(s) for %d rank x worker slots: splitting by sample instead of by shard "
                "(every slot reads every shard; fine for small datasets, slow for large ones)",
                folder, n_shards, n_slots)
