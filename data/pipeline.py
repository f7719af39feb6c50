"""WebDataset loaders for pretraining and downstream tasks, in open_clip's pipeline order.

shards (sizes.json) -> seeded shard shuffle (seed, epoch) -> split by node (rank, world_size arguments)
-> split by worker -> tar -> samples (read errors logged, counted, skipped) -> sample shuffle (buffer
holds compressed bytes) -> decode + transform (in DataLoader workers) -> batch; the per-worker stages
are data/stream.py, this module builds the loaders around them.

Fixed epoch length: training loaders yield exactly `batches_per_epoch` batches on every rank. Each
worker's stream repeats its shards (reshuffled per cycle), and worker w of W produces the batches
i = w, w+W, ... of the epoch, matching torch's in-order round-robin over workers, so the loader's
output order is a pure function of (seed, epoch, rank, world_size, num_workers).
Resume: `skip_batches=k` rotates the workers (physical worker p plays logical worker (p+k) % W) and
each logical worker passes over its first batches with header checks only (no decoding), so the
remaining batches equal those of an uninterrupted run. Limits: same world_size, num_workers,
batch_size and shard folder; a sample that passes the header checks but fails to decode inside the
skipped range shifts the resumed stream by one sample.
Evaluation loaders make one pass: every sample exactly once over all ranks and workers, partial last
batches, no shuffling.
Broken samples never stop training: they are counted by reason (data.skipped) and reported per epoch.
"""
from __future__ import annotations

import gc
import math
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from data.config import DataConfig, VideoConfig
from data.samples import SampleSpec, process_sample
from data.shards import MANIFEST, read_classes, read_manifest
from data.skipped import KEY, record, report_skipped, skipped_summary
from data.slots import plan_slot
from data.stream import BatchFrames, StreamSpec, batched, past_served, processed, shard_samples, shuffled, worker_share
from data.transforms import video_input

__all__ = ["make_pretrain_loader", "make_downstream_loader", "model_inputs", "Loader", "report_skipped", "skipped_summary",
           "resolve_folder", "task_folder"]

MODALITIES = ("visual", "audio")


class ClipBatches(IterableDataset):
    """Batches of processed clips for one rank (in each DataLoader worker, or in-process): the stages
    of data/stream.py, in order."""

    def __init__(self, spec: StreamSpec):
        super().__init__()
        self.spec = spec

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        if info is not None:
            torch.set_num_threads(1)
        s = self.spec
        share = worker_share(s, info.id if info else 0, info.num_workers if info else 1)
        if share is None:
            return iter(())
        plan = plan_slot(s.shard_sizes, s.seed, s.epoch, share.slot, share.n_slots)
        indexed = enumerate(shuffled(s, share, shard_samples(s, share, plan)))
        if share.first:
            indexed = past_served(s, share.first * s.batch_size, indexed, process_sample)
        frames = BatchFrames(s)
        # a run of failures longer than twice the slot's samples means every sample fails
        clips = processed(s, share, indexed, process_sample, limit=2 * plan.samples + 10, frames=frames)
        return batched(s, share, clips, frames)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


