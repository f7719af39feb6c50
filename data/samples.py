"""One shard sample (mp4 + json bytes) -> model-ready tensors, or a typed ClipError saying why not.

Runs inside DataLoader workers. `check=True` runs only the cheap checks (json, container header,
streams, duration, label) so a resumed loader can skip ahead without decoding.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate

from data.config import DataConfig
from data.decode import decode_clip, probe
from data.decode_cache import cache_at
from data.errors import BadMetadata, NoAudioStream, NoVideoStream
from data.sampling import downstream_plan, pretrain_plan
from data.transforms import log_mel, normalize_video, spec_augment, video_test_frames, video_train_frames


@dataclass
class SampleSpec:
    """What one sample must become. mode: pretrain (S contiguous, augmented), train (S evenly spaced,
    augmented, label), eval (V = temporal_views x spatial_crops views, no randomness, label)."""

    mode: str = "pretrain"
    segments: int = 15
    temporal_views: int = 1
    spatial_crops: int = 1
    modalities: tuple[str, ...] = ("visual", "audio")
    multilabel: bool | None = None  # None: no label (pretraining)
    num_classes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def views(self) -> int:
        return self.temporal_views * self.spatial_crops if self.mode == "eval" else 1


def parse_meta(sample: dict[str, Any]) -> dict[str, Any]:
    raw = sample.get("json")
    if raw is None:
        raise BadMetadata("sample has no json")
    try:
        meta = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadMetadata(f"unreadable json: {e}") from e
    if not isinstance(meta, dict) or "duration" not in meta or "fps" not in meta:
        raise BadMetadata("json lacks duration/fps")
    return meta


def _label(meta: dict[str, Any], spec: SampleSpec) -> torch.Tensor | None:
    if spec.multilabel is None:
        return None
    if spec.multilabel:
        labels = meta.get("labels")
        if labels is None:
            raise BadMetadata("multi-label sample without 'labels'")
        if not isinstance(labels, list) or any(isinstance(x, bool) or not isinstance(x, int) for x in labels):
            raise BadMetadata(f"'labels' is not a list of class indices: {labels!r}")
        y = torch.zeros(spec.num_classes, dtype=torch.float32)
        if labels:
            idx = torch.as_tensor(labels, dtype=torch.long)
            if int(idx.min()) < 0 or int(idx.max()) >= spec.num_classes:
                raise BadMetadata(f"label index out of range: {labels}")
            y[idx] = 1.0
        return y
    label = meta.get("label")
    # an integer (json may write 3.0) in [0, num_classes); out of range it would crash the loss later
    integral = isinstance(label, int) or (isinstance(label, float) and label.is_integer())
    if isinstance(label, bool) or not integral or not 0 <= int(label) < spec.num_classes:
        raise BadMetadata(f"bad or missing 'label' for {spec.num_classes} classes: {label!r}")
    return torch.tensor(int(label), dtype=torch.long)


def _plan(meta: dict[str, Any], cfg: DataConfig, spec: SampleSpec, rng: np.random.Generator | None):
    v, a = cfg.video, cfg.audio
    kw = dict(duration=float(meta["duration"]), fps=v.fps, frames_per_segment=v.frames_per_segment,
              segments=spec.segments, rate=a.sample_rate, tolerance_s=cfg.short_tolerance_s)
    if spec.mode == "pretrain":
        return pretrain_plan(rng=rng, **kw)
    return downstream_plan(train=spec.mode == "train", rng=rng, temporal_views=spec.temporal_views, **kw)


def frames_shape(cfg: DataConfig, spec: SampleSpec) -> tuple[int, ...] | None:
    """Shape of one clip's video when process_sample can write it into a given tensor (`video_out`):
    uint8 training frames [S,T,crop,crop,3] (nearest resize, normalize_video "step"); None otherwise."""
    v = cfg.video
    if spec.mode == "eval" or "visual" not in spec.modalities or v.interpolation != "nearest" \
            or cfg.normalize_video != "step":
        return None
    return (spec.segments, v.frames_per_segment, v.crop, v.crop, 3)


def _decoded(data: bytes, meta: dict[str, Any], plan, cfg: DataConfig, want_v: bool,
             want_a: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The plan's uint8 frames [V,S,T,H,W,3] and log-mel [V_t,S,1,F,Tm] of one clip: from the decode
    cache when `data.decode_cache` is set and holds them, else decoded (and stored there)."""
    cache = cache_at(cfg.decode_cache)
    key = None
    if cache is not None:
        a = cfg.audio  # what decode_clip and log_mel read
        key = cache.key(data, float(meta["duration"]), float(cfg.video.fps), float(cfg.seek_threshold_s), want_v, want_a,
                        a.sample_rate, a.mel_bins, a.mel_frames, a.log_offset, plan.audio_length,
                        arrays=(plan.frames, plan.audio_starts))
        hit = cache.load(key)
        if hit is not None and (not want_v or "video" in hit) and (not want_a or "mel" in hit):
            return hit.get("video"), hit.get("mel")
    dec = decode_clip(data, plan.frames if want_v else None, cfg.video.fps,
                      plan.audio_starts if want_a else None, plan.audio_length, cfg.audio.sample_rate,
                      duration=float(meta["duration"]), seek_threshold_s=cfg.seek_threshold_s)
    mel = log_mel(torch.from_numpy(dec.audio), cfg.audio).numpy() if want_a else None
    if cache is not None:
        cache.store(key, {k: v for k, v in (("video", dec.video), ("mel", mel)) if v is not None})
    return dec.video, mel


