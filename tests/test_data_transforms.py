"""Log-mel as released, SpecAugment, video train/test transforms, segment sampling rules."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchaudio

from data.config import AudioConfig, VideoConfig
from data.errors import ClipTooShort
from data.sampling import downstream_plan, pretrain_plan
from data.transforms import (_resize_crop, crop_offsets, log_mel, mel_params, spec_augment, video_test, video_train,
                             video_train_frames)


@pytest.mark.parametrize("n,frames,want", [(88200, 128, (1380, 690)), (94080, 128, (1472, 736)), (8000, 32, (502, 251))])
def test_mel_params_released_rule(n, frames, want):
    assert mel_params(n, frames) == want
    assert 1 + n // want[1] == frames


def test_log_mel_equals_direct_torchaudio():
    cfg = AudioConfig(sample_rate=8000, mel_bins=40, mel_frames=32)
    wave = torch.randn(3, 2, 8000)
    ref = torchaudio.transforms.MelSpectrogram(sample_rate=8000, n_fft=502, hop_length=251, n_mels=40)(wave[0, 1])
    ref = torch.log(ref + 1e-6)
    out = log_mel(wave, cfg)
    assert out.shape == (3, 2, 1, 40, 32)
    torch.testing.assert_close(out[0, 1, 0], ref)


def test_log_mel_paper_shape_and_zero_pad():
    cfg = AudioConfig()
    assert log_mel(torch.randn(88200), cfg).shape == (1, 80, 128)
    short = AudioConfig(sample_rate=8000, mel_bins=40, mel_frames=40)  # hop rule gives 40, force pad via mel_frames
    out = log_mel(torch.randn(1, 8000), short)
    assert out.shape == (1, 1, 40, 40)


def test_spec_augment_one_mask_shared_by_segments():
    cfg = AudioConfig(mel_bins=80, mel_frames=128)
    spec = torch.randn(15, 1, 80, 128) + 10
    for seed in range(20):
        out = spec_augment(spec, cfg, torch.Generator().manual_seed(seed))
        zero = out == 0
        assert torch.equal(zero, zero[:1].expand_as(zero))  # same mask in every segment
        rows = zero[0, 0].all(dim=1).sum().item()
        cols = zero[0, 0].all(dim=0).sum().item()
        assert rows < 4 and cols < 6  # widths U[0, int(80*.05)) and U[0, int(128*.05))


def test_video_train_same_draw_for_all_segments():
    cfg = VideoConfig(crop=32, train_jitter_scales=(32, 40), test_size=32)
    base = torch.randint(0, 255, (1, 1, 40, 52, 3), dtype=torch.uint8)
    frames = base.expand(3, 8, 40, 52, 3).contiguous()
    out = video_train(frames, cfg, torch.Generator().manual_seed(1))
    assert out.shape == (3, 3, 8, 32, 32) and out.dtype == torch.float32
    assert torch.equal(out[0], out[2]) and torch.equal(out[:, :, 0], out[:, :, 7])


def test_nearest_gather_equals_interpolate_then_crop():
    cfg = VideoConfig(crop=24, train_jitter_scales=(37, 37), test_size=32, mean=(0, 0, 0), std=(1, 1, 1))
    frames = torch.randint(0, 255, (1, 2, 30, 44, 3), dtype=torch.uint8)
    g = torch.Generator().manual_seed(3)
    out = video_train(frames, cfg, g)
    x = frames[0].permute(0, 3, 1, 2).float() / 255
    full = F.interpolate(x, size=(37, int(44 / 30 * 37)), mode="nearest")
    hits = [torch.allclose(out[0].permute(1, 0, 2, 3), c) for y in range(full.shape[2] - 23) for xo in range(full.shape[3] - 23)
            for c in (full[:, :, y:y + 24, xo:xo + 24], full[:, :, y:y + 24, xo:xo + 24].flip(-1))]
    assert any(hits)


@pytest.mark.parametrize("flip", [False, True])
def test_nearest_crop_is_the_resized_crop_and_writes_into_out(flip):
    """The one-gather crop (flip folded into the index) equals resize -> crop -> flip done step by step,
    and with out= lands in the given tensor (a batch's slot) with the same values."""
    frames = torch.randint(0, 255, (5, 30, 44, 3), dtype=torch.uint8)
    size, y0, x0, c = (37, 54), 4, 9, 24
    rows = (torch.arange(size[0]) * 30 / size[0]).floor().long()
    cols = (torch.arange(size[1]) * 44 / size[1]).floor().long()
    want = frames[:, rows][:, :, cols][:, y0:y0 + c, x0:x0 + c]
    want = want.flip(2) if flip else want
    got = _resize_crop(frames, size, y0, x0, c, c, flip=flip, mode="nearest")
    assert torch.equal(got, want)
    out = torch.zeros(5, c, c, 3, dtype=torch.uint8)
    assert _resize_crop(frames, size, y0, x0, c, c, flip=flip, mode="nearest", out=out) is out
    assert torch.equal(out, want)
    with pytest.raises(ValueError, match="want contiguous uint8"):
        _resize_crop(frames, size, y0, x0, c, c, flip=flip, mode="nearest", out=torch.zeros(5, c, c, 3))


def test_video_train_frames_into_out_equals_a_fresh_result():
    cfg = VideoConfig(crop=24, train_jitter_scales=(26, 40), test_size=32)
    frames = torch.randint(0, 255, (2, 3, 30, 44, 3), dtype=torch.uint8)
    for seed in range(6):  # scales, offsets and both flips
        fresh = video_train_frames(frames, cfg, torch.Generator().manual_seed(seed))
        out = torch.empty(2, 3, 24, 24, 3, dtype=torch.uint8)
        video_train_frames(frames, cfg, torch.Generator().manual_seed(seed), out=out)
        assert torch.equal(out, fresh)


def test_video_test_crops_along_long_side():
    cfg = VideoConfig(test_size=32, mean=(0, 0, 0), std=(1, 1, 1))
    ramp = torch.arange(64, dtype=torch.uint8).view(1, 1, 64, 1).expand(2, 32, 64, 3)  # [T,H,W,3], wide
    out = video_test(ramp[None], cfg, 3)  # [C,S,3,T,32,32]
    assert out.shape == (3, 1, 3, 2, 32, 32)
    left, centre, right = (round(out[c, 0, 0, 0, 0, 0].item() * 255) for c in range(3))
    assert left == 0 and centre == 16 and right == 32
    assert crop_offsets(32, 32, 3) == [0, 0, 0]  # square frames: identical crops


def test_pretrain_plan_contiguous_and_aligned():
    p = pretrain_plan(8.0, 8, 8, 8, 8000, rng=None)
    assert p.frames.shape == (1, 8, 8) and np.array_equal(p.frames.reshape(-1), np.arange(64))
    assert np.array_equal(p.audio_starts[0], np.arange(8) * 8000) and p.audio_length == 8000
    rng = np.random.default_rng(0)
    starts = {int(pretrain_plan(12.0, 8, 8, 8, 8000, rng).frames[0, 0, 0]) for _ in range(200)}
    assert starts == set(range(33))  # uniform over every valid start
    paper = pretrain_plan(30.0, 16, 32, 15, 44100, rng=None)
    assert paper.audio_length == 88200 and paper.audio_starts[0, 1] == 88200


def test_downstream_plan_rules():
    test = downstream_plan(10.0, 8, 8, 4, 8000, train=False, temporal_views=1)  # released KS: linspace(0, span, S)
    assert test.frames[:, :, 0].tolist() == [[0, 24, 48, 72]]
    ucf = downstream_plan(10.0, 8, 8, 1, 8000, train=False, temporal_views=4)  # released UCF: k/(V-1)*span
    assert ucf.frames[:, 0, 0].tolist() == [0, 24, 48, 72]
    rng = np.random.default_rng(0)
    for _ in range(50):
        tr = downstream_plan(10.0, 8, 8, 4, 8000, train=True, rng=rng).frames[0, :, 0]
        assert all(i * 18 <= s <= (i + 1) * 18 for i, s in enumerate(tr))
    assert (test.audio_starts == test.frames[:, :, 0] * 1000).all()


def test_too_short_and_tolerance():
    with pytest.raises(ClipTooShort):
        pretrain_plan(7.0, 8, 8, 8, 8000, rng=None, tolerance_s=0.25)
    p = pretrain_plan(7.8, 8, 8, 8, 8000, rng=None, tolerance_s=0.25)  # 62 of 64 frames: last repeated
    assert p.frames.max() == 61
    with pytest.raises(ClipTooShort):
        downstream_plan(0.5, 8, 8, 4, 8000, train=False)
