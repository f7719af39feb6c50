"""Generate the synthetic benchmark into a root folder, in the shard format real datasets use.

Layout: `pretrain/` (shards + sizes.json), `<task>/{train,val,test}/` + `<task>/classes.json` for
ucf_like, esc_like, ks_like, charades_like, and `synthetic.json` (what was generated, written last).
Determinism: clip i of (task, split) is rendered from SeedSequence([seed, task, split, i]) and labels
are a seeded balanced permutation, so the same seed gives the same ids, labels, shard manifests and
decoded content whatever the number of worker processes (workers render, the parent writes in order;
x264 runs single-threaded). `ensure_synthetic` is safe to call from several processes at once: a file
lock serialises them, the first generates into a temp folder and renames it into place, the others
find it done.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from data.config import DataConfig
from data.encode import EncodeOptions, encode_clip
from data.parallel import ordered_map
from data.fsutil import atomic_write_json, file_lock, read_json
from data.shards import ShardWriter, make_sample, write_classes
from data.synthetic import vocab
from data.synthetic.render import render_audio, render_video
from data.synthetic.scenes import sample_scene, scripts
from data.synthetic.spec import VERSION, SyntheticSpec, preset, render_params

RECORD = "synthetic.json"
# x264's assembly made a few clips' bitstreams (hence decoded pixels) differ between runs with
# identical input (uninitialised reads); without it the benchmark is byte-identical per seed, at
# more encode time, which the ultrafast preset wins back
_ENCODE = EncodeOptions(crf=20, preset="ultrafast", aac_coder="fast", x264_params="no-asm=1")
TASK_IDS = {"pretrain": 0, "ucf_like": 1, "esc_like": 2, "ks_like": 3, "charades_like": 4}
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
MODALITIES = {"pretrain": ("visual", "audio"), "ucf_like": ("visual", "audio"), "esc_like": ("audio",),
              "ks_like": ("visual", "audio"), "charades_like": ("visual", "audio")}
DESCRIPTION = {
    "ucf_like": "label = the visual signature most events show; audio signatures are random (uninformative)",
    "esc_like": "audio-only clips; label = the audio signature most events have",
    "ks_like": "audio-visual: v0a0/v0a1 differ only in audio, v2a2/v3a2 only in video, the two 4/5 classes "
               "only in which sound goes with which shape",
    "charades_like": "multi-label: label (a, b) = event type a happens before event type b (mAP)",
}


def class_names(task: str) -> list[str]:
    if task == "ucf_like":
        return [vocab.visual_name(i) for i in range(8)]
    if task == "esc_like":
        return [vocab.audio_name(j) for j in range(8)]
    if task == "ks_like":
        return [name for name, _ in vocab.KS_CLASSES]
    if task == "charades_like":
        return [f"e{a}_before_e{b}" for a, b in vocab.CHARADES_LABELS]
    raise ValueError(task)


def _labels(task: str, split: str, n: int, seed: int, spec: SyntheticSpec) -> list[int | None]:
    """Balanced labels in a seeded order (pretrain: latent scripts; charades: decided per clip)."""
    if task == "charades_like":
        return [None] * n
    c = spec.latent_classes if task == "pretrain" else len(class_names(task))
    rng = np.random.default_rng([int(seed), TASK_IDS[task], SPLIT_IDS.get(split, 9), 0x1AB])
    return [int(x) for x in rng.permutation(np.arange(n) % c)]


def render_clip(job: tuple) -> tuple[str, bytes, dict[str, Any]]:
    """Worker: one clip -> (id, mp4 bytes, json meta)."""
    task, split, index, label, seed, rp, spec_json = job
    spec = SyntheticSpec(**{**spec_json, "tasks": tuple(spec_json["tasks"])})
    rng = np.random.default_rng([int(seed), TASK_IDS[task], SPLIT_IDS.get(split, 9), int(index)])
    seg_s = rp["frames_per_segment"] / rp["fps"]
    duration = rp["segments"] * seg_s
    scene = sample_scene(task, label, duration, seg_s, rng, spec, scripts(seed, spec))
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
    if scene.latent is not None:
        meta["latent"] = scene.latent
    if scene.labels is not None:
        meta["labels"] = scene.labels
    elif scene.label is not None:
        meta["label"] = scene.label
    return clip_id, mp4, meta


def _jobs(seed: int, cfg: DataConfig, spec: SyntheticSpec) -> list[tuple[str, str, list[tuple]]]:
    rp, sj = render_params(cfg), spec.to_json()
    out = [("pretrain", "", [("pretrain", "", i, lab, seed, rp, sj) for i, lab in
                             enumerate(_labels("pretrain", "", spec.pretrain_clips, seed, spec))])]
    for task in spec.tasks:
        for split, n in spec.splits.items():
            out.append((task, split, [(task, split, i, lab, seed, rp, sj) for i, lab in
                                      enumerate(_labels(task, split, n, seed, spec))]))
    return out


def generate(root: str | Path, cfg: DataConfig, spec: SyntheticSpec | None = None, seed: int = 0,
             workers: int | None = None, progress: bool = True, shard_clips: int | None = None) -> Path:
    """Write the whole benchmark into `root` (which should be empty); returns root."""
    spec = spec or preset(cfg.resolved_synthetic_scale())
    root = Path(root)
    t0 = time.time()
    groups = _jobs(seed, cfg, spec)
    total = sum(len(j) for _, _, j in groups)
    workers = max(1, min(os.cpu_count() or 1, 8) if workers is None else int(workers))
    per_shard = shard_clips or (40 if cfg.resolved_synthetic_scale() == "tiny" else 500)
    rp = render_params(cfg)
    bar = tqdm(total=total, desc=f"synthetic -> {root}", unit="clip", disable=not progress, dynamic_ncols=True)
    counts: dict[str, dict[str, int]] = {}
    try:
        for task, split, jobs in groups:
            folder = root / task / split if split else root / task
            meta = {"modalities": list(MODALITIES[task]), "task": task, "split": split or "train",
                    "generator": "data.synthetic", "version": VERSION, **rp}
            results = ordered_map(render_clip, jobs, workers, chunksize=4)
            try:
                with ShardWriter(folder, prefix=split or "pretrain", maxcount=per_shard, meta=meta) as w:
                    for clip_id, mp4, m in results:
                        w.write(make_sample(clip_id, mp4, m))
                        bar.update(1)
            finally:
                results.close()
            counts.setdefault(task, {})[split or "train"] = len(jobs)
            if split:
                write_classes(root / task, class_names(task), task == "charades_like",
                              modalities=list(MODALITIES[task]), description=DESCRIPTION[task])
    finally:
        bar.close()
    atomic_write_json(root / RECORD, {"version": VERSION, "seed": int(seed), "scale": cfg.resolved_synthetic_scale(),
                                      "render": rp, "spec": spec.to_json(), "clips": counts,
                                      "wall_s": round(time.time() - t0, 2)})
    return root


def _check(root: Path, cfg: DataConfig, spec: SyntheticSpec, seed: int) -> None:
    rec = read_json(root / RECORD)
    want = json.loads(json.dumps({"version": VERSION, "seed": int(seed), "render": render_params(cfg),
                                  "spec": spec.to_json()}))  # tuples -> lists, as stored
    got = {k: rec.get(k) for k in want}
    if got != want:
        diff = sorted(k for k in want if got[k] != want[k])
        raise ValueError(f"{root} holds a synthetic benchmark generated with different {diff}: "
                         f"delete it or point data.root elsewhere (found {[got[k] for k in diff]}, "
                         f"want {[want[k] for k in diff]})")


def ensure_synthetic(root: str | Path, data_cfg: DataConfig, seed: int = 0, workers: int | None = None,
                     spec: SyntheticSpec | None = None, progress: bool = True) -> Path:
    """Generate the benchmark into `root` unless it is already there (and matches); returns root.

    Concurrency-safe: file lock + generation into a temp folder + atomic rename.
    """
    root = Path(root).resolve()
    spec = spec or preset(data_cfg.resolved_synthetic_scale())
    if (root / RECORD).is_file():
        _check(root, data_cfg, spec, seed)
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(root.parent / f".{root.name}.lock"):
        if (root / RECORD).is_file():
            _check(root, data_cfg, spec, seed)
            return root
        if root.exists():
            raise FileExistsError(f"{root} exists but holds no {RECORD}: not a synthetic benchmark root; "
                                  "remove it or choose another data.root")
        for stale in root.parent.glob(f".{root.name}.tmp-*"):  # left by a crashed generator (lock is ours)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
        try:
            generate(tmp, data_cfg, spec, seed, workers, progress)
            os.rename(tmp, root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return root