class Loader:
    """Iterable of batch dicts (re-iterable; a fresh DataLoader per iteration).

    Attributes: num_batches (fixed-length loaders, after skip_batches; None for evaluation),
    num_samples (samples in the split, one pass, before skipping broken ones), modalities,
    classes / multilabel (downstream), skipped (samples this loader skipped so far, by reason; they are
    also added to the process totals of data.skipped for the run's metrics and per-epoch reports).
    """

    def __init__(self, dataset: ClipBatches, *, num_workers: int, pin_memory: bool, prefetch_factor: int,
                 num_batches: int | None, num_samples: int, modalities: tuple[str, ...],
                 classes: list[str] | None = None, multilabel: bool | None = None):
        self.dataset = dataset
        self.num_workers, self.pin_memory, self.prefetch_factor = num_workers, pin_memory, prefetch_factor
        self.num_batches, self.num_samples = num_batches, num_samples
        self.modalities, self.classes, self.multilabel = modalities, classes, multilabel
        self.skipped: Counter = Counter()

    def __len__(self) -> int:
        if self.num_batches is not None:
            return self.num_batches
        spec = self.dataset.spec
        return math.ceil(self.num_samples / max(1, spec.batch_size * spec.world_size))

    def model_inputs(self, batch: dict[str, Any], device: torch.device | str = "cpu"
                     ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """model_inputs(batch, <this loader's video config>, device)."""
        return model_inputs(batch, self.dataset.spec.cfg.video, device)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        kw: dict[str, Any] = {}
        if self.num_workers > 0:
            kw = {"prefetch_factor": self.prefetch_factor, "worker_init_fn": _worker_init}
            # free this process's unreachable objects before the workers fork: a forked worker that
            # garbage-collects an inherited PyAV container (an unfinished encoder, say) waits forever on
            # the parent's codec threads, which do not exist in the child (seen: a hung test suite)
            gc.collect()
        dl = DataLoader(self.dataset, batch_size=None, num_workers=self.num_workers, pin_memory=self.pin_memory,
                        persistent_workers=False, **kw)
        for batch in dl:
            counts = batch.pop(KEY, None)
            self.skipped.update(counts or {})
            record(counts)
            if "key" in batch:
                yield batch


def resolve_folder(folder: str | Path, split: str | None = None) -> Path:
    """A shard folder: `folder`, or `folder/<split>`, or for pretraining `folder/train`."""
    folder = Path(folder)
    cands = [folder / split] if split else [folder, folder / "train"]
    for c in cands:
        if (c / MANIFEST).is_file():
            return c
    raise FileNotFoundError(f"no {MANIFEST} in {' or '.join(str(c) for c in cands)}: prepare the data with "
                            "`python -m data.prepare` or generate it with `python -m data.synthetic`")


def task_folder(root: str | Path, task: str, split: int | None = None) -> Path:
    """Folder of a downstream task; datasets with official splits/folds keep one per split
    (`<task>/split<k>/`, e.g. ucf101/split1), single-split ones are `<task>/` itself."""
    base = Path(root) / task
    if split is not None and (base / f"split{split}").is_dir():
        return base / f"split{split}"
    return base


def _dataset_modalities(man: dict[str, Any]) -> tuple[str, ...]:
    """The split's default modalities: those every clip carries (sizes.json meta "modalities")."""
    return tuple(m for m in man.get("meta", {}).get("modalities", MODALITIES) if m in MODALITIES)


def _present_modalities(man: dict[str, Any]) -> tuple[str, ...]:
    """Modalities at least one clip carries (meta "clip_modalities" counts, written by data.prepare);
    without the counts, the default ones."""
    counts = man.get("meta", {}).get("clip_modalities")
    if not isinstance(counts, dict):
        return _dataset_modalities(man)
    return tuple(m for m in MODALITIES if counts.get(m, 0) > 0 or m in _dataset_modalities(man))


def _make(folder: Path, man: dict[str, Any], cfg: DataConfig, sample: SampleSpec, *, batch_size: int, seed: int,
          epoch: int, rank: int, world_size: int, batches_per_epoch: int | None, skip_batches: int,
          num_workers: int | None, pin_memory: bool, shuffle_buffer: int | None, classes=None) -> Loader:
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world_size {world_size}")
    if batches_per_epoch is not None and not 0 <= skip_batches <= batches_per_epoch:
        raise ValueError(f"skip_batches {skip_batches} outside [0, {batches_per_epoch}]")
    if man["total"] == 0:
        raise ValueError(f"{folder} holds no samples")
    buf = cfg.shuffle_buffer if shuffle_buffer is None else int(shuffle_buffer)
    spec = StreamSpec(folder, dict(man["shards"]), cfg, sample, batch_size=batch_size, seed=seed, epoch=epoch,
                      rank=rank, world_size=world_size, batches_per_epoch=batches_per_epoch,
                      skip_batches=skip_batches if batches_per_epoch is not None else 0,
                      shuffle_buffer=0 if sample.mode == "eval" else buf, shuffle_initial=cfg.shuffle_initial)
    return Loader(ClipBatches(spec), num_workers=cfg.num_workers if num_workers is None else int(num_workers),
                  pin_memory=pin_memory, prefetch_factor=cfg.prefetch_factor,
                  num_batches=None if batches_per_epoch is None else batches_per_epoch - skip_batches,
                  num_samples=int(man["total"]), modalities=sample.modalities,
                  classes=None if classes is None else classes["classes"],
                  multilabel=None if classes is None else bool(classes["multilabel"]))


def model_inputs(batch: dict[str, Any], video_cfg: VideoConfig, device: torch.device | str = "cpu"
                 ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(video, audio) of a loader batch on `device`, as the model takes them: uint8 frames
    (data.normalize_video "step") are normalised there, after the copy; absent ones are None."""
    video, audio = batch.get("video"), batch.get("audio")
    if video is not None:
        video = video_input(video, video_cfg, device)
    if audio is not None:
        audio = audio.to(device, non_blocking=True)
    return video, audio


def make_pretrain_loader(data_cfg: DataConfig, folder: str | Path, batch_size: int, batches_per_epoch: int,
                         rank: int = 0, world_size: int = 1, seed: int = 0, epoch: int = 0, skip_batches: int = 0,
                         num_workers: int | None = None, pin_memory: bool = False,
                         shuffle_buffer: int | None = None) -> Loader:
    """Unlabelled clips as S = data_cfg.segments contiguous segments, both modalities:
    {"video": [B,S,3,T,crop,crop], "audio": [B,S,1,F,Tm], "key": list[str]}; exactly
    `batches_per_epoch - skip_batches` batches on every rank. With data_cfg.normalize_video "step" the
    video is uint8 frames [B,S,T,crop,crop,3]; `Loader.model_inputs` gives what the model takes."""
    folder = resolve_folder(folder)
    man = read_manifest(folder)
    spec = SampleSpec(mode="pretrain", segments=data_cfg.segments, modalities=MODALITIES)
    return _make(folder, man, data_cfg, spec, batch_size=batch_size, seed=seed, epoch=epoch, rank=rank,
                 world_size=world_size, batches_per_epoch=int(batches_per_epoch), skip_batches=int(skip_batches),
                 num_workers=num_workers, pin_memory=pin_memory, shuffle_buffer=shuffle_buffer)


def make_downstream_loader(data_cfg: DataConfig, task_folder: str | Path, split: str, *, segments: int,
                           train: bool, batch_size: int, temporal_views: int = 1, spatial_crops: int = 1,
                           modalities: Sequence[str] | None = None, rank: int = 0, world_size: int = 1,
                           seed: int = 0, epoch: int = 0, batches_per_epoch: int | None = None,
                           skip_batches: int = 0, num_workers: int | None = None, pin_memory: bool = False,
                           shuffle_buffer: int | None = None) -> Loader:
    """Labelled clips of `<task_folder>/<split>` (split: train / val / test).

    train=True: S evenly spaced jittered segments, augmented, shuffled; a fixed number of batches
      (default ceil(samples / (batch_size * world_size)), one pass on average) with
      {"video": [B,S,3,T,crop,crop], "audio": [B,S,1,F,Tm], "label": int64 [B] | "labels": float32 [B,C]}.
    train=False: one deterministic pass, V = temporal_views * spatial_crops views per clip (view
      v = temporal_view * spatial_crops + crop): {"video": [B,V,S,3,T,ts,ts], "audio": [B,V,S,1,F,Tm], ...}.
    Video as in make_pretrain_loader: uint8 [..., T, H, W, 3] frames with normalize_video "step";
    `Loader.model_inputs` gives what the model takes.
    `modalities` (default: those every clip of the split carries, sizes.json meta "modalities") picks what
    is decoded; ones no clip carries are dropped and are not in the batch; clips lacking a requested one
    are skipped (no_audio / no_video).
    """
    tf = Path(task_folder)
    folder = resolve_folder(tf, split)
    man = read_manifest(folder)
    classes = read_classes(tf)
    have, present = _dataset_modalities(man), _present_modalities(man)
    want = tuple(m for m in (modalities or have) if m in present)
    if not want:
        raise ValueError(f"{folder} has modalities {have} (some clips: {present}); requested {list(modalities or [])}")
    spec = SampleSpec(mode="train" if train else "eval", segments=int(segments),
                      temporal_views=int(temporal_views), spatial_crops=int(spatial_crops), modalities=want,
                      multilabel=bool(classes["multilabel"]), num_classes=len(classes["classes"]))
    bpe = None
    if train:
        bpe = batches_per_epoch or max(1, math.ceil(man["total"] / (batch_size * world_size)))
    return _make(folder, man, data_cfg, spec, batch_size=batch_size, seed=seed, epoch=epoch, rank=rank,
                 world_size=world_size, batches_per_epoch=bpe, skip_batches=int(skip_batches),
                 num_workers=num_workers, pin_memory=pin_memory, shuffle_buffer=shuffle_buffer, classes=classes)
