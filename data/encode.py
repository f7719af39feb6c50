"""Encode decoded frames and audio into the shard's mp4 (H.264 + AAC) in memory, with PyAV.

Why in memory: a shard sample is the mp4's bytes; writing temp files per clip would cost more than
the encode itself at tiny scale. Why a streaming class: preparers transcode long videos frame by
frame without holding all frames.

Quirks handled (see shared/reference/environment.md): the AAC encoder wants fixed-size frames (PyAV
re-frames for us) and pads the end, which the decoder crops using the stored duration; H.264 in
yuv420p needs even sizes, so odd sizes fall back to yuv444p.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np


@dataclass
class EncodeOptions:
    """Why these defaults: crf 23 / preset veryfast is x264's default quality at ~2x the speed; one
    keyframe per second (gop = fps) keeps seeking cheap; threads=1 makes output byte-deterministic and
    lets the preparer parallelise over clips instead. aac_coder 'twoloop' is FFmpeg's default (best);
    the synthetic generator uses 'fast' (~2x faster, plenty for tones)."""

    crf: int = 23
    preset: str = "veryfast"
    gop_seconds: float = 1.0
    threads: int = 1
    aac_coder: str = "twoloop"
    audio_bitrate: int = 0  # 0 = FFmpeg default
    x264_params: str = ""  # extra libx264 options, e.g. "no-asm=1"


_RGB2YUV = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]],
                    dtype=np.float32) / 255.0  # BT.601 limited range, what swscale uses by default


def rgb_to_yuv_planes(frames: np.ndarray, subsample: bool) -> list[list[np.ndarray]]:
    """uint8 RGB [N,H,W,3] -> per frame [Y, U, V] uint8 planes (4:2:0 when `subsample`), vectorised.
    Why not PyAV's reformat: it builds a scaler per frame (~0.15 ms each, most of a tiny clip's cost)."""
    yuv = frames.astype(np.float32) @ _RGB2YUV.T + np.array([16.0, 128.0, 128.0], np.float32)
    y = np.clip(yuv[..., 0] + 0.5, 0, 255).astype(np.uint8)
    uv = yuv[..., 1:]
    if subsample:
        n, h, w, _ = uv.shape
        uv = uv.reshape(n, h // 2, 2, w // 2, 2, 2).mean(axis=(2, 4))
    uv = np.clip(uv + 0.5, 0, 255).astype(np.uint8)
    return [[y[i], uv[i, ..., 0], uv[i, ..., 1]] for i in range(len(frames))]


def _frame_from_planes(planes: list[np.ndarray], width: int, height: int, fmt: str) -> av.VideoFrame:
    """A frame whose row padding is zero. Why: x264 reads past row ends, and uninitialised padding
    (what from_ndarray/reformat leave) is one source of run-to-run differences in its output."""
    out = av.VideoFrame(width, height, fmt)
    for src, dp in zip(planes, out.planes):
        d = np.frombuffer(dp, np.uint8).reshape(-1, dp.line_size)
        d[:] = 0
        d[:src.shape[0], :src.shape[1]] = src
    return out


class Mp4Encoder:
    """Feed uint8 RGB frames [n,H,W,3] and mono float32 audio [n]; `finish()` returns the mp4 bytes."""

    def __init__(self, fps: float | None, size: tuple[int, int] | None, audio_rate: int | None,
                 options: EncodeOptions | None = None):
        opts = options or EncodeOptions()
        self._buf = io.BytesIO()
        self._c = av.open(self._buf, "w", format="mp4")
        self._v = self._a = None
        self._n_frames = 0
        self._n_samples = 0
        if fps is not None and size is not None:
            w, h = int(size[0]), int(size[1])
            rate = Fraction(fps).limit_denominator(1001)
            self._v = self._c.add_stream("libx264", rate=rate)
            self._v.width, self._v.height = w, h
            self._v.pix_fmt = "yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p"
            self._v.time_base = 1 / rate
            self._v.codec_context.gop_size = max(1, int(round(float(fps) * opts.gop_seconds)))
            self._v.options = {"crf": str(opts.crf), "preset": opts.preset, "threads": str(opts.threads)}
            if opts.x264_params:
                self._v.options = {**self._v.options, "x264-params": opts.x264_params}
            self._v.thread_count = opts.threads
        if audio_rate is not None:
            self._a = self._c.add_stream("aac", rate=int(audio_rate))
            self._a.layout = "mono"
            self._a.options = {"aac_coder": opts.aac_coder}
            if opts.audio_bitrate:
                self._a.bit_rate = opts.audio_bitrate
        if self._v is None and self._a is None:
            self._c.close()
            raise ValueError("an mp4 needs a video or an audio stream")

    def add_frames(self, frames: np.ndarray) -> None:
        if self._v is None:
            raise ValueError("encoder was opened without video")
        frames = np.ascontiguousarray(frames, dtype=np.uint8)
        if frames.ndim == 3:
            frames = frames[None]
        fmt = self._v.pix_fmt
        h, w = frames.shape[1:3]
        for planes in rgb_to_yuv_planes(frames, fmt == "yuv420p"):
            fr = _frame_from_planes(planes, w, h, fmt)
            fr.pts = self._n_frames
            self._n_frames += 1
            self._c.mux(self._v.encode(fr))

    def add_audio(self, samples: np.ndarray) -> None:
        if self._a is None:
            raise ValueError("encoder was opened without audio")
        x = np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1)
        if x.shape[1] == 0:
            return
        fr = av.AudioFrame.from_ndarray(x, format="fltp", layout="mono")
        fr.sample_rate = self._a.rate
        fr.pts = self._n_samples
        self._n_samples += x.shape[1]
        self._c.mux(self._a.encode(fr))

    def finish(self) -> bytes:
        if self._v is not None:
            self._c.mux(self._v.encode(None))
        if self._a is not None:
            self._c.mux(self._a.encode(None))
        self._c.close()
        return self._buf.getvalue()

    @property
    def frames_written(self) -> int:
        return self._n_frames

    @property
    def samples_written(self) -> int:
        return self._n_samples


def encode_clip(frames: np.ndarray | None, audio: np.ndarray | None, fps: float | None,
                audio_rate: int | None, options: EncodeOptions | None = None) -> bytes:
    """One-shot encode: frames uint8 [T,H,W,3] (or None), audio float32 mono [n] (or None)."""
    size = None if frames is None else (frames.shape[2], frames.shape[1])
    enc = Mp4Encoder(fps if frames is not None else None, size, audio_rate if audio is not None else None, options)
    if frames is not None:
        enc.add_frames(frames)
    if audio is not None:
        enc.add_audio(audio)
    return enc.finish()


def even(x: float) -> int:
    """Nearest even integer >= 2 (H.264 4:2:0 needs even sizes)."""
    return max(2, int(round(x / 2.0)) * 2)


def short_side_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(w, h) with the short side = `short_side` and the aspect ratio kept, both even."""
    if width <= height:
        return even(short_side), even(height * short_side / width)
    return even(width * short_side / height), even(short_side)
