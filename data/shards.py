"""Shard format, writer and manifest.

Format (WebDataset tar, one sample = one clip):
  `<key>.mp4`  H.264 video at the target fps and short side, with an AAC mono track when the clip has
               audio (audio-only datasets store an audio-only mp4)
  `<key>.json` {"id", "source", "start", "end", "label" | "labels", "fps", "audio_rate", "duration",
               "has_audio", "has_video", ...dataset extras}
Beside the shards, `sizes.json` (written atomically after every finished shard):
  {"format", "complete", "total", "shards": {name: count}, "ids": {name: [ids]}, "meta": {...},
   "extra": {...writer-owner state, e.g. a preparer's resume position}}
  meta "modalities": what every clip carries (the downstream loader's default); data.prepare also
  writes "clip_modalities" ({"visual": n, "audio": m}, clips carrying each) and "min_seconds".
Why a manifest: epoch length and sample counts never need a scan (open_clip's sizes.json), and the
clip ids per shard make a dataset copy auditable. Shards are written as `.tar.tmp` and renamed when
closed, so an interrupted writer leaves only complete shards behind (what resuming relies on).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import webdataset as wds

from common.fsutil import atomic_write_json, read_json

FORMAT = "avbert-wds-1"
MANIFEST = "sizes.json"
CLASSES = "classes.json"
SPLITS = ("train", "val", "test")


def sample_key(clip_id: str) -> str:
    """WebDataset splits keys at the first '.' of the basename: keep ids dot- and slash-free."""
    return re.sub(r"[./\\\s]", "_", str(clip_id))


def make_sample(clip_id: str, mp4: bytes, meta: dict[str, Any]) -> dict[str, Any]:
    """A shard sample; json is encoded here (sorted keys) so identical inputs give identical bytes."""
    meta = dict(meta)
    meta.setdefault("id", str(clip_id))
    return {"__key__": sample_key(clip_id), "mp4": mp4, "json": json.dumps(meta, sort_keys=True).encode()}


class ShardWriter:
    """Rolls `<prefix>-NNNNNN.tar` shards on `maxcount` samples or `maxsize` bytes (~1 GB default).

    resume=True keeps the shards listed in an existing (incomplete) sizes.json, deletes any other
    shard files of this prefix and continues numbering; `extra` (a dict the owner may update, e.g.
    with the next input index) is saved with every manifest write and restored on resume.
    `verbose=0` mirrors webdataset's ShardWriter and prints nothing.
    """

    def __init__(self, folder: str | Path, prefix: str = "shard", maxsize: float = 1e9, maxcount: int = 100_000,
                 meta: dict[str, Any] | None = None, resume: bool = False, verbose: int = 0):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.prefix, self.maxsize, self.maxcount, self.verbose = prefix, float(maxsize), int(maxcount), verbose
        self.meta = dict(meta or {})
        self.shards: dict[str, int] = {}
        self.ids: dict[str, list[str]] = {}
        self.extra: dict[str, Any] = {}
        if resume and (self.folder / MANIFEST).is_file():
            old = read_json(self.folder / MANIFEST)
            self.shards, self.ids = dict(old["shards"]), {k: list(v) for k, v in old["ids"].items()}
            self.extra = dict(old.get("extra", {}))
            self.meta = {**old.get("meta", {}), **self.meta}
        for f in self.folder.iterdir():  # partial (.tmp) or unlisted shards from an interrupted run
            if f.name.startswith(prefix + "-") and (f.name.endswith(".tmp") or
                                                    (f.name.endswith(".tar") and f.name not in self.shards)):
                f.unlink()
        self._index = len(self.shards)
        self._tar: wds.TarWriter | None = None
        self._stream = None
        self._name = ""
        self._count = 0
        self._size = 0
        self._ids: list[str] = []

    @property
    def total(self) -> int:
        return sum(self.shards.values()) + self._count

    def _open(self) -> None:
        self._name = f"{self.prefix}-{self._index:06d}.tar"
        self._index += 1
        self._stream = open(self.folder / (self._name + ".tmp"), "wb")
        # mtime fixed, user/group fixed: identical samples give byte-identical tars
        self._tar = wds.TarWriter(self._stream, mtime=0.0, encoder=False)
        self._count, self._size, self._ids = 0, 0, []
        if self.verbose:
            print(f"# writing {self.folder / self._name}", flush=True)

    def _close_shard(self) -> None:
        if self._tar is None:
            return
        self._tar.close()
        self._stream.flush()
        os.fsync(self._stream.fileno())
        self._stream.close()
        tmp = self.folder / (self._name + ".tmp")
        if self._count:
            os.replace(tmp, self.folder / self._name)
            self.shards[self._name] = self._count
            self.ids[self._name] = self._ids
        else:
            tmp.unlink()
            self._index -= 1
        self._tar = self._stream = None
        self._count = 0
        self._save(complete=False)

    def write(self, sample: dict[str, Any]) -> None:
        size = sum(len(v) for k, v in sample.items() if not k.startswith("__"))
        if self._tar is not None and (self._count >= self.maxcount or
                                      (self._count and self._size + size > self.maxsize)):
            self._close_shard()
        if self._tar is None:
            self._open()
        self._tar.write(sample)
        self._count += 1
        self._size += size
        try:
            meta = json.loads(sample["json"])
        except (KeyError, TypeError, ValueError):
            meta = {}
        self._ids.append(str(meta.get("id", sample["__key__"])) if isinstance(meta, dict) else sample["__key__"])

    def _save(self, complete: bool) -> None:
        atomic_write_json(self.folder / MANIFEST, {
            "format": FORMAT, "complete": complete, "total": sum(self.shards.values()),
            "shards": self.shards, "ids": self.ids, "meta": self.meta, "extra": self.extra}, indent=1)

    def close(self) -> None:
        """Finish the open shard and mark the manifest complete (an empty dataset is allowed)."""
        self._close_shard()
        self._save(complete=True)

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif self._tar is not None:  # leave only complete shards + an incomplete manifest
            self._tar.close()
            self._stream.close()
            (self.folder / (self._name + ".tmp")).unlink(missing_ok=True)


def read_manifest(folder: str | Path, allow_incomplete: bool = False) -> dict[str, Any]:
    """The folder's sizes.json; raises if it is missing or was left incomplete by a crashed writer."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a shard folder (write it with data.prepare or "
                                "data.synthetic)")
    man = read_json(path)
    if man.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown format {man.get('format')!r} (expected {FORMAT})")
    if not man.get("complete") and not allow_incomplete:
        raise RuntimeError(f"{path} is incomplete: its writer was interrupted; re-run it to resume")
    return man


def shard_paths(folder: str | Path, manifest: dict[str, Any] | None = None) -> list[Path]:
    """Shard files in name order (the order the writer produced them)."""
    man = manifest or read_manifest(folder)
    return [Path(folder) / name for name in sorted(man["shards"])]


def write_classes(task_folder: str | Path, classes: list[str], multilabel: bool, **extra: Any) -> None:
    """`classes.json` at the task folder: index -> name, and whether labels are multi-label."""
    atomic_write_json(Path(task_folder) / CLASSES, {"classes": list(classes), "multilabel": bool(multilabel),
                                                    "num_classes": len(classes), **extra}, indent=1)


def read_classes(task_folder: str | Path) -> dict[str, Any]:
    return read_json(Path(task_folder) / CLASSES)
