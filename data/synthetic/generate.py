"""Generate the synthetic benchmark into a root folder, in the shard format real datasets use.

Layout: `pretrain/` (shards + sizes.json; its one split is "train": ids `pretrain_train_NNNNNN`),
`pretrain_val/` (held-out pretraining clips, split "val": CPP / MEP accuracy per epoch),
`<task>/{train,val,test}/` + `<task>/classes.json` for ucf_like, esc_like, ks_like, bind_like,
charades_like, and
`synthetic.json` (what was generated, written last). Clip ids are `<task>_<split>_<index:06d>`.
Shard size (ours): tiny keeps 40 clips per shard; paper cuts every split into at least
PAPER_SHARDS = 128 shards (clips // 128 per shard; ~78 x 4.5 MB for the 10,000 pretraining clips)
where 1 GB shards would give ~45, fewer than the 80 loader slots of 8 GPUs x 10 workers, which makes
every slot read every shard (data.slots' fallback). `shards=` / `--shards` sets another minimum,
`shard_clips=` a fixed count; the 1 GB cap still applies.
Determinism: clip i of (task, split) is rendered from SeedSequence([seed, task, split, i]) and labels
are a seeded balanced permutation, so the same seed gives the same ids, labels, shard manifests and
decoded content whatever the number of worker processes (workers render, the parent writes in order;
x264 runs single-threaded). `ensure_synthetic` is safe to call from several processes at once: a file
lock serialises them, the first generates into a temp folder and renames it into place, the others
find it done. A root written by an older generator VERSION (same seed, spec and render settings) is
regenerated in place under the lock; any other mismatch is refused.
Tasks on demand (ours): `ensure_synthetic(..., tasks=[...])` generates only the tasks asked for that the
root lacks ("pretrain" = pretrain/ + pretrain_val/; runs ask for what they read, so the main job renders
4,960 of the 8,944 tiny clips); each later call adds what it lacks (temp folder, rename, then the record,
which lists the tasks present under "clips"). Clip i of (task, split) does not depend on which other
tasks exist, so a root grown task by task holds the same bytes as one generated whole.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from common.fsutil import atomic_write_json, file_lock, read_json
from data.config import DataConfig
from data.encode import EncodeOptions, encode_clip
from data.parallel import ordered_map
from data.shards import ShardWriter, make_sample, write_classes
from data.synthetic import vocab
from data.synthetic.render import render_audio, render_video
from data.synthetic.scenes import Scene, sample_scene
from data.synthetic.spec import VERSION, SyntheticSpec, preset, render_params

log = logging.getLogger("data")
RECORD = "synthetic.json"
TINY_SHARD_CLIPS = 40  # clips per shard at the tiny scale
PAPER_SHARDS = 128  # at least this many shards per split at the paper scale (ours, see the module docstring)
PRETRAIN_SPLIT = "train"  # the pretraining set's split (ids, json and sizes.json say so)
PRETRAIN_VAL_SPLIT = "val"  # held-out pretraining clips, in pretrain_val/
# x264's assembly made a few clips' bitstreams (hence decoded pixels) differ between runs with
# identical input (uninitialised reads); without it the benchmark is byte-identical per seed, at
# more encode time, which the ultrafast preset wins back
_ENCODE = EncodeOptions(crf=20, preset="ultrafast", aac_coder="fast", x264_params="no-asm=1")
TASK_IDS = {"pretrain": 0, "ucf_like": 1, "esc_like": 2, "ks_like": 3, "charades_like": 4, "bind_like": 5}
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
_PRETRAIN_SEED_KEYS = {PRETRAIN_SPLIT: 9, PRETRAIN_VAL_SPLIT: 10}  # pretraining clips' RNG keys in place of a split id
MODALITIES = {"pretrain": ("visual", "audio"), "ucf_like": ("visual", "audio"), "esc_like": ("audio",),
              "ks_like": ("visual", "audio"), "bind_like": ("visual", "audio"), "charades_like": ("visual", "audio")}
DESCRIPTION = {
    "ucf_like": "label = the visual signature most events show; audio signatures are random (uninformative)",
    "esc_like": "audio-only clips; label = the audio signature most events have",
    "ks_like": "audio-visual: v0a0/v0a1 differ only in audio, v2a2/v3a2 only in video, the two 4/5 classes "
               "only in which sound goes with which shape",
    "bind_like": "audio-visual binding: a clip shows 4 random visual signatures, each with the class's audio "
                 "signature for it at the same time; the class is which sound goes with which shape (class 0: as "
                 "in pretraining), so only the binding separates the classes",
    "charades_like": "multi-label: label (a, b) = event type a happens before event type b (mAP)",
}


def class_names(task: str) -> list[str]:
    if task == "ucf_like":
        return [vocab.visual_name(i) for i in range(8)]
    if task == "esc_like":
        return [vocab.audio_name(j) for j in range(8)]
    if task == "ks_like":
        return [name for name, _ in vocab.KS_CLASSES]
    if task == "bind_like":
        return list(vocab.BIND_NAMES)
    if task == "charades_like":
        return [f"e{a}_before_e{b}" for a, b in vocab.CHARADES_LABELS]
    raise ValueError(task)


def _seed_key(task: str, split: str) -> int:
    return _PRETRAIN_SEED_KEYS[split] if task == "pretrain" else SPLIT_IDS[split]


def _labels(task: str, split: str, n: int, seed: int, spec: SyntheticSpec) -> list[int | None]:
    """Balanced labels in a seeded order (pretrain: none; charades: decided per clip)."""
    if task in ("pretrain", "charades_like"):
        return [None] * n
    c = len(class_names(task))
    rng = np.random.default_rng([int(seed), TASK_IDS[task], _seed_key(task, split), 0x1AB])
    return [int(x) for x in rng.permutation(np.arange(n) % c)]


def clip_scene(task: str, split: str, index: int, label: int | None, seed: int, rp: dict,
               spec: SyntheticSpec) -> tuple[Scene, np.random.Generator]:
    """One clip's scene and the RNG that goes on to render it. Also replayed by probes
    (experiments/probes/segments.py) to know what each segment of a stored clip shows."""
    rng = np.random.default_rng([int(seed), TASK_IDS[task], _seed_key(task, split), int(index)])
    seg_s = rp["frames_per_segment"] / rp["fps"]
    return sample_scene(task, label, rp["segments"] * seg_s, seg_s, rng, spec), rng


def render_clip(job: tuple) -> tuple[str, bytes, dict[str, Any]]:
    """Worker: one clip -> (id, mp4 bytes, json meta)."""
    task, split, index, label, seed, rp, spec_json = job
    spec = SyntheticSpec.from_json(spec_json)
    scene, rng = clip_scene(task, split, index, label, seed, rp, spec)
    duration = scene.duration
    n_frames = int(round(duration * rp["fps"]))
    has_video = "visual" in MODALITIES[task]
    frames = render_video(scene, rp["size"], rp["fps"], n_frames, rng) if has_video else None
    audio = render_audio(scene, rp["audio_rate"], int(round(duration * rp["audio_rate"])), rng)
    mp4 = encode_clip(frames, audio, rp["fps"], rp["audio_rate"], _ENCODE)
    clip_id = f"{task}_{split}_{index:06d}"
    meta: dict[str, Any] = {
        "id": clip_id, "source": "synthetic", "task": task, "split": split, "start": 0.0, "end": duration,
        "fps": rp["fps"], "audio_rate": rp["audio_rate"], "duration": duration, "has_audio": True,
        "has_video": has_video,
        "events": [[-1 if e.etype is None else e.etype, -1 if e.vis is None else e.vis,
                    -1 if e.aud is None else e.aud, round(e.t0, 3), round(e.t1, 3)] for e in scene.events]}
    if scene.labels is not None:
        meta["labels"] = scene.labels
    elif scene.label is not None:
        meta["label"] = scene.label
    return clip_id, mp4, meta


def _jobs(seed: int, cfg: DataConfig, spec: SyntheticSpec) -> list[tuple[str, str, list[tuple]]]:
    rp, sj = render_params(cfg), spec.to_json()
    out = [("pretrain", split, [("pretrain", split, i, None, seed, rp, sj) for i in range(n)])
           for split, n in ((PRETRAIN_SPLIT, spec.pretrain_clips), (PRETRAIN_VAL_SPLIT, spec.pretrain_val_clips)) if n]
    for task in spec.tasks:
        for split, n in spec.splits.items():
            out.append((task, split, [(task, split, i, lab, seed, rp, sj) for i, lab in
                                      enumerate(_labels(task, split, n, seed, spec))]))
    return out


def clips_per_shard(n: int, scale: str, shard_clips: int | None = None, shards: int | None = None) -> int:
    """Shard size for a split of `n` clips: `shard_clips` if given, else at least `shards` shards (when there
    are that many clips), else the scale's default (tiny: 40 per shard; paper: >= PAPER_SHARDS shards)."""
    if shard_clips:
        return int(shard_clips)
    if shards is None and scale in ("tiny", "smoke"):
        return TINY_SHARD_CLIPS
    return max(1, int(n) // max(1, int(shards or PAPER_SHARDS)))


def all_tasks(spec: SyntheticSpec) -> tuple[str, ...]:
    """Every task of the benchmark: "pretrain" (pretrain/ and pretrain_val/) and the labelled ones."""
    return ("pretrain", *spec.tasks)


def _task_dirs(task: str) -> tuple[str, ...]:
    return ("pretrain", "pretrain_val") if task == "pretrain" else (task,)


def _wanted(spec: SyntheticSpec, tasks: Iterable[str] | None) -> list[str]:
    """`tasks` (None: all) in the benchmark's order; a name the benchmark does not have is refused."""
    known = all_tasks(spec)
    if tasks is None:
        return list(known)
    unknown = sorted(set(tasks) - set(known))
    if unknown:
        raise ValueError(f"the synthetic benchmark has no task(s) {unknown}; it has {list(known)}")
    return [t for t in known if t in set(tasks)]


def generate(root: str | Path, cfg: DataConfig, spec: SyntheticSpec | None = None, seed: int = 0,
             workers: int | None = None, progress: bool = True, shard_clips: int | None = None,
             shards: int | None = None, tasks: Iterable[str] | None = None) -> Path:
    """Write the benchmark's `tasks` (default: all, see all_tasks) into `root` (which should be empty);
    returns root. Shard sizes: see clips_per_shard (shard_clips: fixed clips per shard; shards: minimum
    shards per split)."""
    spec = spec or preset(cfg.resolved_synthetic_scale())
    root = Path(root)
    t0 = time.time()
    wanted = _wanted(spec, tasks)
    groups = [g for g in _jobs(seed, cfg, spec) if g[0] in wanted]
    total = sum(len(j) for _, _, j in groups)
    workers = max(1, min(os.cpu_count() or 1, 8) if workers is None else int(workers))
    rp = render_params(cfg)
    bar = tqdm(total=total, desc=f"synthetic -> {root}", unit="clip", disable=not progress, dynamic_ncols=True)
    counts: dict[str, dict[str, int]] = {}
    try:
        for task, split, jobs in groups:
            pre = task == "pretrain"
            folder = (root / ("pretrain_val" if split == PRETRAIN_VAL_SPLIT else task)) if pre else root / task / split
            meta = {"modalities": list(MODALITIES[task]), "task": task, "split": split,
                    "generator": "data.synthetic", "version": VERSION, **rp}
            per_shard = clips_per_shard(len(jobs), cfg.resolved_synthetic_scale(), shard_clips, shards)
            results = ordered_map(render_clip, jobs, workers, chunksize=4)
            try:
                with ShardWriter(folder, prefix="pretrain" if pre else split, maxcount=per_shard, meta=meta) as w:
                    for clip_id, mp4, m in results:
                        w.write(make_sample(clip_id, mp4, m))
                        bar.update(1)
            finally:
                results.close()
            counts.setdefault(task, {})[split] = len(jobs)
            if not pre:
                write_classes(root / task, class_names(task), task == "charades_like",
                              modalities=list(MODALITIES[task]), description=DESCRIPTION[task])
    finally:
        bar.close()
    atomic_write_json(root / RECORD, {"version": VERSION, "seed": int(seed), "scale": cfg.resolved_synthetic_scale(),
                                      "render": rp, "spec": spec.to_json(), "clips": counts,
                                      "shards": {"shard_clips": shard_clips, "min_shards": shards},
                                      "wall_s": round(time.time() - t0, 2)}, indent=1)
    return root


def _check(root: Path, cfg: DataConfig, spec: SyntheticSpec, seed: int) -> bool:
    """True if `root` holds this benchmark; False if another generator VERSION made it for the same seed
    and render settings (its spec defaults may differ too: regenerate it); raises ValueError on any other
    difference (another request: someone else's benchmark, never overwritten)."""
    rec = read_json(root / RECORD)
    want = json.loads(json.dumps({"version": VERSION, "seed": int(seed), "render": render_params(cfg),
                                  "spec": spec.to_json()}))  # tuples -> lists, as stored
    got = {k: rec.get(k) for k in want}
    diff = sorted(k for k in want if got[k] != want[k])
    if not diff:
        return True
    if "version" in diff and set(diff) <= {"version", "spec"}:  # a version may change the spec defaults
        return False
    raise ValueError(f"{root} holds a synthetic benchmark generated with different {diff}: "
                     f"delete it or point data.root elsewhere (found {[got[k] for k in diff]}, "
                     f"want {[want[k] for k in diff]})")


def present_tasks(root: Path) -> set[str]:
    """The tasks a generated root holds (its record's "clips")."""
    return set((read_json(Path(root) / RECORD).get("clips") or {}))


def _add_tasks(root: Path, tmp: Path) -> None:
    """Move the task folders generated into `tmp` into the existing `root`, then merge the records.
    Folders of those tasks already in root are leftovers of a crash before the record was updated (the
    record does not list them): replaced."""
    new = read_json(tmp / RECORD)
    for task in new["clips"]:
        for name in _task_dirs(task):
            if (tmp / name).exists():
                shutil.rmtree(root / name, ignore_errors=True)
                os.rename(tmp / name, root / name)
    rec = read_json(root / RECORD)
    atomic_write_json(root / RECORD, {**rec, "clips": {**rec.get("clips", {}), **new["clips"]},
                                      "wall_s": round(float(rec.get("wall_s", 0.0)) + float(new["wall_s"]), 2)},
                      indent=1)


def ensure_synthetic(root: str | Path, data_cfg: DataConfig, seed: int = 0, workers: int | None = None,
                     spec: SyntheticSpec | None = None, progress: bool = True, shards: int | None = None,
                     tasks: Iterable[str] | None = None) -> Path:
    """Generate the benchmark's `tasks` (default: all; see all_tasks) into `root` unless they are already
    there (and match); returns root. Tasks the root lacks are added beside the ones it has. A root from
    another generator VERSION (same seed and render settings) is regenerated, so old and new files are
    never mixed; any other mismatch raises ValueError. `shards`: see generate (applies to what is
    generated now; an existing matching root is kept as it is).

    Concurrency-safe: file lock + generation into a temp folder + atomic rename(s).
    """
    root = Path(root).resolve()
    spec = spec or preset(data_cfg.resolved_synthetic_scale())
    wanted = _wanted(spec, tasks)
    if (root / RECORD).is_file() and _check(root, data_cfg, spec, seed) and set(wanted) <= present_tasks(root):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(root.parent / f".{root.name}.lock"):
        outdated, missing = False, wanted
        if (root / RECORD).is_file():
            if _check(root, data_cfg, spec, seed):
                present = present_tasks(root)
                missing = [t for t in wanted if t not in present]
                if not missing:
                    return root
            else:
                outdated = True
        elif root.exists():
            raise FileExistsError(f"{root} exists but holds no {RECORD}: not a synthetic benchmark root; "
                                  "remove it or choose another data.root")
        for pattern in (f".{root.name}.tmp-*", f".{root.name}.old-*"):  # left by a crashed generator (lock is ours)
            for stale in root.parent.glob(pattern):
                shutil.rmtree(stale, ignore_errors=True)
        if outdated:
            log.warning("%s was generated by synthetic generator version %s; regenerating it with version %s",
                        root, read_json(root / RECORD).get("version"), VERSION)
        tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
        old = root.parent / f".{root.name}.old-{os.getpid()}"
        try:
            generate(tmp, data_cfg, spec, seed, workers, progress, shards=shards, tasks=missing)
            if (root / RECORD).is_file() and not outdated:
                _add_tasks(root, tmp)
                shutil.rmtree(tmp, ignore_errors=True)
                return root
            if outdated:
                os.rename(root, old)
            os.rename(tmp, root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if old.exists() and not root.exists():  # put the outdated root back rather than leave none
                os.rename(old, root)
            raise
        shutil.rmtree(old, ignore_errors=True)
    return root
