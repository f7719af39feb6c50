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
video timestamps), so segment t's audio covers exactly its frames' span. With both modalities wanted,
audio packets are collected during the video's demux pass (AudioStash); when the video seeks, the audio
is read from a freshly opened container. The samples are those of decoding the audio alone either way
(tests/test_data_shards.py).
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


class AudioStash:
    """Audio packets read while the video pass demuxes the file, so audio needs no second pass over it
    (a second demux of a paper-size clip cost ~5 ms, as much as decoding its AAC). Valid only while the
    video pass has not seeked; then the audio frames are the stashed packets' and the rest of the file's."""

    def __init__(self, stream):
        self.stream, self.packets, self.valid, self.at_end = stream, [], True, False

    def invalidate(self) -> None:
        self.packets, self.valid = [], False

    def frames(self, c):
        for packet in self.packets:
            yield from packet.decode()
        self.packets = []
        if not self.at_end:  # (at the end, the flushing packet is among the stashed ones)
            for packet in c.demux(self.stream):  # continues from where the video pass stopped reading
                yield from packet.decode()


def _video_frames(c, stream, stash: AudioStash | None):
    """c.decode(stream), keeping the audio packets it reads in `stash`."""
    if stash is None:
        yield from c.decode(stream)
        return
    for packet in c.demux(stream, stash.stream):
        if packet.stream is stream:  # (not stream_index: end-of-stream packets carry index 0)
            yield from packet.decode()
        elif stash.valid:
            stash.packets.append(packet)
    stash.at_end = True


def _frames_at(c, stream, times: np.ndarray, seek_threshold_s: float, stash: AudioStash | None = None
               ) -> np.ndarray:
    """uint8 RGB frames [len(times), H, W, 3] for sorted target times (seconds): nearest decoded frame,
    seeking over gaps. Each frame is converted straight into the output array (one copy per frame, while
    it is in cache: stacking a list afterwards copied a paper-size clip's 49 MB again)."""
    scaler = VideoReformatter()  # one swscale context for the clip (re-set up by swscale if the size changes)
    tb = float(stream.time_base)
    rate = float(stream.average_rate) if stream.average_rate else 0.0
    tol = 0.5 / rate if rate > 0 else 1e-3
    out: np.ndarray | None = None

    def put(j0: int, j1: int, frame) -> None:
        """Targets j0..j1-1 get `frame`."""
        nonlocal out
        img = _rgb(scaler, frame)
        if out is None:
            out = np.empty((len(times), *img.shape), dtype=np.uint8)
        elif img.shape != out.shape[1:]:
            raise CorruptClip(f"frame size changes inside the clip: {sorted({img.shape, out.shape[1:]})}")
        out[j0:j1] = img

    j = 0
    last = None
    while j < len(times):
        if times[j] > seek_threshold_s:
            c.seek(max(0, int((times[j] - tol) / tb)), stream=stream, backward=True, any_frame=False)
            if stash is not None:
                stash.invalidate()
        prev = None
        reseek = False
        j_run = j  # targets served before this run
        for frame in _video_frames(c, stream, stash):
            if frame.pts is None:
                continue
            ft = frame.pts * tb
            j1 = j
            while j1 < len(times) and ft > times[j1] + tol:
                j1 += 1
            if j1 > j:
                put(j, j1, frame if prev is None else prev)  # before the first decoded frame: this one
                j = j1
            if j >= len(times):
                break
            # a long gap: seek instead of decoding through it; not before this run has served a target (the
            # seek would land on the same keyframe again: keyframes further apart than the threshold,
            # e.g. x264's default 10 s on real footage, made this loop forever)
            if j > j_run and times[j] - ft > seek_threshold_s:
                reseek = True
                prev = frame
                break
            prev = frame
        if reseek:
            continue
        if j < len(times):  # stream ended: targets past the end repeat the last frame
            last = prev if prev is not None else last
            if last is None:
                break
            put(j, len(times), last)
            j = len(times)
    if out is None or j < len(times):
        raise CorruptClip("no decodable video frames")
    return out


