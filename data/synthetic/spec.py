"""Knobs of the synthetic benchmark and its size presets (tiny, smoke = the test suite's, paper).

Rendering sizes (frame size, fps, audio rate, clip length) come from the DataConfig the benchmark is
generated for; this spec holds how many clips, how events are laid out, and how strong the nuisances
are. `nuisance` scales every nuisance amplitude at once (0 = clean renders, >1 harder).

Difficulty history (ours): at the version-2 settings a probe on a random tiny network's features was at
or near chance on every task; version 3 lowered the nuisances (nuisance 0.5 of the weaker amplitudes
below). Version 5 makes the benchmark an instrument (README, "The synthetic benchmark as an
instrument"): the signatures are recognisable by a tiny CNN, and the tasks are built so that each
claim needs what pretraining is meant to teach. Version 8 renders without nuisances by default (the
type is then a larger share of the CNN embeddings); `--nuisance 0.5` gives the v3-v7 amplitudes,
`--nuisance 1` the harder variant.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from data.config import AudioConfig, DataConfig, VideoConfig

# bump when the generated files change (rendering, ids, json, layout): ensure_synthetic regenerates a root
# made by another version. 2: pretraining clips are split "train" (ids pretrain_train_NNNNNN, json split
# "train", was ""), paper-scale shards >= 128 per split. 3: easier default nuisances (nuisance 0.5,
# weaker hum, 0-1 clutter shapes, -6..0 dB events, fainter textures) and 200/32/64 clips per task split.
# 4: `pretrain_clean/` (tiny), nuisance-free twins of the pretraining clips; other files as in 3.
# 5: the instrument (README "The synthetic benchmark as an instrument"): events on the segment grid,
# pretraining clips = 4 of the 8 bound types (types_per_clip), each on 2 segments, in random order
# (both unimodal marginals the same for every clip), 8 distinct signature colours, grey clutter, muted backgrounds, bind_like, a held-out
# pretraining split `pretrain_val/`, 2,048 pretraining clips, 128 / 200 / 1,000 clips per task split;
# no `pretrain_clean/` any more.
# 6: every pretraining / bind_like clip shows all 8 bound types once (types_per_clip 8), and each event
# draws one latent that sets its size and brightness *and* its loudness and pitch (event_coupling): the
# two modalities of an event agree in more than their type, so a masked segment's embedding is
# predictable from the other modality and another clip's audio (CPP's negative, same signature set)
# is told apart by timing and by these per-event values (README, learnability check).
# 7: synthetic.json's spec records `background` (the per-clip background colour range, a knob; its default
# is the v6 range, so the default renders are those of v6); `--types-per-clip` / `--background` on the CLI.
# 8: the cleanest corpus of the second diagnosis (README, "Why CPP does not learn on real clips", points
# 2-4 and 7; chosen on the objectives / segment probes, never on RQ results): 4 of the 8 types per
# pretraining / bind_like clip again (each on 2 segments), backgrounds 0.32-0.38, event objects of radius
# 0.24-0.30, no nuisances (nuisance 0). The per-event latent of v6 stays.
# 9: 7 of the 8 types per pretraining / bind_like clip (one of them on 2 segments), chosen on the
# learnability check and the objectives probe, never on RQ results (README, "How many types per clip"):
# with 4 types each masked segment has a visible twin of its type in the clip, which caps MEP's held-out
# top-1 among the clip's segments (oracle 3.3x / 3.5x chance); with 7, 5.0x / 4.9x with CPP on its own
# unmasked pass. Everything else as in 8.
VERSION = 9


@dataclass
class SyntheticSpec:
    # 16x the largest labelled training set (128 clips): pretraining must be where the data is
    pretrain_clips: int = 2048
    pretrain_val_clips: int = 256  # held-out pretraining clips (`pretrain_val/`): CPP / MEP accuracy per epoch
    # clips per downstream split: train = 16 labels per class for 8 classes (evaluations may take fewer,
    # `downstream[].train_per_class`), val picks the epoch, 1,000 test clips resolve ~3-point differences
    splits: dict[str, int] = field(default_factory=lambda: {"train": 128, "val": 200, "test": 1000})
    tasks: tuple[str, ...] = ("ucf_like", "esc_like", "ks_like", "bind_like", "charades_like")
    class_event_prob: float = 0.75  # downstream: chance an event carries the class (else a distractor)
    onset_jitter: float = 0.1  # events start / end up to this fraction of a segment inside their segment
    # pretraining and bind_like clips show this many of the 8 signatures (each on S/k segments; v9: 7,
    # one of them twice, see VERSION 9). v8 (as v5): 4, each twice. v6/v7 had all 8 once each: another clip's audio then differs only in timing,
    # which the tiny stack does not learn even on oracle embeddings (CPP 0.49 after 2,000 steps); with 4
    # of 8 types CPP alone reaches 0.98 on the oracle and 0.90 on real clips (README, "Why CPP does not
    # learn on real clips", points 1, 2 and 4)
    types_per_clip: int = 7
    object_size: tuple[float, float] = (0.14, 0.2)  # clutter radius as a fraction of the frame side
    # v6, ours: one latent (z0, z1) ~ U(0, 1)^2 per event; z0 sets the object radius and the loudness,
    # z1 the brightness and the pitch offset. False: the audio draws its own latent (same marginals,
    # no per-event agreement between the modalities: the control)
    event_coupling: bool = True
    # event object radius (z0), fraction of the frame side. v8: 0.24-0.30 (v5-v7 0.12-0.22): bigger objects
    # take the random-CNN visual type accuracy of segment embeddings from 0.72 to 0.98 (README, point 3)
    event_size: tuple[float, float] = (0.24, 0.3)
    event_loudness_db: tuple[float, float] = (-9.0, 0.0)  # event gain (z0)
    event_bright: tuple[float, float] = (0.6, 1.0)  # event colour multiplier (z1)
    event_pitch: float = 0.08  # event pitch offset, +- relative (z1); signature pitches are 1.5x apart
    # per-clip background colour range, per channel (both ends of the gradient). The background covers
    # most pixels, so its colour dominates globally pooled CNN features: on 4-types-per-clip renders a
    # narrow range (0.32, 0.38) takes the visual clip share of random-CNN segment embeddings from about
    # 0.77 to 0.27 and their linear type accuracy to 0.72 (README, "Why CPP does not learn on real clips").
    # v8: (0.32, 0.38); v5-v7 (0.15, 0.55)
    background: tuple[float, float] = (0.32, 0.38)
    # nuisances (multiplied by `nuisance`). v8: 0 (clean renders; v3-v7 0.5, see the module docstring):
    # without them the type is a larger share of the CNN embeddings (README, point 3); --nuisance 0.5
    # gives the v7 amplitudes
    nuisance: float = 0.0
    texture_amplitude: float = 0.2  # background gratings, +- in [0,1] intensity
    pixel_noise: tuple[float, float] = (0.02, 0.07)  # per-pixel Gaussian std range
    clutter_objects: tuple[int, int] = (0, 1)  # static distractor shapes from the same vocabulary
    noise_level: tuple[float, float] = (0.02, 0.08)  # background noise std range (tone peak ~0.3)
    hum_level: tuple[float, float] = (0.0, 0.06)  # steady distractor tone amplitude range

    def __post_init__(self) -> None:
        """The knobs the CLIs expose (python -m data.synthetic, the learnability check) stay renderable."""
        if not 1 <= self.types_per_clip <= 8:  # of the 8 bound event types
            raise ValueError(f"types_per_clip must be in 1..8, got {self.types_per_clip}")
        lo, hi = self.background
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"background needs 0 <= LO <= HI <= 1, got {lo} {hi}")
        lo, hi = self.event_size
        if not 0.0 < lo <= hi <= 0.3:  # the object and its motion must stay inside the frame
            raise ValueError(f"event_size needs 0 < LO <= HI <= 0.3, got {lo} {hi}")

    def to_json(self) -> dict:
        d = asdict(self)
        d["tasks"] = list(self.tasks)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "SyntheticSpec":
        """The inverse of to_json (a worker's job, or synthetic.json's "spec")."""
        return cls(**{**d, "tasks": tuple(d["tasks"])})


def preset(scale: str) -> SyntheticSpec:
    """tiny: seconds on 2 CPU cores; paper: thousands of 30 s clips (generate with many --workers)."""
    if scale == "tiny":
        return SyntheticSpec()
    if scale == "smoke":  # the test suite's profile: the tiny renders, a few clips each
        return SyntheticSpec(pretrain_clips=32, pretrain_val_clips=8, splits={"train": 16, "val": 8, "test": 16})
    if scale == "paper":
        return SyntheticSpec(pretrain_clips=10_000, splits={"train": 1400, "val": 200, "test": 1000})
    raise ValueError(f"unknown synthetic scale {scale!r} (tiny | smoke | paper)")


def data_config(scale: str) -> DataConfig:
    """The DataConfig each scale renders for (tiny = experiments/profiles/tiny.yaml's data section;
    paper = the code defaults)."""
    if scale in ("tiny", "smoke"):
        return DataConfig(root=f"data/cache/synthetic/{scale}", synthetic_scale=scale, synthetic=True, segments=8, num_workers=1,
                          shuffle_buffer=64,
                          video=VideoConfig(fps=8, frames_per_segment=8, crop=32, train_jitter_scales=(32, 40),
                                            test_size=32),
                          audio=AudioConfig(sample_rate=8000, mel_bins=40, mel_frames=32))
    if scale == "paper":
        return DataConfig(synthetic=True)
    raise ValueError(f"unknown synthetic scale {scale!r} (tiny | smoke | paper)")


def render_params(cfg: DataConfig) -> dict:
    """What of a DataConfig shapes the generated files (a root is reusable iff these match)."""
    v = cfg.video
    return {"fps": float(v.fps), "size": int(v.stored_short_side), "audio_rate": int(cfg.audio.sample_rate),
            "segments": int(cfg.segments), "frames_per_segment": int(v.frames_per_segment)}
