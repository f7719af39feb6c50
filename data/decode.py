"""Decode the needed time windows of an in-memory mp4 with PyAV.

Why PyAV on bytes: shards hold compressed clips, and torchvision 0.29 has no video I/O any more.
Why windows: a 30 s clip is mostly needed in full at pretraining, but downstream evaluation or a long
source may need a few seconds here and there; decoding seeks (to the keyframe before) whenever the
next needed frame is more than `seek_threshold_s` ahead, and reads through otherwise.

Video frames are picked by index at the target fps: target frame f (time f/fps) is the decoded frame
whose timestamp is nearest (largest timestamp <= f/fps + half a source frame). This is an identity
selection for shards stored at the target fps and a frame-rate conversion otherwise.
Frames are converted to rgb24 through one VideoReformatter per clip (one swscale context, set up
once): `frame.to_ndarray(format="rgb24")` builds a new context for every frame, which cost ~4x the
raw decode time; the pixels are identical (tests/test_data_shards.py). The context runs
single-threaded (ours): DataLoader workers are the parallelism, and swscale's own thread pool was
slower on small frames.
Audio: mono (mean over channels, as released), resampled to the target rate when the stream differs
(torchaudio.functional.resample), cropped at the clip duration (drops the AAC encoder's end padding),
windows addressed in samples at the target rate with time 0 = container time 0 (same origin as the
video timestamps), so segment t's audio covers exactly its frames' span.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import av
import numpy as np
import torch
import torchaudio
from av.video.reformatter import VideoReformatter

from data.errors import ClipError, CorruptClip, NoAudioStream, NoVideoStream

_SWS_THREADS = 1  # swscale threads per conversion (see the module docstring)
_AV_ERRORS = (av.FFmpegError, ValueError, IndexError, KeyError, EOFError, OSError, RuntimeError, TypeError)


@dataclass
class ClipInfo:
    has_video: bool
    has_audio: bool
    width: int
    height: int
    fps: float  # video stream average rate (0 if unknown)
    audio_rate: int
    duration: float  # container duration in seconds (0 if unknown)


def _open(data: bytes):
    try:
        return av.open(io.BytesIO(data), "r")
    except _AV_ERRORS as e:
        raise CorruptClip(f"cannot open container: {e}") from e


def _info(c) -> ClipInfo:
    v = c.streams.video[0] if c.streams.video else None
    a = c.streams.audio[0] if c.streams.audio else None
    dur = float(c.duration / av.time_base) if c.duration else 0.0
    return ClipInfo(has_video=v is not None, has_audio=a is not None,
                    width=v.codec_context.width if v is not None else 0,
                    height=v.codec_context.height if v is not None else 0,
                    fps=float(v.average_rate) if v is not None and v.average_rate else 0.0,
                    audio_rate=int(a.rate) if a is not None and a.rate else 0, duration=dur)


def probe(data: bytes) -> ClipInfo:
    """Stream layout without decoding (~1 ms): what the pipeline checks when it only skips ahead."""
    if not data:
        raise CorruptClip("empty mp4")
    c = _open(data)
    try:
        return _info(c)
    except _AV_ERRORS as e:
        raise CorruptClip(f"cannot read streams: {e}") from e
    finally:
        c.close()


def _rgb(scaler: VideoReformatter, frame) -> np.ndarray:
    """uint8 [H, W, 3]; the same pixels as frame.to_ndarray(format="rgb24"), without a new context."""
    return scaler.reformat(frame, format="rgb24", threads=_SWS_THREADS).to_ndarray()


def _frames_at(c, stream, times: np.ndarray, seek_threshold_s: float) -> list[np.ndarray]:
    """RGB frames for sorted target times (seconds): nearest decoded frame, seeking over gaps."""
    scaler = VideoReformatter()  # one swscale context for the clip (re-set up by swscale if the size changes)
    tb = float(stream.time_base)
    rate = float(stream.average_rate) if stream.average_rate else 0.0
    tol = 0.5 / rate if rate > 0 else 1e-3
    out: list[np.ndarray | None] = [None] * len(times)
    j = 0
    last_img = None
    while j < len(times):
        if times[j] > seek_threshold_s:
            c.seek(max(0, int((times[j] - tol) / tb)), stream=stream, backward=True, any_frame=False)
        prev, prev_img = None, None
        reseek = False
        for frame in c.decode(stream):
            if frame.pts is None:
                continue
            ft = frame.pts * tb
            while j < len(times) and ft > times[j] + tol:
                if prev is None:  # target before the first decoded frame: use this one
                    prev, prev_img = frame, None
                if prev_img is None:
                    prev_img = _rgb(scaler, prev)
                out[j] = prev_img
                j += 1
            if j >= len(times):
                break
            if times[j] - ft > seek_threshold_s:  # a long gap: seek instead of decoding through it
                reseek = True
                prev, prev_img = frame, None
                break
            prev, prev_img = frame, None
        if reseek:
            continue
        if j < len(times):  # stream ended: targets past the end repeat the last frame
            if prev is None and last_img is None:
                break
            if prev is not None:
                last_img = _rgb(scaler, prev)
            while j < len(times):
                out[j] = last_img
                j += 1
    if any(o is None for o in out):
        raise CorruptClip("no decodable video frames")
    return out  # type: ignore[return-value]


def decode_video(c, frame_idx: np.ndarray, fps: float, seek_threshold_s: float = 2.0) -> np.ndarray:
    """uint8 frames [*frame_idx.shape, H, W, 3] for integer frame indices at `fps`."""
    if not c.streams.video:
        raise NoVideoStream("clip has no video stream")
    stream = c.streams.video[0]
    stream.thread_type = "SLICE"
    idx = np.asarray(frame_idx, dtype=np.int64)
    uniq, inverse = np.unique(idx, return_inverse=True)
    imgs = _frames_at(c, stream, uniq / float(fps), seek_threshold_s)
    shapes = {im.shape for im in imgs}
    if len(shapes) != 1:
        raise CorruptClip(f"frame size changes inside the clip: {sorted(shapes)}")
    frames = np.stack(imgs)
    return frames[inverse.reshape(-1)].reshape(*idx.shape, *frames.shape[1:])


def _to_planar_float(frame) -> np.ndarray:
    """[channels, n] float32 for any PyAV audio frame format."""
    if frame.format.name != "fltp":
        frame = av.AudioResampler(format="fltp", layout=frame.layout, rate=frame.sample_rate).resample(frame)[0]
    return frame.to_ndarray().astype(np.float32, copy=False)


def decode_audio(c, starts: np.ndarray, length: int, rate: int, duration: float | None = None,
                 seek_threshold_s: float = 2.0) -> np.ndarray:
    """float32 mono windows [*starts.shape, length]; `starts` in samples at `rate` from time 0.

    Samples outside the decoded audio (before its start, after `duration`) are zeros.
    """
    if not c.streams.audio:
        raise NoAudioStream("clip has no audio stream")
    stream = c.streams.audio[0]
    st = np.asarray(starts, dtype=np.int64)
    lo_s, hi_s = float(st.min()) / rate, float(st.max() + length) / rate
    if duration:
        hi_s = min(hi_s, float(duration))
    preroll = 0.5  # AAC needs the previous frame to decode the first one after a seek
    if lo_s - preroll > seek_threshold_s:
        c.seek(max(0, int((lo_s - preroll) / float(stream.time_base))), stream=stream, backward=True)
    chunks, t0, src_rate = [], None, None
    for frame in c.decode(stream):
        if frame.pts is None:
            continue
        ft = float(frame.pts * frame.time_base)
        if t0 is None:
            t0, src_rate = ft, int(frame.sample_rate)
        elif int(frame.sample_rate) != src_rate:
            raise CorruptClip("audio sample rate changes inside the clip")
        arr = _to_planar_float(frame)
        chunks.append(arr.mean(axis=0))
        if ft + arr.shape[1] / src_rate >= hi_s:
            break
    if not chunks:
        raise CorruptClip("no decodable audio frames")
    mono = np.concatenate(chunks)
    if src_rate != rate:
        mono = torchaudio.functional.resample(torch.from_numpy(mono), src_rate, rate).numpy()
    offset = int(round(t0 * rate))  # target-rate sample index of mono[0]
    if duration:
        mono = mono[:max(0, int(round(duration * rate)) - offset)]
    out = np.zeros((st.size, length), dtype=np.float32)
    for k, s in enumerate(st.reshape(-1)):
        a, b = int(s) - offset, int(s) - offset + length
        lo, hi = max(a, 0), min(b, mono.shape[0])
        if hi > lo:
            out[k, lo - a:hi - a] = mono[lo:hi]
    return out.reshape(*st.shape, length)


@dataclass
class Decoded:
    video: np.ndarray | None  # uint8 [*idx_shape, H, W, 3]
    audio: np.ndarray | None  # float32 [*starts_shape, length]


def decode_clip(data: bytes, frame_idx: np.ndarray | None = None, fps: float = 0.0,
                audio_starts: np.ndarray | None = None, audio_length: int = 0, audio_rate: int = 0,
                duration: float | None = None, seek_threshold_s: float = 2.0) -> Decoded:
    """Decode the requested frames and/or audio windows of one mp4 held in memory.

    Raises a data.errors.ClipError subclass (corrupt / no_video / no_audio); anything PyAV throws
    while decoding counts as corrupt.
    """
    if not data:
        raise CorruptClip("empty mp4")
    c = _open(data)
    try:
        video = audio = None
        if frame_idx is not None:
            video = decode_video(c, frame_idx, fps, seek_threshold_s)
        if audio_starts is not None:
            if frame_idx is not None and c.streams.audio:
                c.seek(0)  # rewind: audio is demuxed in a second pass
            audio = decode_audio(c, audio_starts, audio_length, audio_rate, duration, seek_threshold_s)
        return Decoded(video, audio)
    except ClipError:
        raise
    except _AV_ERRORS as e:
        raise CorruptClip(f"decode failed: {type(e).__name__}: {e}") from e
    finally:
        c.close()
