"""The stages of one rank's stream of batches (open_clip's `get_wds_dataset` style), composed in
data.pipeline.ClipBatches:

    this worker's share of the epoch (resume arithmetic)
    -> its slot's shards (data.slots; repeated for fixed-length loaders)
    -> sample shuffle (buffer of compressed bytes)
    -> pass over the samples a resumed loader has already served (header checks only)
    -> decode + transform (data.samples), broken samples counted and skipped; training frames are
       written straight into their batch (BatchFrames)
    -> batches, each carrying the skip counts since the previous one

The rules the stages keep (equal batches per rank, exact resume, skip-and-count) are in data/pipeline.py's
docstring; every parameter that decides the stream is one frozen StreamSpec.
"""
from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import get_worker_info

from data.config import DataConfig
from data.errors import ClipError
from data.samples import SampleSpec, collate, frames_shape
from data.skipped import KEY, count_in_worker, drain_worker
from data.slots import SlotPlan, plan_slot, slot_stream, warn_fallback

log = logging.getLogger("data")
Process = Callable[..., dict]  # data.samples.process_sample(sample, cfg, spec, draws | check=True, video_out=)


@dataclass(frozen=True)
class StreamSpec:
    """Everything that decides one rank's batches."""
    folder: Path
    shard_sizes: Mapping[str, int]  # samples per shard (sizes.json)
    cfg: DataConfig
    sample: SampleSpec
    batch_size: int
    seed: int = 0
    epoch: int = 0
    rank: int = 0
    world_size: int = 1
    batches_per_epoch: int | None = None  # None: one pass over the split (evaluation), partial last batch
    skip_batches: int = 0  # resume: batches of this epoch already served
    shuffle_buffer: int = 0  # <= 1: no sample shuffle
    shuffle_initial: int = 0  # samples buffered before the first is yielded; 0 = shuffle_buffer // 2

    @property
    def fixed(self) -> bool:
        return self.batches_per_epoch is not None


@dataclass(frozen=True)
class WorkerShare:
    """The batches one DataLoader worker makes: batches first..last-1 of its own sequence (last None:
    until its shards end), read from shard slot `slot` of `n_slots`."""
    slot: int
    n_slots: int
    first: int
    last: int | None


