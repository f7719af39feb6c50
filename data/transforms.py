"""Audio and video transforms, as in the released code (shared/reference/released_code.md section 4).

Audio: log-mel per segment with the released window rule, n_fft = 2*(floor(N/mel_frames)+1),
hop = n_fft//2, torchaudio MelSpectrogram defaults otherwise (Hann, power 2, centred reflect-padded
STFT, HTK mel scale, no filter norm), log(mel + 1e-6), zero pad / truncate to mel_frames; training
adds one frequency and one time mask (fill 0.0) drawn once per clip and shared by all its segments
(released Kinetics-Sounds behaviour).
Video: train = random short-side scale in train_jitter_scales, random crop, horizontal flip p=0.5,
the same draw for every frame of every segment; test = short side to test_size and `spatial_crops`
crops along the long side; then uint8 -> [0,1] float, normalised with mean/std, [S,3,T,H,W].
Why index gathers: with nearest interpolation (released), resize + crop + flip of a whole clip is
one integer gather on the uint8 frames (`*_frames` functions), so only the output crop is ever
converted to float.
Why the float conversion is a separate step (`normalize_video`): at paper size converting a clip's
crops to float32 costs more than gathering them (25 ms vs 10 ms per clip on one core) and the float
batch is 4x the bytes to copy to the GPU. With `data.normalize_video: step` (default, ours) workers
deliver uint8 frames and the training / evaluation step normalises after the copy to the device
(`video_input`); the values are the same float32 operations in the same order either way.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
import torchaudio

from data.config import AudioConfig, VideoConfig


def mel_params(n_samples: int, mel_frames: int) -> tuple[int, int]:
    """(n_fft, hop) of the released rule; yields 1 + n_samples // hop == mel_frames frames."""
    n_fft = 2 * (n_samples // mel_frames + 1)
    return n_fft, n_fft // 2


@lru_cache(maxsize=16)
def _mel(sample_rate: int, n_samples: int, mel_bins: int, mel_frames: int) -> torchaudio.transforms.MelSpectrogram:
    n_fft, hop = mel_params(n_samples, mel_frames)
    return torchaudio.transforms.MelSpectrogram(sample_rate=sample_rate, n_fft=n_fft, win_length=n_fft,
                                                hop_length=hop, n_mels=mel_bins, power=2.0, center=True)


def log_mel(wave: torch.Tensor, cfg: AudioConfig) -> torch.Tensor:
    """[..., N] waveform segments -> [..., 1, mel_bins, mel_frames] log-mel (one batched STFT)."""
    lead, n = wave.shape[:-1], wave.shape[-1]
    with torch.no_grad():
        mel = _mel(cfg.sample_rate, n, cfg.mel_bins, cfg.mel_frames)(wave.reshape(-1, n).float())
    spec = torch.log(mel + cfg.log_offset)
    t = spec.shape[-1]
    if t < cfg.mel_frames:
        spec = F.pad(spec, (0, cfg.mel_frames - t), value=0.0)
    spec = spec[..., :cfg.mel_frames]
    return spec.reshape(*lead, 1, cfg.mel_bins, cfg.mel_frames)


def _mask_span(size: int, mask_param: int, g: torch.Generator | None) -> tuple[int, int]:
    """torchaudio.functional.mask_along_axis's draw: width U[0, mask_param), start U[0, size - width)."""
    value = torch.rand(1, generator=g).item() * mask_param
    start = int(torch.rand(1, generator=g).item() * (size - value))
    return start, start + int(value)


def spec_augment(spec: torch.Tensor, cfg: AudioConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """One frequency mask and one time mask, shared by every leading index (all segments of a clip)."""
    spec = spec.clone()
    f, t = spec.shape[-2], spec.shape[-1]
    f0, f1 = _mask_span(f, int(f * cfg.freq_mask_rate), generator)
    t0, t1 = _mask_span(t, int(t * cfg.time_mask_rate), generator)
    spec[..., f0:f1, :] = 0.0
    spec[..., :, t0:t1] = 0.0
    return spec


def _scaled_size(h: int, w: int, short: int) -> tuple[int, int]:
    """pyslowfast's short-side scale: the long side is floored."""
    if h <= w:
        return short, int(math.floor(w / h * short))
    return int(math.floor(h / w * short)), short


def _nearest_index(out_len: int, in_len: int, start: int, length: int) -> torch.Tensor:
    """Source indices of output pixels start..start+length of a nearest resize in_len -> out_len
    (PyTorch's rule: floor(dst * in/out))."""
    dst = torch.arange(start, start + length, dtype=torch.float64)
    return torch.clamp((dst * (in_len / out_len)).floor().long(), max=in_len - 1)


def _resize_crop(frames: torch.Tensor, size: tuple[int, int], y0: int, x0: int, ch: int, cw: int, *,
                 flip: bool, mode: str, out: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 [N,H,W,3] -> [N,ch,cw,3]: resize to `size`, crop, optional h-flip; uint8 (nearest) or
    float in [0,1] (bilinear). `out` (nearest only): a contiguous uint8 [N,ch,cw,3] to write into, e.g.
    the clip's slot of a preallocated batch (data.stream.BatchFrames)."""
    n, h, w, _ = frames.shape
    if mode == "nearest":
        rows = _nearest_index(size[0], h, y0, ch)
        cols = _nearest_index(size[1], w, x0, cw)
        if flip:
            cols = cols.flip(0)
        # one gather of the kept bytes (3 per pixel) out of each flat frame, flip included, in numpy: one
        # pass over the output, no intermediate (rows then pixels took 1.6x as long at paper size), and
        # 2-5x faster than torch.index_select on one core
        px = (cols[:, None] * 3 + torch.arange(3)).reshape(-1)
        index = (rows[:, None] * (w * 3) + px[None, :]).reshape(-1).numpy()
        dst = None
        if out is not None:
            if out.shape != (n, ch, cw, 3) or out.dtype != torch.uint8 or not out.is_contiguous():
                raise ValueError(f"out {tuple(out.shape)} {out.dtype}: want contiguous uint8 {(n, ch, cw, 3)}")
            dst = out.numpy().reshape(n, ch * cw * 3)
        got = frames.numpy().reshape(n, h * w * 3).take(index, axis=1, out=dst)
        return out if out is not None else torch.from_numpy(got.reshape(n, ch, cw, 3))
    if out is not None:
        raise ValueError("out= needs nearest interpolation (uint8 frames)")
    # bilinear (not the released choice): float [0,1] frames, normalised in the worker
    x = frames.permute(0, 3, 1, 2).float().div_(255.0)
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)[:, :, y0:y0 + ch, x0:x0 + cw]
    x = x.permute(0, 2, 3, 1)
    return x.flip(2) if flip else x


def normalize_video(frames: torch.Tensor, cfg: VideoConfig) -> torch.Tensor:
    """[..., T, H, W, 3] uint8 (or float in [0,1]) -> float32 [..., 3, T, H, W]: /255, minus mean, over std
    (on any device)."""
    x = frames.movedim(-1, -4).contiguous()
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x
    mean = torch.tensor(cfg.mean, dtype=x.dtype, device=x.device).view(3, 1, 1, 1)
    std = torch.tensor(cfg.std, dtype=x.dtype, device=x.device).view(3, 1, 1, 1)
    return x.sub_(mean).div_(std)


def video_input(video: torch.Tensor, cfg: VideoConfig, device: torch.device | str = "cpu") -> torch.Tensor:
    """A batch's video on `device` as the model takes it: uint8 frames (data.normalize_video: step) are
    copied, then normalised there; float video (normalize_video: worker) is only copied."""
    video = video.to(device, non_blocking=True)
    return normalize_video(video, cfg) if video.dtype == torch.uint8 else video


def video_train_frames(frames: torch.Tensor, cfg: VideoConfig, generator: torch.Generator | None = None, *,
                       out: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 [S,T,H,W,3] -> [S,T,crop,crop,3] (uint8; float [0,1] when bilinear); one scale/crop/flip
    draw for the whole clip. `out`: a contiguous uint8 [S,T,crop,crop,3] to write the crops into (nearest)."""
    s, t, h, w, _ = frames.shape
    lo, hi = cfg.train_jitter_scales
    short = int(round(lo + (hi - lo) * torch.rand(1, generator=generator).item()))
    short = max(short, cfg.crop)
    size = _scaled_size(h, w, short)
    y0 = int(torch.randint(0, size[0] - cfg.crop + 1, (1,), generator=generator))
    x0 = int(torch.randint(0, size[1] - cfg.crop + 1, (1,), generator=generator))
    flip = bool(torch.rand(1, generator=generator).item() < 0.5)
    dst = None if out is None else out.view(s * t, cfg.crop, cfg.crop, 3)
    x = _resize_crop(frames.reshape(s * t, h, w, 3), size, y0, x0, cfg.crop, cfg.crop, flip=flip,
                     mode=cfg.interpolation, out=dst)
    return x.reshape(s, t, cfg.crop, cfg.crop, 3)


def video_train(frames: torch.Tensor, cfg: VideoConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 [S,T,H,W,3] -> float [S,3,T,crop,crop], normalised (video_train_frames + normalize_video)."""
    return normalize_video(video_train_frames(frames, cfg, generator), cfg)


def crop_offsets(length: int, size: int, crops: int) -> list[int]:
    """Offsets of `crops` windows along one axis: centre for one, else evenly spaced from start to end
    (3 -> left/centre/right as in pyslowfast's uniform_crop)."""
    if crops == 1:
        return [int(math.ceil((length - size) / 2))]
    return [int(round(i * (length - size) / (crops - 1))) for i in range(crops)]


def video_test_frames(frames: torch.Tensor, cfg: VideoConfig, spatial_crops: int) -> torch.Tensor:
    """uint8 [..., T, H, W, 3] -> [spatial_crops, ..., T, test_size, test_size, 3] (uint8; float [0,1] when
    bilinear).

    Crops run along the long side (identical for square frames).
    """
    lead = tuple(frames.shape[:-3])
    h, w = frames.shape[-3:-1]
    size = _scaled_size(h, w, cfg.test_size)
    flat = frames.reshape(-1, h, w, 3)
    views = []
    for off in crop_offsets(max(size), cfg.test_size, spatial_crops):
        y0, x0 = (off, (size[1] - cfg.test_size) // 2) if size[0] > size[1] else ((size[0] - cfg.test_size) // 2, off)
        x = _resize_crop(flat, size, y0, x0, cfg.test_size, cfg.test_size, flip=False,
                         mode=cfg.interpolation)
        views.append(x.reshape(*lead, cfg.test_size, cfg.test_size, 3))
    return torch.stack(views)


def video_test(frames: torch.Tensor, cfg: VideoConfig, spatial_crops: int) -> torch.Tensor:
    """uint8 [..., T, H, W, 3] -> float [spatial_crops, ..., 3, T, test_size, test_size], normalised."""
    return normalize_video(video_test_frames(frames, cfg, spatial_crops), cfg)
