"""Re-encode a window of a source video (or audio file) to the shard's mp4: target fps (frame
selection by nearest timestamp), short side (PyAV/swscale bilinear resize, sizes even, through one
VideoReformatter per clip: one single-threaded swscale context instead of a new one per frame; the
preparer's worker processes are the parallelism), mono AAC at the target rate (channel mean,
swresample), streamed frame by frame.

Raises data.errors.ClipError subclasses (corrupt / no_video / no_audio / too_short) for inputs that
cannot become a clip; data.prepare records them as skipped with the reason.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from data.encode import EncodeOptions, Mp4Encoder, short_side_size
from data.errors import ClipError, ClipTooShort, CorruptClip, NoAudioStream, NoVideoStream


@dataclass
class Target:
    fps: float = 16.0
    short_side: int = 160
    audio_rate: int = 44100
    need_video: bool = True  # False: audio-only clip (ESC-50)
    need_audio: bool = False  # True: a source without audio is skipped (pretraining sets)
    min_seconds: float = 2.0  # shorter results are skipped as too_short
    options: EncodeOptions | None = None


def _video(c, t0: float, t1: float | None, tgt: Target, enc_factory) -> tuple[Mp4Encoder, int]:
    stream = c.streams.video[0]
    stream.thread_type = "AUTO"
    tb = float(stream.time_base)
    rate = float(stream.average_rate) if stream.average_rate else 0.0
    tol = 0.5 / rate if rate > 0 else 1e-3
    if t0 > 0:
        c.seek(max(0, int(t0 / tb)), stream=stream, backward=True)
    enc = None
    k = 0  # next output frame index; its time is t0 + k / fps
    prev = None
    size = None
    scaler = VideoReformatter()  # one swscale context for the clip (frame.reformat makes one per frame)

    def emit(frame) -> None:
        nonlocal enc, size
        if enc is None:
            size = short_side_size(frame.width, frame.height, tgt.short_side)
            enc = enc_factory(size)
        img = scaler.reformat(frame, width=size[0], height=size[1], format="rgb24", threads=1).to_ndarray()
        enc.add_frames(img)

    for frame in c.decode(stream):
        if frame.pts is None:
            continue
        ft = frame.pts * tb
        # every target time this frame is past (by more than half a source frame) is final: its
        # nearest frame is the previous one (or this one, if the source starts late)
        while (t1 is None or t0 + k / tgt.fps < t1) and ft > t0 + k / tgt.fps + tol:
            emit(prev if prev is not None else frame)
            k += 1
        prev = frame
        if t1 is not None and ft >= t1:
            break
    if prev is not None:  # the last frame covers its own time slot
        end = prev.pts * tb + (1.0 / rate if rate > 0 else 1.0 / tgt.fps)
        while (t1 is None or t0 + k / tgt.fps < t1) and t0 + k / tgt.fps < end - 1e-6:
            emit(prev)
            k += 1
    if enc is None:
        raise CorruptClip("no decodable video frames in the window")
    return enc, k


def _audio(c, t0: float, n_max: int | None, rate: int) -> np.ndarray:
    """Mono float32 at `rate` from time t0 (at most n_max samples)."""
    stream = c.streams.audio[0]
    if t0 > 0:
        c.seek(max(0, int((t0 - 0.5) / float(stream.time_base))), stream=stream, backward=True)
    chunks, first, src = [], None, None
    for frame in c.decode(stream):
        if frame.pts is None:
            continue
        if first is None:
            first, src = float(frame.pts * frame.time_base), int(frame.sample_rate)
        if frame.format.name != "fltp":
            frame = av.AudioResampler(format="fltp", layout=frame.layout, rate=frame.sample_rate).resample(frame)[0]
        chunks.append(frame.to_ndarray().astype(np.float32).mean(axis=0))
        if n_max is not None and (sum(len(x) for x in chunks) / src + first) > t0 + n_max / rate + 0.1:
            break
    if not chunks:
        raise CorruptClip("no decodable audio")
    x = np.concatenate(chunks)
    if src != rate:
        x = resample(x, src, rate)
    skip = int(round((t0 - first) * rate))
    x = x[skip:] if skip >= 0 else np.concatenate([np.zeros(-skip, np.float32), x])
    return x[:n_max] if n_max is not None else x


def resample(x: np.ndarray, src: int, rate: int) -> np.ndarray:
    """Mono float32 resampling with FFmpeg's swresample. Why not torchaudio here: preparer workers are
    forked, and torch's OpenMP pool does not survive a fork once the parent has used it."""
    fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[None], dtype=np.float32), format="fltp", layout="mono")
    fr.sample_rate, fr.pts = src, 0
    rs = av.AudioResampler(format="fltp", layout="mono", rate=rate)
    out = [f.to_ndarray()[0] for f in rs.resample(fr) + rs.resample(None)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


def transcode(path: str, start: float | None, end: float | None, tgt: Target) -> tuple[bytes, dict[str, Any]]:
    """mp4 bytes + json fields (start/end in source time, duration, fps, audio_rate, has_audio,
    has_video, src_width/src_height) for the window [start, end) of `path` (None = file bounds)."""
    t0 = max(0.0, float(start or 0.0))
    t1 = None if end is None else float(end)
    try:
        c = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as e:
        raise CorruptClip(f"cannot open: {e}") from e
    try:
        has_v, has_a = bool(c.streams.video), bool(c.streams.audio)
        if tgt.need_video and not has_v:
            raise NoVideoStream("no video stream")
        if tgt.need_audio and not has_a:
            raise NoAudioStream("no audio stream")
        use_a = has_a
        meta: dict[str, Any] = {}
        if tgt.need_video:
            v = c.streams.video[0]
            meta.update(src_width=v.codec_context.width, src_height=v.codec_context.height,
                        src_fps=float(v.average_rate or 0))
            encs = []

            def factory(size):
                e = Mp4Encoder(tgt.fps, size, tgt.audio_rate if use_a else None, tgt.options)
                encs.append(e)
                return e

            enc, n_frames = _video(c, t0, t1, tgt, factory)
            duration = n_frames / tgt.fps
            if use_a:  # a fresh demuxer for the audio pass: a rewind (c.seek(0)) lost the first 448
                c.close()  # samples of some AAC tracks (data/decode.py does the same)
                c = av.open(str(path))
                n = int(round(duration * tgt.audio_rate))
                wave = _audio(c, t0, n, tgt.audio_rate)
                enc.add_audio(np.pad(wave, (0, max(0, n - len(wave)))))
        else:
            n = None if t1 is None else int(round((t1 - t0) * tgt.audio_rate))
            wave = _audio(c, t0, n, tgt.audio_rate)
            duration = len(wave) / tgt.audio_rate
            enc = Mp4Encoder(None, None, tgt.audio_rate, tgt.options)
            enc.add_audio(wave)
        if duration < tgt.min_seconds - 1e-6:
            raise ClipTooShort(f"{duration:.2f} s < {tgt.min_seconds} s")
        data = enc.finish()
    except ClipError:
        raise
    except (av.FFmpegError, ValueError, IndexError, RuntimeError, OSError) as e:
        raise CorruptClip(f"{type(e).__name__}: {e}") from e
    finally:
        c.close()
    meta.update(start=t0, end=t0 + duration, duration=duration, fps=tgt.fps if tgt.need_video else None,
                audio_rate=tgt.audio_rate if use_a else None, has_audio=use_a, has_video=tgt.need_video)
    if not tgt.need_video:
        meta["fps"] = tgt.fps  # the json field is required; audio-only clips keep the pipeline's fps
    return data, meta