def worker_share(s: StreamSpec, worker: int, n_workers: int) -> WorkerShare | None:
    """Worker w of W makes batches w, w+W, ... of the epoch (torch's in-order round robin). After
    skip_batches=k the physical worker p plays logical worker (p+k) % W, so the first batch after the
    resume comes from worker 0, and starts past the batches that logical worker already made. None: no
    batches left for this worker."""
    if not s.fixed:
        return WorkerShare(s.rank * n_workers + worker, s.world_size * n_workers, 0, None)
    logical = (worker + s.skip_batches) % n_workers
    first = max(0, -(-(s.skip_batches - logical) // n_workers))  # this worker's batches already seen
    last = max(0, -(-(s.batches_per_epoch - logical) // n_workers))  # its batches in the epoch
    if first >= last:
        return None
    return WorkerShare(s.rank * n_workers + logical, s.world_size * n_workers, first, last)


class BatchFrames:
    """The uint8 frames of the batch being filled, allocated before its clips are decoded so that each
    clip's crops are written into its slot (data.samples.frames_shape; None when clips cannot be).

    Why: stacking decoded clips into a batch copies every frame once more (18 MB per paper-size clip),
    and in a DataLoader worker the batch must be shared memory, whose fresh pages cost more to touch
    than private ones; writing the crops straight into the shared batch pays that once. A slot is
    reused until a clip fills it (a broken clip leaves nothing behind), and a yielded batch is never
    written again: the next batch gets a new buffer."""

    def __init__(self, s: StreamSpec):
        clip = frames_shape(s.cfg, s.sample)
        self.shape = None if clip is None else (s.batch_size, *clip)
        self.buf: torch.Tensor | None = None
        self.filled = 0

    def slot(self) -> torch.Tensor | None:
        """Where the next clip's frames go."""
        if self.shape is None:
            return None
        if self.buf is None:
            self.buf, self.filled = _empty_uint8(self.shape, shared=get_worker_info() is not None), 0
        return self.buf[self.filled]

    def add(self, clip: dict[str, Any]) -> None:
        """`clip` (made by process_sample into slot(), or copied there if it was not) takes its slot."""
        if self.buf is not None:
            slot = self.buf[self.filled]
            if clip["video"].data_ptr() != slot.data_ptr():
                slot.copy_(clip["video"])
            self.filled += 1

    def take(self) -> torch.Tensor | None:
        """The filled part of the batch; the next slot() starts a new one."""
        buf, self.buf = self.buf, None
        return None if buf is None else buf[:self.filled]


def _empty_uint8(shape: tuple[int, ...], *, shared: bool) -> torch.Tensor:
    """An uninitialised uint8 tensor: private from numpy's allocator (which asks for huge pages for big
    arrays, cheaper to touch), or in shared memory, allocated there directly as torch's default_collate
    does in workers (share_memory_() on a private tensor would copy it)."""
    if not shared:
        return torch.from_numpy(np.empty(shape, dtype=np.uint8))
    storage = torch.UntypedStorage._new_shared(math.prod(shape))
    return torch.empty(0, dtype=torch.uint8).set_(storage).view(shape)


def _read_error_handler(exn: Exception) -> bool:
    """webdataset handler: log + count an unreadable tar member/shard and continue."""
    count_in_worker("read_error", detail=f"{type(exn).__name__}: {exn}")
    return True


def shard_samples(s: StreamSpec, share: WorkerShare, plan: SlotPlan) -> Iterator[dict[str, Any]]:
    if plan.modulo > 1 and share.slot == 0:
        warn_fallback(s.folder, len(s.shard_sizes), share.n_slots)
    return slot_stream(s.folder, plan, s.seed, s.epoch, share.slot, repeat=s.fixed, handler=_read_error_handler)


def shuffled(s: StreamSpec, share: WorkerShare, samples: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    if s.shuffle_buffer <= 1:
        return samples
    seed = np.random.SeedSequence([int(s.seed), int(s.epoch), share.slot, 0x5F]).generate_state(1)[0]
    initial = s.shuffle_initial or max(1, s.shuffle_buffer // 2)
    return iter(wds.shuffle(s.shuffle_buffer, initial, rng=random.Random(int(seed)))(samples))


def past_served(s: StreamSpec, n: int, indexed: Iterator[tuple[int, dict]],
                process: Process) -> Iterator[tuple[int, dict]]:
    """Resume: pass over the first `n` usable samples with header checks only (no decoding); their
    failures were counted by the interrupted run, so the counts of this pass are dropped."""
    while n > 0:
        item = next(indexed, None)
        if item is None:
            return
        try:
            process(item[1], s.cfg, s.sample, check=True)
            n -= 1
        except Exception:  # noqa: BLE001 - ClipError or worse: counted as skipped in the real pass too
            pass
    drain_worker()
    yield from indexed


def processed(s: StreamSpec, share: WorkerShare, indexed: Iterator[tuple[int, dict]], process: Process, *,
              limit: int, frames: BatchFrames) -> Iterator[dict[str, Any]]:
    """Decoded, transformed samples (video frames written into `frames`' next slot, when it has one);
    a broken one is counted by reason and skipped. Its augmentation draws come from (seed, epoch, slot,
    index in the shuffled stream), so a resumed stream repeats them. A fixed-length loader whose samples
    all fail stops with one clear error after `limit` in a row."""
    fails, last_error = 0, None
    for index, sample in indexed:
        key = str(sample.get("__key__", "?"))
        draws = np.random.SeedSequence([int(s.seed), int(s.epoch), share.slot, index, 0xDA7A])
        try:
            out = process(sample, s.cfg, s.sample, draws, video_out=frames.slot())
            fails, last_error = 0, None
        except ClipError as e:
            count_in_worker(e.reason, key, str(e))
            out, fails, last_error = None, fails + 1, e
        except Exception as e:  # noqa: BLE001 - a sample must never kill the epoch
            count_in_worker("corrupt", key, f"{type(e).__name__}: {e}")
            log.debug("unexpected error on %s", key, exc_info=True)
            out, fails, last_error = None, fails + 1, e
        if s.fixed and fails > limit:  # every sample fails, whatever the error: one clear message
            raise RuntimeError(f"{s.folder}: {fails} consecutive unusable samples in slot {share.slot}; "
                               f"see the skipped-sample counts {drain_worker()} (last error: "
                               f"{type(last_error).__name__}: {last_error})") from last_error
        if out is not None:
            yield out


def batched(s: StreamSpec, share: WorkerShare, clips: Iterator[dict[str, Any]],
            frames: BatchFrames) -> Iterator[dict[str, Any]]:
    """Batches of batch_size clips with the skip counts since the previous batch (key data.skipped.KEY);
    a fixed-length loader stops after its share, an evaluation pass yields its partial last batch (or,
    without one, a counts-only item the Loader swallows). `frames`: the one `clips` wrote into."""
    produced, buf = share.first, []
    for clip in clips:
        buf.append(clip)
        frames.add(clip)
        if len(buf) == s.batch_size:
            batch, buf = collate(buf, frames.take()), []
            batch[KEY] = drain_worker()
            produced += 1
            yield batch
            if s.fixed and produced >= share.last:
                return
    if buf:
        batch = collate(buf, frames.take())
        batch[KEY] = drain_worker()
        yield batch
    elif not s.fixed and (counts := drain_worker()):
        yield {KEY: counts}
