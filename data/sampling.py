"""Where the segments of a clip come from: frame indices at the target fps and matching audio windows.

Pretraining: S contiguous segments (paper: 15 x 2 s = 30 s) from a random start when the clip is
longer. Downstream: S evenly spaced segments; train jitters each start uniformly inside its slot of
the valid start range (S=1: a random clip anywhere, the UCF/ESC-style single-segment sampling); test
takes `temporal_views` deterministic offsets: the S*V starts linspace(0, max_start, S*V), segment i of
view v at position i*V + v (reduces to the released KS rule for V=1 and the released UCF/ESC clip
positions k/(V-1) * (duration - L) for S=1).
Alignment: segment t with first frame f covers [f/fps, (f+T)/fps); its audio window starts at sample
round(f * rate / fps) and has round(T * rate / fps) samples, so audio and frames span the same time.
A clip shorter than needed by at most `tolerance_s` is used with its last frame repeated (indices
clamped, released behaviour) and audio zero-padded; a shorter one raises ClipTooShort.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from data.errors import ClipTooShort


@dataclass
class Plan:
    frames: np.ndarray  # int64 [V, S, T] frame indices at fps (clamped to the clip)
    audio_starts: np.ndarray  # int64 [V, S] first audio sample of each segment at the target rate
    audio_length: int  # samples per segment


def clip_frames(duration: float, fps: float) -> int:
    """Frames at `fps` in a clip of `duration` seconds (a tiny epsilon absorbs float rounding)."""
    return int(math.floor(duration * fps + 1e-6))


def min_clip_frames(needed: int, fps: float, tolerance_s: float) -> int:
    """Fewest frames a clip may have when a plan needs `needed` frames: short by at most `tolerance_s`.
    The one rule behind ClipTooShort here and data.prepare's default minimum for pretraining sets."""
    return max(0, int(needed) - int(math.floor(tolerance_s * fps + 1e-9)))


def min_clip_seconds(needed_seconds: float, fps: float, tolerance_s: float) -> float:
    """Shortest clip duration (seconds) a plan needing `needed_seconds` of frames at `fps` accepts."""
    return min_clip_frames(int(round(needed_seconds * fps)), fps, tolerance_s) / fps


def _check(n_frames: int, needed: int, fps: float, tolerance_s: float) -> int:
    """Largest valid start frame (>= 0), or ClipTooShort."""
    if n_frames < min_clip_frames(needed, fps, tolerance_s):
        raise ClipTooShort(f"clip has {n_frames} frames at {fps} fps, needs {needed}")
    return max(n_frames - needed, 0)


def _plan(starts: np.ndarray, n_frames: int, fps: float, frames_per_segment: int, rate: int) -> Plan:
    starts = np.asarray(starts, dtype=np.int64)
    frames = starts[..., None] + np.arange(frames_per_segment, dtype=np.int64)
    frames = np.clip(frames, 0, max(n_frames - 1, 0))
    audio_starts = np.round(starts * (rate / fps)).astype(np.int64)
    return Plan(frames=frames, audio_starts=audio_starts,
                audio_length=int(round(frames_per_segment * rate / fps)))


def pretrain_plan(duration: float, fps: float, frames_per_segment: int, segments: int, rate: int,
                  rng: np.random.Generator | None, tolerance_s: float = 0.25) -> Plan:
    """S contiguous segments, [1, S, T]; random start (uniform over frames) when the clip is longer."""
    n = clip_frames(duration, fps)
    span = _check(n, segments * frames_per_segment, fps, tolerance_s)
    first = int(rng.integers(0, span + 1)) if rng is not None and span > 0 else 0
    starts = first + frames_per_segment * np.arange(segments)
    return _plan(starts[None], n, fps, frames_per_segment, rate)


def downstream_plan(duration: float, fps: float, frames_per_segment: int, segments: int, rate: int,
                    train: bool, rng: np.random.Generator | None = None, temporal_views: int = 1,
                    tolerance_s: float = 0.25) -> Plan:
    """S evenly spaced segments: train [1, S, T] jittered inside slots; test [V, S, T] fixed offsets."""
    n = clip_frames(duration, fps)
    span = _check(n, frames_per_segment, fps, tolerance_s)
    if train:
        u = rng.random(segments) if rng is not None else np.full(segments, 0.5)
        starts = np.round((np.arange(segments) + u) * span / segments)[None]
    else:
        v = max(1, temporal_views)
        pos = np.linspace(0.0, span, segments * v) if segments * v > 1 else np.array([span / 2.0])
        starts = np.round(pos).reshape(segments, v).T  # [V, S]: segment i of view v = pos[i*V + v]
    return _plan(starts, n, fps, frames_per_segment, rate)
