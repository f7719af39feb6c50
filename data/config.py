"""Data hyper-parameters as plain dataclasses (defaults = paper scale).

A segment is `frames_per_segment / fps` seconds of video plus the same span of audio. Paper scale:
32 frames at 16 fps = 2 s, 15 segments = a 30 s clip (480 frames).

Fields marked "ours" are choices where the paper and the released code are silent.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal


@dataclass
class VideoConfig:
    RANGES: ClassVar[dict] = {"fps": (0, None, True), "frames_per_segment": (1, None), "crop": (1, None), "train_jitter_scales": (1, None), "test_size": (1, None), "mean": (0, 1), "std": (0, None, True), "store_short_side": (0, None)}  # checked at load (experiments.config.loader)
    fps: float = 16.0
    frames_per_segment: int = 32
    crop: int = 112  # train crop (released TRAIN_CROP_SIZE)
    train_jitter_scales: tuple[int, int] = (128, 160)  # random short side (released)
    test_size: int = 128  # test short side and crop (released TEST_CROP_SIZE)
    mean: tuple[float, float, float] = (0.45, 0.45, 0.45)
    std: tuple[float, float, float] = (0.225, 0.225, 0.225)
    # resize filter for the train jitter and the test resize (released: nearest)
    interpolation: Literal["nearest", "bilinear"] = "nearest"
    # short side of the frames stored in shards; 0 = max(train_jitter_scales[1], test_size) (ours), so
    # the largest jitter scale never upsamples
    store_short_side: int = 0

    @property
    def segment_seconds(self) -> float:
        return self.frames_per_segment / self.fps

    @property
    def stored_short_side(self) -> int:
        return self.store_short_side or max(int(self.train_jitter_scales[1]), int(self.test_size))


@dataclass
class AudioConfig:
    RANGES: ClassVar[dict] = {"sample_rate": (1, None), "mel_bins": (1, None), "mel_frames": (1, None), "freq_mask_rate": (0, 1), "time_mask_rate": (0, 1), "log_offset": (0, None, True)}  # checked at load (experiments.config.loader)
    sample_rate: int = 44100
    mel_bins: int = 80
    mel_frames: int = 128
    freq_mask_rate: float = 0.05  # released FREQUENCY_MASK_RATE
    time_mask_rate: float = 0.05  # released TIME_MASK_RATE
    log_offset: float = 1e-6  # released: log(mel + 1e-6)

    def segment_samples(self, seconds: float) -> int:
        """Audio samples of one segment (paper: 2 s x 44.1 kHz = 88,200)."""
        return int(round(seconds * self.sample_rate))


@dataclass
class DataConfig:
    RANGES: ClassVar[dict] = {"segments": (1, None), "num_workers": (0, None), "shuffle_buffer": (1, None), "prefetch_factor": (1, None), "short_tolerance_s": (0, None), "seek_threshold_s": (0, None), "shuffle_initial": (0, None)}  # checked at load (experiments.config.loader)
    # fields that never change a result (left out of the run's result hash: experiments.config.NON_RESULT_KEYS)
    NO_RESULT: ClassVar[tuple] = ("num_workers", "normalize_video", "decode_cache")
    root: str = "data/cache/synthetic/paper"  # folder holding one sub-folder of shards per dataset
    video: VideoConfig = field(default_factory=VideoConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    segments: int = 15  # pretraining segments per clip
    num_workers: int = 8
    shuffle_buffer: int = 1000
    synthetic: bool = False  # generate the synthetic benchmark into `root` when it is missing
    # synthetic benchmark size preset; auto = tiny when stored frames are <= 64 px, else paper (ours);
    # smoke = the tiny renders with a few clips per split (the test suite)
    synthetic_scale: Literal["auto", "tiny", "smoke", "paper"] = "auto"
    prefetch_factor: int = 2  # DataLoader batches prefetched per worker
    # a clip shorter than needed by at most this much is used (last frame repeated, audio zero-padded);
    # shorter clips are skipped as too_short (ours; released code clamps frame indices)
    short_tolerance_s: float = 0.25
    # decoding seeks instead of reading through when the next needed frame is this far ahead (ours)
    seek_threshold_s: float = 2.0
    shuffle_initial: int = 0  # samples buffered before the first one is yielded; 0 = shuffle_buffer // 2
    # where video crops become normalised float32 (ours): "step" = workers deliver uint8 frames
    # [..., T, H, W, 3] and the training / evaluation step normalises them on its device (4x fewer bytes
    # through the DataLoader and to the GPU; at paper size the float conversion is most of a worker's
    # transform time); "worker" = batches carry float32 [..., 3, T, H, W] as the model takes them.
    # The same values either way (data.transforms.video_input).
    normalize_video: Literal["step", "worker"] = "step"
    # folder of decoded clips (frames + log-mel per clip and plan, data/decode_cache.py; ours): a clip
    # is decoded once per machine instead of once per epoch, run and seed. Same batches, bit for bit.
    # "" = off (the default: at paper size a clip's frames are about 50 MB); the tiny profile turns it on
    decode_cache: str = ""

    def resolved_synthetic_scale(self) -> str:
        if self.synthetic_scale != "auto":
            return self.synthetic_scale
        return "tiny" if self.video.stored_short_side <= 64 else "paper"
