"""Readers for the official annotation files of each dataset -> a list of `Item`s + class names.

Each reader only parses text; finding the video files and cutting windows is data.prepare's job.
`Item.candidates` lists file stems / relative paths to look for, most specific first (a trimmed
Kinetics clip `<id>_<start:06d>_<end:06d>` before the full video `<id>`).
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Item:
    id: str  # unique clip id (becomes the sample key, dots replaced)
    split: str  # train | val | test
    candidates: list[str]  # file stems or relative paths (with or without extension) to look for
    start: float | None = None  # annotated segment in the source video (seconds), None = whole file
    end: float | None = None
    label: int | None = None  # single-label datasets
    labels: list[int] | None = None  # multi-label datasets
    trimmed: tuple[str, ...] = ()  # candidates that are already cut to [start, end]
    extra: dict[str, Any] = field(default_factory=dict)  # dataset fields copied into the json


@dataclass
class Manifest:
    items: list[Item]
    classes: list[str]
    multilabel: bool
    needs_audio: bool = False  # clips without an audio track are skipped (pretraining sets, ESC-50)
    needs_video: bool = True
    audio_only: bool = False


_SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validate": "val",
                "validation": "val", "test": "test", "testing": "test", "eval": "test"}


def _split_name(s: str) -> str:
    return _SPLIT_NAMES.get(s.strip().lower(), s.strip().lower())


def _kinetics_stem(yid: str, start: float, end: float) -> str:
    return f"{yid}_{int(round(start)):06d}_{int(round(end)):06d}"


def read_kinetics(paths: list[str | Path], classes: list[str] | None = None) -> Manifest:
    """Kinetics CSVs with a header (youtube_id, time_start, time_end, label, split; any column order;
    the test CSV has no label). Split from the `split` column, else from the file name."""
    items: list[Item] = []
    rows = []
    for p in paths:
        with open(p, newline="") as f:
            for r in csv.DictReader(f):
                r = {k.strip(): (v or "").strip() for k, v in r.items() if k}
                split = r.get("split") or ("val" if "val" in Path(p).name else
                                           "test" if "test" in Path(p).name else "train")
                rows.append((r, _split_name(split)))
    names = classes or sorted({r["label"] for r, _ in rows if r.get("label")})
    index = {n: i for i, n in enumerate(names)}
    for r, split in rows:
        label = r.get("label") or None
        if classes is not None and label not in index:
            continue  # class subset (Kinetics-Sounds)
        yid, s, e = r["youtube_id"], float(r["time_start"]), float(r["time_end"])
        stem = _kinetics_stem(yid, s, e)
        items.append(Item(id=stem, split=split, candidates=[stem, yid], start=s, end=e,
                          label=index.get(label) if label else None, trimmed=(stem,),
                          extra={"label_name": label} if label else {}))
    return Manifest(items, names, multilabel=False)


def read_class_list(path: str | Path) -> list[str]:
    """One class name per line ('#' comments and blank lines ignored)."""
    out = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def read_kinetics_sounds(paths: list[str | Path], class_file: str | Path) -> Manifest:
    """Kinetics-Sounds = the Kinetics rows whose label is in the class list. Labels index the sorted
    class names (the released code sorts its class folders). Kinetics has no labelled test set, so
    its validation rows become our test split (and data.prepare carves val out of train)."""
    names = sorted(set(read_class_list(class_file)))
    man = read_kinetics(paths, classes=names)
    for it in man.items:
        it.split = "test" if it.split == "val" else it.split
    man.items = [it for it in man.items if it.label is not None]
    return man


def _uncomment(f) -> list[str]:
    return [line for line in f if line.strip() and not line.lstrip().startswith("#")]


def read_audioset(paths: list[str | Path], label_csv: str | Path | None = None) -> Manifest:
    """AudioSet segment CSVs: '#' comment lines, then `YTID, start_seconds, end_seconds,
    "mid1,mid2"`. Split from the file name (eval -> test, else train). Class names from
    class_labels_indices.csv (index, mid, display_name) when given, else the sorted mids seen."""
    rows = []
    for p in paths:
        split = "test" if "eval" in Path(p).name else "train"
        with open(p, newline="") as f:
            for r in csv.reader(_uncomment(f), skipinitialspace=True):
                if len(r) >= 4:
                    rows.append((r[0].strip(), float(r[1]), float(r[2]),
                                 [m.strip() for m in r[3].split(",") if m.strip()], split))
    if label_csv is not None:
        with open(label_csv, newline="") as f:
            lab = list(csv.DictReader(f))
        mids = [r["mid"] for r in lab]
        names = [r["display_name"] for r in lab]
    else:
        mids = sorted({m for *_, ms, _ in rows for m in ms})
        names = list(mids)
    index = {m: i for i, m in enumerate(mids)}
    items = []
    for yid, s, e, ms, split in rows:
        stem = _kinetics_stem(yid, s, e)
        alt = f"{yid}_{int(s)}_{int(e)}"
        items.append(Item(id=stem, split=split, candidates=[stem, alt, f"Y{yid}", yid], start=s, end=e,
                          labels=sorted({index[m] for m in ms if m in index}), trimmed=(stem, alt, f"Y{yid}"),
                          extra={"mids": ms}))
    return Manifest(items, names, multilabel=True, needs_audio=True)


def read_ucf101(split_dir: str | Path, split: int = 1) -> Manifest:
    """UCF101 official splits: classInd.txt ('1 ApplyEyeMakeup'), trainlist0k.txt ('Class/v_x.avi 1'),
    testlist0k.txt ('Class/v_x.avi'). Labels 0-based."""
    d = Path(split_dir)
    names = [line.split()[1] for line in (d / "classInd.txt").read_text().splitlines() if line.strip()]
    index = {n: i for i, n in enumerate(names)}
    items = []
    for fname, sp in ((f"trainlist{split:02d}.txt", "train"), (f"testlist{split:02d}.txt", "test")):
        for line in (d / fname).read_text().splitlines():
            if not line.strip():
                continue
            rel = line.split()[0].replace("\\", "/")
            cls, stem = rel.split("/")[0], Path(rel).stem
            items.append(Item(id=stem, split=sp, candidates=[rel, stem], label=index[cls],
                              extra={"label_name": cls}))
    return Manifest(items, names, multilabel=False)


def read_hmdb51(split_dir: str | Path, split: int = 1) -> Manifest:
    """HMDB51 official splits: `<class>_test_split<k>.txt`, lines '<video>.avi <flag>' with
    flag 1 = train, 2 = test, 0 = unused. Classes sorted by name."""
    d = Path(split_dir)
    files = sorted(d.glob(f"*_test_split{split}.txt"))
    if not files:
        raise FileNotFoundError(f"no *_test_split{split}.txt in {d}")
    names = [f.name[: -len(f"_test_split{split}.txt")] for f in files]
    items = []
    for label, (cls, f) in enumerate(zip(names, files)):
        for line in f.read_text().splitlines():
            parts = line.split()
            if len(parts) < 2 or parts[1] == "0":
                continue
            video = parts[0]
            items.append(Item(id=Path(video).stem, split="train" if parts[1] == "1" else "test",
                              candidates=[f"{cls}/{video}", video, Path(video).stem], label=label,
                              extra={"label_name": cls}))
    return Manifest(items, names, multilabel=False)


def read_esc50(meta_csv: str | Path, fold: int = 1) -> Manifest:
    """ESC-50 meta/esc50.csv (filename, fold, target, category, ...): fold `fold` is the test split,
    the other four folds train. Audio-only."""
    with open(meta_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    names_by_target = {int(r["target"]): r["category"] for r in rows}
    names = [names_by_target[i] for i in sorted(names_by_target)]
    items = [Item(id=Path(r["filename"]).stem, split="test" if int(r["fold"]) == fold else "train",
                  candidates=[r["filename"], f"audio/{r['filename']}", Path(r["filename"]).stem],
                  label=int(r["target"]), extra={"fold": int(r["fold"]), "label_name": r["category"]})
             for r in rows]
    return Manifest(items, names, multilabel=False, needs_audio=True, needs_video=False, audio_only=True)


_ACTION = re.compile(r"(c\d{3})\s+([\d.]+)\s+([\d.]+)")


def read_charades(paths: list[str | Path], class_file: str | Path | None = None) -> Manifest:
    """Charades_v1_{train,test}.csv (id, ..., actions 'c092 11.90 21.20;c147 0.00 12.60', length).
    Video-level multi-label (the standard Charades mAP setting); intervals kept in the json.
    Split from the file name. Classes from Charades_v1_classes.txt ('c000 Holding some clothes')
    when given, else c000..c156 as seen."""
    rows = []
    for p in paths:
        split = "test" if "test" in Path(p).name else "train"
        with open(p, newline="") as f:
            rows += [(r, split) for r in csv.DictReader(f)]
    if class_file is not None:
        codes, names = [], []
        for line in Path(class_file).read_text().splitlines():
            if line.strip():
                code, _, name = line.strip().partition(" ")
                codes.append(code)
                names.append(name or code)
    else:
        codes = sorted({m.group(1) for r, _ in rows for m in _ACTION.finditer(r.get("actions") or "")})
        names = list(codes)
    index = {c: i for i, c in enumerate(codes)}
    items = []
    for r, split in rows:
        acts = [(m.group(1), float(m.group(2)), float(m.group(3))) for m in _ACTION.finditer(r.get("actions") or "")]
        items.append(Item(id=r["id"].strip(), split=split, candidates=[r["id"].strip()],
                          labels=sorted({index[c] for c, _, _ in acts if c in index}),
                          extra={"intervals": [[index.get(c, -1), s, e] for c, s, e in acts],
                                 "length": float(r["length"]) if r.get("length") else None}))
    return Manifest(items, names, multilabel=True)


def carve_val(items: list[Item], fraction: float, seed: int = 0) -> list[Item]:
    """Move a seeded `fraction` of train items to val (per class for single-label items) when the
    dataset has no val split. Deterministic for a seed and the same manifest."""
    if fraction <= 0 or any(it.split == "val" for it in items):
        return items
    train = sorted((it for it in items if it.split == "train"), key=lambda it: it.id)
    groups: dict[Any, list[Item]] = {}
    for it in train:
        groups.setdefault(it.label, []).append(it)
    rng = np.random.default_rng([int(seed), 0xA1])
    for key in sorted(groups, key=lambda k: (k is None, k)):
        g = groups[key]
        k = int(round(len(g) * fraction))
        for i in rng.permutation(len(g))[:k]:
            g[int(i)].split = "val"
    return items