def decode_video(c, frame_idx: np.ndarray, fps: float, seek_threshold_s: float = 2.0,
                 stash: AudioStash | None = None) -> np.ndarray:
    """uint8 frames [*frame_idx.shape, H, W, 3] for integer frame indices at `fps`; audio packets read on the
    way go to `stash`."""
    if not c.streams.video:
        raise NoVideoStream("clip has no video stream")
    stream = c.streams.video[0]
    stream.thread_type = "SLICE"
    idx = np.asarray(frame_idx, dtype=np.int64)
    uniq, inverse = np.unique(idx, return_inverse=True)
    frames = _frames_at(c, stream, uniq / float(fps), seek_threshold_s, stash)
    if uniq.size == idx.size and np.array_equal(uniq, idx.reshape(-1)):  # sorted, distinct (pretraining): no copy
        return frames.reshape(*idx.shape, *frames.shape[1:])
    return frames[inverse.reshape(-1)].reshape(*idx.shape, *frames.shape[1:])


def _to_planar_float(frame) -> np.ndarray:
    """[channels, n] float32 for any PyAV audio frame format."""
    if frame.format.name != "fltp":  # (AAC decodes to fltp: no conversion)
        frame = av.AudioResampler(format="fltp", layout=frame.layout, rate=frame.sample_rate).resample(frame)[0]
    return frame.to_ndarray().astype(np.float32, copy=False)


def decode_audio(c, starts: np.ndarray, length: int, rate: int, duration: float | None = None,
                 seek_threshold_s: float = 2.0, stash: AudioStash | None = None) -> np.ndarray:
    """float32 mono windows [*starts.shape, length]; `starts` in samples at `rate` from time 0.

    Samples outside the decoded audio (before its start, after `duration`) are zeros. A `stash` (from a
    video pass that did not seek) is decoded from the file's start with no second demux; otherwise `c` must
    be a container nothing was read from yet (decode_clip opens a fresh one).
    """
    if not c.streams.audio:
        raise NoAudioStream("clip has no audio stream")
    stream = c.streams.audio[0]
    st = np.asarray(starts, dtype=np.int64)
    lo_s, hi_s = float(st.min()) / rate, float(st.max() + length) / rate
    if duration:
        hi_s = min(hi_s, float(duration))
    preroll = 0.5  # AAC needs the previous frame to decode the first one after a seek
    if stash is not None:
        frames = stash.frames(c)
    else:
        if lo_s - preroll > seek_threshold_s:
            c.seek(max(0, int((lo_s - preroll) / float(stream.time_base))), stream=stream, backward=True)
        frames = c.decode(stream)
    # a 30 s AAC track is ~1,300 frames: the loop keeps per-frame Python work to a minimum (float time
    # base, no Fraction arithmetic; mono frames read in place, concatenated once)
    chunks, t0, src_rate, tb = [], None, None, 0.0
    for frame in frames:
        if frame.pts is None:
            continue
        if t0 is None:
            tb, src_rate = float(frame.time_base), int(frame.sample_rate)
            t0 = frame.pts * tb
        elif frame.sample_rate != src_rate:
            raise CorruptClip("audio sample rate changes inside the clip")
        if frame.format.name == "fltp" and len(frame.planes) == 1:  # mono AAC: the samples, no copy
            mono = np.frombuffer(frame.planes[0], dtype=np.float32, count=frame.samples)
        else:
            mono = _to_planar_float(frame).mean(axis=0)
        chunks.append(mono)
        if frame.pts * tb + mono.shape[0] / src_rate >= hi_s:
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
        video = audio = stash = None
        if frame_idx is not None:
            if audio_starts is not None and c.streams.audio and c.streams.video:
                stash = AudioStash(c.streams.audio[0])  # one demux pass for both, unless the video seeks
            video = decode_video(c, frame_idx, fps, seek_threshold_s, stash)
        if audio_starts is not None:
            if stash is not None and not stash.valid:
                # the video pass seeked: audio from a freshly opened container, never a rewind (c.seek(0)
                # after the video pass lost the first 448 samples of some AAC tracks)
                c.close()
                c, stash = _open(data), None
            audio = decode_audio(c, audio_starts, audio_length, audio_rate, duration, seek_threshold_s, stash)
        return Decoded(video, audio)
    except ClipError:
        raise
    except _AV_ERRORS as e:
        raise CorruptClip(f"decode failed: {type(e).__name__}: {e}") from e
    finally:
        c.close()
