"""Preparation cost benchmark: what `python -m data.prepare kinetics700` costs per clip, per x264 preset,
and what that makes Kinetics-700 cost.

    python -m data.bench_prepare            # ~3 min on 2 cores

Why: every pretraining clip is transcoded once (decode the 30 s window of the source, resize to
160 px at 16 fps, H.264 + AAC, shard), so core-hours and shard storage at Kinetics-700 scale (~650k
clips) follow from the per-clip cost measured here on one core.
Sources: `--sources` generated full-length "YouTube" videos at 340x256 (the common Kinetics download
size), 25 or 30 fps, 40-60 s, H.264 (crf 23) + stereo AAC at 44.1 kHz: a panned, smoothed random texture
with moving shapes and light noise, so the encoder spends real-footage-like bits on it (the source
bitrate is in the report). Generated once into <cache>/sources<N>/ with a Kinetics CSV whose 10 s
annotations sit mid-video, as for full (untrimmed) downloads.
Measured: (a) the CLI end to end with one worker (one core): s per clip after its start-up, MB per clip; (b) data.transcode per
x264 preset (crf 23): seconds per clip, MB per clip, PSNR of the decoded 160 px frames against a lossless
(crf 0) encoding of the same frames, i.e. how far each preset's training input is from the exact one;
(c) the Kinetics-700 estimate: clips x s/clip -> core-hours, wall time on a 64-core node, storage.
Timings are machine-dependent; the report records the CPU and versions. Writes
results/bench/prepare_paper.json (atomically) and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import os
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from common import paths
from common.fsutil import atomic_write_json
from common.provenance import bench_header
from data.config import DataConfig
from data.encode import EncodeOptions
from data.shards import MANIFEST, read_manifest
from data.transcode import Target, transcode

KINETICS_700_CLIPS = 650_000  # about: train + val + test of Kinetics-700 (2020)
PRESETS = ("veryfast", "superfast", "ultrafast", "faster")


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smoothed random RGB texture [h, w, 3] float32 in [0, 255]: box-blurred noise, film-like grain."""
    x = rng.random((h, w, 3), dtype=np.float32)
    for axis in (0, 1):
        c = np.cumsum(np.pad(x, [(4, 4) if a == axis else (0, 0) for a in range(3)], mode="wrap"), axis=axis)
        x = (np.take(c, np.arange(8, c.shape[axis]), axis=axis) - np.take(c, np.arange(0, c.shape[axis] - 8), axis=axis)) / 8
    x = (x - x.min()) / (x.max() - x.min() + 1e-6)
    return (x * 255).astype(np.float32)


def make_source(path: Path, seconds: float, fps: int, seed: int, size: tuple[int, int] = (340, 256)) -> None:
    """One source video: texture panned across the frame, two moving discs, light per-frame noise,
    H.264 crf 23 (veryfast) + stereo AAC 44.1 kHz (two tones with a slow beat and noise)."""
    rng = np.random.default_rng(seed)
    w, h = size
    tex = _texture(rng, h * 2, w * 2)
    yy, xx = np.mgrid[0:h, 0:w]
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as c:
        v = c.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        v.options = {"crf": "23", "preset": "veryfast"}
        a = c.add_stream("aac", rate=44100)
        a.layout = "stereo"
        n = int(seconds * fps)
        for i in range(n):
            t = i / fps
            oy, ox = int(h / 2 + h / 2 * math.sin(0.21 * t)), int(w / 2 + w / 2 * math.sin(0.13 * t + 1))
            img = tex[oy:oy + h, ox:ox + w].copy()
            for k, (r, col) in enumerate(((30, 220.0), (18, 40.0))):
                cy, cx = h / 2 + h / 3 * math.sin(1.1 * t + k), w / 2 + w / 3 * math.cos(0.7 * t + 2 * k)
                img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = col
            img += rng.normal(0, 4, img.shape).astype(np.float32)
            frame = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), format="rgb24")
            for p in v.encode(frame):
                c.mux(p)
        tt = np.arange(int(seconds * 44100)) / 44100
        wave = 0.2 * np.sin(2 * np.pi * 220 * tt) * (1 + np.sin(2 * np.pi * 0.5 * tt)) / 2
        stereo = np.stack([wave + 0.02 * rng.standard_normal(tt.size), 0.8 * wave + 0.02 * rng.standard_normal(tt.size)])
        stereo = stereo.astype(np.float32)
        for k in range(0, tt.size, 1024):
            af = av.AudioFrame.from_ndarray(stereo[:, k:k + 1024].copy(), format="fltp", layout="stereo")
            af.sample_rate, af.pts, af.time_base = 44100, k, Fraction(1, 44100)
            for p in a.encode(af):
                c.mux(p)
        for s in (v, a):
            for p in s.encode(None):
                c.mux(p)
    os.replace(tmp, path)