def process_sample(sample: dict[str, Any], cfg: DataConfig, spec: SampleSpec,
                   seed: np.random.SeedSequence | None = None, check: bool = False, *,
                   video_out: torch.Tensor | None = None) -> dict[str, Any] | None:
    """Tensors for one clip: video float [S,3,T,H,W] or, with data.normalize_video "step", uint8 frames
    [S,T,H,W,3]; audio [S,1,F,Tm] (eval: [V,S,...]); label(s), key.
    `video_out` (shape frames_shape(cfg, spec)): the frames are written there (a batch's slot) and it is
    the returned video.

    Raises data.errors.ClipError subclasses; with check=True returns None after the cheap checks.
    """
    meta = parse_meta(sample)
    label = _label(meta, spec)
    want_v, want_a = "visual" in spec.modalities, "audio" in spec.modalities
    if want_v and meta.get("has_video") is False:
        raise NoVideoStream("json says has_video=false")
    if want_a and meta.get("has_audio") is False:
        raise NoAudioStream("json says has_audio=false")
    rng = np.random.default_rng(seed) if spec.mode != "eval" and seed is not None else None
    plan = _plan(meta, cfg, spec, rng)
    data = sample.get("mp4") or b""
    if check:
        info = probe(data)
        if want_v and not info.has_video:
            raise NoVideoStream("clip has no video stream")
        if want_a and not info.has_audio:
            raise NoAudioStream("clip has no audio stream")
        return None
    video, mel = _decoded(data, meta, plan, cfg, want_v, want_a)
    gen = None
    if rng is not None:
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
    out: dict[str, Any] = {"key": str(meta.get("id", sample.get("__key__", "")))}
    if want_v:
        frames = torch.from_numpy(video)  # [V,S,T,H,W,3]
        if spec.mode == "eval":
            x = video_test_frames(frames, cfg.video, spec.spatial_crops)  # [C,V_t,S,T,h,w,3]
            x = x.transpose(0, 1).reshape(-1, *x.shape[2:])  # view = t_view * crops + crop
        else:
            x = video_train_frames(frames[0], cfg.video, gen, out=video_out)  # [S,T,h,w,3]
        # uint8 frames for the step to normalise (data.normalize_video), or float as the model takes it
        out["video"] = x if cfg.normalize_video == "step" and x.dtype == torch.uint8 else normalize_video(x, cfg.video)
    if want_a:
        spec_ = torch.from_numpy(mel)  # [V_t,S,1,F,Tm]
        if spec.mode == "eval":
            out["audio"] = spec_.repeat_interleave(spec.spatial_crops, dim=0)
        else:
            out["audio"] = spec_augment(spec_[0], cfg.audio, gen)
    if label is not None:
        out["labels" if spec.multilabel else "label"] = label
    return out


def collate(items: list[dict[str, Any]], video: torch.Tensor | None = None) -> dict[str, Any]:
    """Stack a list of processed samples into a batch dict (keys as a list of str); `video`: the batch's
    frames, already written in place (data.stream.BatchFrames), taken as they are.

    torch's default_collate stacks straight into shared memory inside a DataLoader worker, so the batch
    is not copied again on its way to the main process."""
    batch: dict[str, Any] = {"key": [it["key"] for it in items]}
    for k in items[0]:
        if k == "video" and video is not None:
            batch[k] = video
        elif k != "key":
            batch[k] = default_collate([it[k] for it in items])
    return batch
