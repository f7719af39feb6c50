"""Data hyper-parameters as plain dataclasses (defaults = paper scale).

A segment is `frames_per_segment / fps` seconds of video plus the same span of audio. Paper scale:
32 frames at 16 fps = 2 s, 15 segments = a 30 s clip (480 frames).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class VideoConfig:
    fps: float = 16.0
    frames_per_segment: int = 32
    crop: int = 112  # train crop (released TRAIN_CROP_SIZE)
    train_jitter_scales: tuple[int, int] = (128, 160)  # random short side (released)
    test_size: int = 128  # test short side and crop (released TEST_CROP_SIZE)
    mean: tuple[float, float, float] = (0.45, 0.45, 0.45)
    std: tuple[float, float, float] = (0.225, 0.225, 0.225)

    @property
    def segment_seconds(self) -> float:
        return self.frames_per_segment / self.fps


@dataclass
class AudioConfig:
    sample_rate: int = 44100
    mel_bins: int = 80
    mel_frames: int = 128
    freq_mask_rate: float = 0.05  # released FREQUENCY_MASK_RATE
    time_mask_rate: float = 0.05  # released TIME_MASK_RATE


@dataclass
class DataConfig:
    root: str = "data/cache/synthetic/paper"  # folder holding one sub-folder of shards per dataset
    video: VideoConfig = field(default_factory=VideoConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    segments: int = 15  # pretraining segments per clip
    num_workers: int = 8
    shuffle_buffer: int = 1000
    synthetic: bool = False  # generate the synthetic benchmark into `root` when it is missing