def make_sources(cache: Path, n: int) -> tuple[Path, Path]:
    """(videos folder, Kinetics CSV) of n sources, generated once."""
    root = cache / f"sources{n}"
    videos, manifest = root / "videos", root / "kinetics700.csv"
    if manifest.exists():
        return videos, manifest
    videos.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        seconds, fps = 40 + 20 * i / max(1, n - 1), (25, 30)[i % 2]
        yid = f"src{i:05d}abc"  # 11 characters like a YouTube id
        make_source(videos / f"{yid}.mp4", seconds, fps, seed=i)
        mid = seconds / 2
        rows.append({"label": "testing", "youtube_id": yid, "time_start": int(mid - 5), "time_end": int(mid + 5),
                     "split": "train"})
    tmp = manifest.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    os.replace(tmp, manifest)
    return videos, manifest


def _frames(data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    mse = float(np.mean((a[:n].astype(np.float32) - b[:n].astype(np.float32)) ** 2))
    return round(10 * math.log10(255 ** 2 / mse), 2) if mse > 0 else float("inf")


def bench_cli(videos: Path, manifest: Path, out: Path, n: int) -> dict[str, Any]:
    """The CLI end to end with one worker (argv list, no shell); its start-up (interpreter, imports) is
    timed apart, since at 650k clips it is paid once per job, not per clip."""
    cmd = [sys.executable, "-m", "data.prepare", "kinetics700", "--videos", str(videos), "--manifest", str(manifest),
           "--out", str(out), "--workers", "1", "--overwrite"]
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import data.prepare"], check=True)
    startup = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    splits = [d for d in (out / "kinetics700").iterdir() if (d / MANIFEST).exists()]  # train + carved val
    total = sum(read_manifest(d)["total"] for d in splits)
    mb = sum(p.stat().st_size for d in splits for p in d.glob("*.tar")) / 1e6
    per = (wall - startup) / max(1, total)
    return {"clips": total, "wall_s": round(wall, 2), "startup_s": round(startup, 2), "s_per_clip": round(per, 3),
            "clips_per_s_per_core": round(1 / per, 3), "mb_per_clip": round(mb / max(1, total), 3),
            "skipped": n - total}


def bench_presets(videos: Path, manifest: Path, presets: tuple[str, ...], cfg: DataConfig) -> dict[str, Any]:
    """transcode() of every source's 30 s window per preset: time, size, PSNR to a lossless encoding."""
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    clip_s = cfg.segments * cfg.video.segment_seconds
    out: dict[str, Any] = {}
    refs = []
    for r in rows:
        mid = (float(r["time_start"]) + float(r["time_end"])) / 2
        path, window = str(videos / f"{r['youtube_id']}.mp4"), (mid - clip_s / 2, mid + clip_s / 2)
        tgt = Target(cfg.video.fps, cfg.video.stored_short_side, cfg.audio.sample_rate, need_audio=True,
                     options=EncodeOptions(crf=0, preset="ultrafast"))
        refs.append((path, window, _frames(transcode(path, *window, tgt)[0])))
    for preset in presets:
        secs, sizes, q = [], [], []
        for path, window, ref in refs:
            tgt = Target(cfg.video.fps, cfg.video.stored_short_side, cfg.audio.sample_rate, need_audio=True,
                         options=EncodeOptions(preset=preset))
            t = time.perf_counter()
            data, _ = transcode(path, *window, tgt)
            secs.append(time.perf_counter() - t)
            sizes.append(len(data) / 1e6)
            q.append(psnr(_frames(data), ref))
        out[preset] = {"s_per_clip": round(float(np.mean(secs)), 3), "mb_per_clip": round(float(np.mean(sizes)), 3),
                       "psnr_db_vs_lossless": round(float(np.mean(q)), 2)}
    return out


def estimate(s_per_clip: float, mb_per_clip: float, clips: int = KINETICS_700_CLIPS, cores: int = 64) -> dict[str, Any]:
    core_h = clips * s_per_clip / 3600
    return {"clips": clips, "core_hours": round(core_h, 1), "wall_hours_64_cores": round(core_h / cores, 2),
            "storage_tb": round(clips * mb_per_clip / 1e6, 2)}


def table(rep: dict[str, Any]) -> str:
    cli, est = rep["cli"], rep["kinetics700"]
    lines = [f"prepare kinetics700, one worker: {cli['clips']} clips in {cli['wall_s']} s ({cli['startup_s']} s of it "
             f"start-up) = {cli['s_per_clip']} s/clip ({cli['clips_per_s_per_core']} clips/s per core), "
             f"{cli['mb_per_clip']} MB/clip", "",
             "| x264 preset (crf 23) | s per clip | MB per clip | PSNR vs lossless (dB) |", "|---|---|---|---|"]
    for k, r in rep["presets"].items():
        lines.append(f"| {k} | {r['s_per_clip']:.2f} | {r['mb_per_clip']:.2f} | {r['psnr_db_vs_lossless']:.2f} |")
    lines += ["", f"Kinetics-700 ({est['clips']:,} clips) at the default preset: {est['core_hours']:,} core-hours, "
              f"{est['wall_hours_64_cores']} h on 64 cores, {est['storage_tb']} TB of shards"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m data.bench_prepare", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sources", type=int, default=4, help="generated source videos (40-60 s each)")
    ap.add_argument("--presets", default=",".join(PRESETS), help="x264 presets to compare (comma-separated)")
    ap.add_argument("--cache", default="data/cache/bench/prepare", help="where sources and outputs are kept")
    ap.add_argument("--out", default="results/bench/prepare_paper.json")
    args = ap.parse_args(argv)
    cfg = DataConfig()
    cache = paths.resolve(args.cache)
    videos, manifest = make_sources(cache, args.sources)
    src_mb = [p.stat().st_size / 1e6 for p in videos.glob("*.mp4")]
    with av.open(str(next(iter(sorted(videos.glob("*.mp4")))))) as c:
        src_kbps = round(c.bit_rate / 1e3, 1) if c.bit_rate else None
    print("timing the CLI ...", file=sys.stderr)
    cli = bench_cli(videos, manifest, cache / "prepared", args.sources)
    print("timing presets ...", file=sys.stderr)
    presets = bench_presets(videos, manifest, tuple(p for p in args.presets.split(",") if p), cfg)
    default = EncodeOptions.preset
    rep = {**bench_header("data.bench_prepare", argv),
           "sources": {"count": args.sources, "size": [340, 256], "fps": [25, 30], "seconds": [40, 60],
                       "mb_mean": round(float(np.mean(src_mb)), 2), "first_kbps": src_kbps},
           "target": {"clip_seconds": cfg.segments * cfg.video.segment_seconds, "fps": cfg.video.fps,
                      "short_side": cfg.video.stored_short_side, "audio_rate": cfg.audio.sample_rate,
                      "crf": EncodeOptions.crf, "default_preset": default, "aac_coder": EncodeOptions.aac_coder},
           "cli": cli, "presets": presets,
           "kinetics700": estimate(cli["s_per_clip"], cli["mb_per_clip"])}
    atomic_write_json(paths.resolve(args.out), rep)
    print(table(rep))
    print(f"\nwrote {paths.resolve(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
