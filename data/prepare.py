"""CLI: local videos + official manifest -> shards in the contract layout. Never downloads anything.

  python -m data.prepare <dataset> --videos DIR --manifest FILE [FILE ...] --out DIR
                         [--workers N] [--split S] [--classes FILE] [...]

datasets and what --manifest / --split / --classes mean:
  kinetics700      Kinetics CSV(s) (youtube_id,time_start,time_end,label,split); pretraining clips of
                   --clip-seconds (default 30) centred on the annotated 10 s when the full video
                   `<id>.*` is found, the file itself when the trimmed `<id>_<start:06d>_<end:06d>.*` is
  audioset         segment CSV(s) (balanced_train / unbalanced_train -> train, eval -> test);
                   --classes class_labels_indices.csv; same 30 s windows as Kinetics
  ucf101           --manifest the splits folder (classInd.txt, trainlist0k.txt, testlist0k.txt); --split k
  hmdb51           --manifest the splits folder (<class>_test_split<k>.txt); --split k
  esc50            --manifest meta/esc50.csv; --split fold k (test fold); audio-only clips
  kinetics_sounds  --manifest Kinetics CSV(s); --classes the class list (one name per line)
  charades         --manifest Charades_v1_train.csv Charades_v1_test.csv; --classes Charades_v1_classes.txt
Output: <out>/<task>/{train,val,test}/ shards + sizes.json and <out>/<task>/classes.json, with
<task> = kinetics700, audioset, kinetics_sounds, charades, or ucf101/split<k>, hmdb51/split<k>,
esc50/split<k>. A val split is carved (seeded, per class) out of train when the dataset has none.
Resumable: finished shards are kept and the input position is recorded in sizes.json; re-running
the same command continues; complete splits are skipped (--overwrite redoes them).

Too short: a result shorter than --min-seconds is skipped (reason too_short, counted in the summary
and in sizes.json). Default for the pretraining sets (kinetics700, audioset): the shortest clip the
pretraining loader accepts, --clip-seconds less the loader's short tolerance (29.75 s for 30 s at 16
fps; data.sampling.min_clip_seconds, the rule the loader applies), so a trimmed 10 s Kinetics file
is skipped here instead of being written and then dropped by every epoch; other datasets: one
segment. An explicit --min-seconds overrides both.
Modalities: sizes.json's meta records, per split, `clip_modalities` (how many clips carry video and
audio) and `modalities` (those every clip carries, the loaders' default), so a visual-only dataset
whose clips lack audio (UCF101, HMDB51, Charades often do) defaults to visual instead of skipping
every audio-less clip.
Shard count (ours): a split is cut into at least --shards shards when it has that many clips
(maxcount = inputs // shards, the --maxsize cap still applies), default 128 >= the 80 loader slots
of 8 GPUs x 10 workers, so no slot has to read every shard (data.slots' fallback).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from data import manifests
from data.config import DataConfig
from data.encode import EncodeOptions
from data.parallel import ordered_map
from data.errors import ClipError
from data.sampling import min_clip_seconds
from data.shards import MANIFEST, SPLITS, ShardWriter, make_sample, read_manifest, write_classes
from data.transcode import Target, transcode

VIDEO_EXTS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".3gp")
AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac")
PRETRAIN_SETS = ("kinetics700", "audioset")
MODALITIES = ("visual", "audio")  # as the loaders name them; json fields has_video / has_audio
_HAS = {"visual": "has_video", "audio": "has_audio"}
DEFAULT_SHARDS = 128  # at least this many shards per split (ours; see the module docstring)
DATASETS = ("kinetics700", "audioset", "ucf101", "hmdb51", "esc50", "kinetics_sounds", "charades")


def load_manifest(dataset: str, paths: list[str], split: str | None, classes: str | None) -> manifests.Manifest:
    k = int(split) if split and split.isdigit() else 1
    if dataset == "kinetics700":
        man = manifests.read_kinetics(paths)
        man.needs_audio = True
        return man
    if dataset == "audioset":
        return manifests.read_audioset(paths, classes)
    if dataset == "ucf101":
        return manifests.read_ucf101(paths[0], k)
    if dataset == "hmdb51":
        return manifests.read_hmdb51(paths[0], k)
    if dataset == "esc50":
        return manifests.read_esc50(paths[0], k)
    if dataset == "kinetics_sounds":
        if not classes:
            raise SystemExit("kinetics_sounds needs --classes <class list file>")
        man = manifests.read_kinetics_sounds(paths, classes)
        man.needs_audio = True
        return man
    if dataset == "charades":
        return manifests.read_charades(paths, classes)
    raise SystemExit(f"unknown dataset {dataset!r}; one of {', '.join(DATASETS)}")


def task_dir(out: Path, dataset: str, split: str | None) -> Path:
    if dataset in ("ucf101", "hmdb51", "esc50"):
        return out / dataset / f"split{int(split) if split and split.isdigit() else 1}"
    return out / dataset


class FileIndex:
    """Every media file under the videos folder, by relative path and by stem (one walk)."""

    def __init__(self, root: Path, exts: tuple[str, ...]):
        self.by_rel: dict[str, str] = {}
        self.by_stem: dict[str, str] = {}
        for dirpath, _, files in os.walk(root):
            for f in sorted(files):
                p = Path(dirpath) / f
                if p.suffix.lower() not in exts:
                    continue
                rel = p.relative_to(root).as_posix()
                self.by_rel[rel] = str(p)
                self.by_rel[rel.rsplit(".", 1)[0]] = str(p)
                self.by_stem.setdefault(p.stem, str(p))

    def find(self, candidates: list[str]) -> tuple[str | None, str | None]:
        """(path, the candidate that matched)."""
        for c in candidates:
            hit = self.by_rel.get(c) or self.by_stem.get(c) or self.by_stem.get(Path(c).stem if "." in c else c)
            if hit:
                return hit, c
        return None, None


@dataclass
class Job:
    index: int
    item: manifests.Item
    path: str | None
    matched: str | None
    target: Target
    clip_seconds: float | None
    source: str


def window(item: manifests.Item, matched: str | None, clip_seconds: float | None) -> tuple[float | None, float | None]:
    """Time window to cut from the found file: the whole file when it is already trimmed (or the item
    has no times), else the annotated span, widened to `clip_seconds` around its centre if asked."""
    if item.start is None or matched in item.trimmed:
        return None, None
    s, e = item.start, item.end
    if clip_seconds and e is not None and e - s < clip_seconds:
        mid = 0.5 * (s + e)
        s = max(0.0, mid - 0.5 * clip_seconds)
        e = s + clip_seconds
    return s, e


def default_min_seconds(dataset: str, clip_seconds: float | None, fps: float, cfg: DataConfig) -> float:
    """--min-seconds default: for pretraining sets the shortest `clip_seconds` clip the pretraining loader
    accepts (data.sampling's rule, with the loader's short tolerance); otherwise one segment."""
    if dataset in PRETRAIN_SETS and clip_seconds:
        return min_clip_seconds(clip_seconds, fps, cfg.short_tolerance_s)
    return cfg.video.segment_seconds


def shard_maxcount(inputs: int, shards: int, maxcount: int) -> int:
    """Samples per shard so that `inputs` clips make at least `shards` shards (when there are that many)."""
    if shards <= 0:
        return maxcount
    return max(1, min(maxcount, inputs // shards))


def _why(reason: str, err: Exception) -> str:
    """'<reason> (<error type>: <message>)', one line, bounded: the first word keys the summary's counts,
    the rest (kept in sizes.json's skipped list) says what was wrong with the file."""
    detail = " ".join(str(err).split())[:200]
    return f"{reason} ({type(err).__name__}{': ' + detail if detail else ''})"


def run_job(job: Job) -> tuple[int, str, bytes | None, dict[str, Any] | str]:
    """Worker: (index, id, mp4 or None, json fields or the skip reason)."""
    it = job.item
    if job.path is None:
        return job.index, it.id, None, "missing"
    s, e = window(it, job.matched, job.clip_seconds)
    try:
        data, fields = transcode(job.path, s, e, job.target)
    except ClipError as err:
        return job.index, it.id, None, _why(err.reason, err)
    except Exception as err:  # noqa: BLE001 - one bad input never stops a preparation run
        return job.index, it.id, None, _why("corrupt", err)
    meta = {"id": it.id, "source": job.source, "file": os.path.basename(job.path), **fields, **it.extra}
    if s is not None:
        meta.update(start=s, end=s + fields["duration"])
    if it.labels is not None:
        meta["labels"] = it.labels
    elif it.label is not None:
        meta["label"] = it.label
    return job.index, it.id, data, meta


def prepare_split(items: list[manifests.Item], folder: Path, files: FileIndex, target: Target,
                  clip_seconds: float | None, source: str, meta: dict[str, Any], workers: int,
                  maxsize: float, maxcount: int, split: str) -> dict[str, Any]:
    """Transcode one split into shards, resuming from sizes.json; returns a summary."""
    writer = ShardWriter(folder, prefix=split, maxsize=maxsize, maxcount=maxcount, meta=meta, resume=True)
    start = int(writer.extra.get("next_input", 0))
    skipped: list[list[str]] = list(writer.extra.get("skipped", []))
    # clips written per modality; saved with each finished shard (counts only those), so a resume continues them
    # (unknown when resuming shards written before the counts existed: then the expected modalities stay)
    counted = "clips_with" in writer.extra or not writer.shards
    has: dict[str, int] = {m: int(writer.extra.get("clips_with", {}).get(m, 0)) for m in MODALITIES}
    writer.extra["clips_with"] = has
    jobs = []
    for i, it in enumerate(items[start:], start):
        path, matched = files.find(it.candidates)
        jobs.append(Job(i, it, path, matched, target, clip_seconds, source))
    results = ordered_map(run_job, jobs, workers if len(jobs) > 1 else 1)
    try:
        for idx, cid, data, info in tqdm(results, total=len(jobs), initial=0, desc=f"{folder}", unit="clip",
                                         dynamic_ncols=True, file=sys.stderr):
            writer.extra["next_input"] = idx
            writer.extra["skipped"] = skipped
            if data is None:
                skipped.append([cid, str(info)])
                continue
            writer.write(make_sample(cid, data, info))
            for m in MODALITIES:
                has[m] += bool(info.get(_HAS[m]))
        writer.extra["next_input"] = len(items)
        writer.extra["skipped"] = skipped
        if counted:
            writer.meta["clip_modalities"] = dict(has)
            if writer.total:  # what every clip carries (an empty split keeps what the dataset should have)
                writer.meta["modalities"] = [m for m in MODALITIES if has[m] == writer.total]
        writer.close()
    finally:
        results.close()
    reasons = Counter(r.split(" ")[0] for _, r in skipped)
    return {"written": writer.total, "skipped": dict(reasons), "inputs": len(items)}


def main(argv: list[str] | None = None) -> int:
    d = DataConfig()
    p = argparse.ArgumentParser(prog="python -m data.prepare", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", choices=DATASETS)
    p.add_argument("--videos", required=True, help="folder with the downloaded videos/audio (searched recursively)")
    p.add_argument("--manifest", required=True, nargs="+", help="annotation file(s) or split folder")
    p.add_argument("--out", required=True, help="data root to write into (e.g. data/cache/prepared)")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    p.add_argument("--split", default=None, help="official split / fold number (ucf101, hmdb51, esc50) or "
                                                  "one of train/val/test to prepare only that split")
    p.add_argument("--classes", default=None, help="class list / label file (kinetics_sounds, audioset, charades)")
    p.add_argument("--fps", type=float, default=d.video.fps)
    p.add_argument("--short-side", type=int, default=d.video.stored_short_side)
    p.add_argument("--audio-rate", type=int, default=d.audio.sample_rate)
    p.add_argument("--clip-seconds", type=float, default=None,
                   help=f"pretraining window (default {d.segments * d.video.segment_seconds:g} s for kinetics700/audioset)")
    p.add_argument("--min-seconds", type=float, default=None,
                   help="skip results shorter than this as too_short (default: kinetics700/audioset the "
                        "pretraining clip less the loader's short tolerance, others one segment)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of train carved into val when there is none")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--crf", type=int, default=EncodeOptions.crf)
    p.add_argument("--preset", default=EncodeOptions.preset,
                   choices=("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"),
                   help="x264 preset (data.bench_prepare measures speed, size and quality per preset)")
    p.add_argument("--maxsize", type=float, default=1e9, help="bytes per shard (~1 GB)")
    p.add_argument("--maxcount", type=int, default=100_000)
    p.add_argument("--shards", type=int, default=DEFAULT_SHARDS,
                   help=f"at least this many shards per split when it has that many clips (default {DEFAULT_SHARDS}, "
                        "for 8 GPUs x 10 loader workers; 0 = only --maxsize/--maxcount)")
    p.add_argument("--limit", type=int, default=0, help="only the first N items per split (smoke tests)")
    p.add_argument("--overwrite", action="store_true", help="redo splits that are already complete")
    a = p.parse_args(argv)

    man = load_manifest(a.dataset, a.manifest, a.split, a.classes)
    odd = Counter(it.split for it in man.items if it.split not in SPLITS)
    if odd:  # rows of another split would be dropped without a word: refuse before any work
        first = next(it for it in man.items if it.split not in SPLITS)
        p.error(f"{', '.join(map(str, a.manifest))}: {sum(odd.values())} rows have a split that is not "
                f"{' / '.join(SPLITS)} ({dict(odd)}; e.g. {first.id!r}); fix their split column or the file name")
    man.items = manifests.carve_val(man.items, a.val_fraction, a.seed)
    out = task_dir(Path(a.out), a.dataset, a.split)
    clip_seconds = a.clip_seconds
    if clip_seconds is None and a.dataset in PRETRAIN_SETS:
        clip_seconds = d.segments * d.video.segment_seconds
    min_seconds = a.min_seconds if a.min_seconds is not None else default_min_seconds(a.dataset, clip_seconds,
                                                                                        a.fps, d)
    target = Target(fps=a.fps, short_side=a.short_side, audio_rate=a.audio_rate, need_video=man.needs_video,
                    need_audio=man.needs_audio, min_seconds=min_seconds, options=EncodeOptions(crf=a.crf, preset=a.preset))
    files = FileIndex(Path(a.videos), AUDIO_EXTS if man.audio_only else VIDEO_EXTS + AUDIO_EXTS)
    only = a.split if a.split in SPLITS else None
    # what the clips should carry; each split's sizes.json then records what they actually carry
    expected = (["visual"] if man.needs_video else []) + ["audio"]
    summary = {}
    t0 = time.time()
    for split in SPLITS:
        items = [it for it in man.items if it.split == split]
        if a.limit:
            items = items[: a.limit]
        if not items or (only and split != only):
            continue
        folder = out / split
        if (folder / MANIFEST).is_file() and not a.overwrite:
            try:
                done = read_manifest(folder)
                summary[split] = {"written": done["total"], "skipped": "(complete, kept)", "inputs": len(items)}
                continue
            except RuntimeError:
                pass  # incomplete: resume
        elif a.overwrite and folder.exists():
            shutil.rmtree(folder)
        meta = {"modalities": expected, "dataset": a.dataset, "split": split, "fps": a.fps,
                "short_side": a.short_side, "audio_rate": a.audio_rate, "clip_seconds": clip_seconds,
                "min_seconds": min_seconds}
        summary[split] = prepare_split(items, folder, files, target, clip_seconds, a.dataset, meta, a.workers,
                                       a.maxsize, shard_maxcount(len(items), a.shards, a.maxcount), split)
    write_classes(out, man.classes, man.multilabel, dataset=a.dataset, modalities=_task_modalities(out, expected))
    print(f"\n{a.dataset} -> {out} ({time.time() - t0:.0f} s)")
    for split, s in summary.items():
        print(f"  {split:5s}: {s['written']} clips written of {s['inputs']} inputs; skipped: {s['skipped'] or 'none'}")
    short = sum(s["skipped"].get("too_short", 0) for s in summary.values() if isinstance(s["skipped"], dict))
    if short:
        why = (f"the pretraining loader needs {clip_seconds:g} s clips less its {d.short_tolerance_s:g} s tolerance"
               if a.min_seconds is None and a.dataset in PRETRAIN_SETS else "the minimum")
        print(f"  {short} source(s) skipped as too_short: under {min_seconds:g} s ({why}); --min-seconds overrides")
    return 0


def _task_modalities(out: Path, expected: list[str]) -> list[str]:
    """Modalities every prepared split of the task carries (classes.json), in loader order."""
    have = [read_manifest(f, allow_incomplete=True)["meta"].get("modalities", expected)
            for f in (out / s for s in SPLITS) if (f / MANIFEST).is_file()]
    return [m for m in MODALITIES if all(m in h for h in have)] if have else list(expected)


if __name__ == "__main__":
    raise SystemExit(main())
