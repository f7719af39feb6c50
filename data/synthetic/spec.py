"""Knobs of the synthetic benchmark and the two size presets.

Rendering sizes (frame size, fps, audio rate, clip length) come from the DataConfig the benchmark is
generated for; this spec holds how many clips, how events are laid out, and how strong the nuisances
are. `nuisance` scales every nuisance amplitude at once (0 = clean renders, >1 harder).

Difficulty (ours, measured with a z-scored linear probe on the mean-pooled CNN features of a randomly
initialised tiny model): at the version-2 settings (nuisance 1, hum up to 0.25, 1-2 clutter shapes,
-12..0 dB, 120 training clips) that probe was at or near chance on every task (ucf_like 14 %, esc_like
13 %, ks_like 11-30 % across inits; chance 12.5 %) and one on raw mean spectra reached 33 % on ks_like,
so no ablation could show anything. With the defaults here (nuisance 0.5 of the weaker amplitudes
below, 200 training clips) the same probe reaches 50 % on esc_like and 47 % on ks_like, while
ucf_like (shape + motion) stays hard (11 %). `--nuisance 1` gives the harder variant.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from data.config import AudioConfig, DataConfig, VideoConfig

# bump when the generated files change (rendering, ids, json, layout): ensure_synthetic regenerates a root
# made by another version. 2: pretraining clips are split "train" (ids pretrain_train_NNNNNN, json split
# "train", was ""), paper-scale shards >= 128 per split. 3: easier default nuisances (nuisance 0.5,
# weaker hum, 0-1 clutter shapes, -6..0 dB events, fainter textures) and 200/32/64 clips per task split.
# 4: `pretrain_clean/` (tiny), nuisance-free twins of the pretraining clips; other files as in 3.
VERSION = 4


@dataclass
class SyntheticSpec:
    pretrain_clips: int = 320
    # ours: also write `pretrain_clean/`, the same pretraining scenes rendered with nuisance 0 (the
    # pretrained-vs-random check pretrains on it: without clip-level nuisances MEP has no clip-identity
    # shortcut; see the README's Notes)
    clean_pretrain: bool = True
    # clips per downstream split
    splits: dict[str, int] = field(default_factory=lambda: {"train": 200, "val": 32, "test": 64})
    tasks: tuple[str, ...] = ("ucf_like", "esc_like", "ks_like", "charades_like")
    latent_classes: int = 12  # pretraining scripts (a latent class = a cyclic sequence of 3 event types)
    script_prob: float = 0.8  # pretraining: chance the next event follows the script (else any type)
    class_event_prob: float = 0.75  # downstream: chance an event carries the class (else a distractor)
    event_segments: tuple[float, float] = (0.6, 1.6)  # event length in segment durations
    gap_segments: tuple[float, float] = (0.0, 0.35)  # silence between events, in segment durations
    object_size: tuple[float, float] = (0.14, 0.2)  # object radius as a fraction of the frame side
    # nuisances (multiplied by `nuisance`)
    nuisance: float = 0.5  # see the module docstring: why 0.5 is the default
    texture_amplitude: float = 0.2  # background gratings, +- in [0,1] intensity
    pixel_noise: tuple[float, float] = (0.02, 0.07)  # per-pixel Gaussian std range
    clutter_objects: tuple[int, int] = (0, 1)  # static distractor shapes from the same vocabulary
    noise_level: tuple[float, float] = (0.02, 0.08)  # background noise std range (tone peak ~0.3)
    hum_level: tuple[float, float] = (0.0, 0.06)  # steady distractor tone amplitude range
    loudness_db: tuple[float, float] = (-6.0, 0.0)  # per-event gain
    pitch_jitter: float = 0.03  # relative, per event

    def to_json(self) -> dict:
        d = asdict(self)
        d["tasks"] = list(self.tasks)
        return d


def preset(scale: str) -> SyntheticSpec:
    """tiny: seconds on 2 CPU cores; paper: thousands of 30 s clips (generate with many --workers)."""
    if scale == "tiny":
        return SyntheticSpec()
    if scale == "paper":
        return SyntheticSpec(pretrain_clips=10_000, splits={"train": 1400, "val": 200, "test": 400},
                             clean_pretrain=False)
    raise ValueError(f"unknown synthetic scale {scale!r} (tiny | paper)")


def data_config(scale: str) -> DataConfig:
    """The DataConfig each scale renders for (tiny = experiments/profiles/tiny.yaml's data section;
    paper = the code defaults)."""
    if scale == "tiny":
        return DataConfig(root="data/cache/synthetic/tiny", synthetic=True, segments=8, num_workers=1,
                          shuffle_buffer=64,
                          video=VideoConfig(fps=8, frames_per_segment=8, crop=32, train_jitter_scales=(32, 40),
                                            test_size=32),
                          audio=AudioConfig(sample_rate=8000, mel_bins=40, mel_frames=32))
    if scale == "paper":
        return DataConfig(synthetic=True)
    raise ValueError(f"unknown synthetic scale {scale!r} (tiny | paper)")


def render_params(cfg: DataConfig) -> dict:
    """What of a DataConfig shapes the generated files (a root is reusable iff these match)."""
    v = cfg.video
    return {"fps": float(v.fps), "size": int(v.stored_short_side), "audio_rate": int(cfg.audio.sample_rate),
            "segments": int(cfg.segments), "frames_per_segment": int(v.frames_per_segment)}
