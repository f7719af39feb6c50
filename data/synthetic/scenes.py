"""Sample one clip's scene: the event timeline (what happens when) and its nuisances.

Version 5-6: events sit on the segment grid (one event per segment, starting and ending within it), so
a segment is one event and the two modalities of a segment belong together. A pretraining clip shows
`types_per_clip` of the 8 bound event types (v_i with a_i; v6: all 8, once each), each on S / k
segments, in a random order: both unimodal marginals are the same for every clip, and "another clip's
audio" (CPP's negative) is told apart from the clip's own only by which sounds go with which shapes in
time and, v6, by the per-event latent that sets size / brightness and loudness / pitch together.
Downstream labels decide the events (see `sample_scene`); each event is seen (a moving coloured shape)
and heard (a tone with a timbre and rhythm) over exactly the same time span. Everything else
(background colours and drifting texture, static clutter shapes, pixel noise, object position and
motion phase, background noise, a steady distractor hum, pulse phase) is drawn independently per clip
or event.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from data.synthetic import vocab
from data.synthetic.spec import SyntheticSpec


@dataclass
class Event:
    t0: float
    t1: float
    vis: int | None  # visual signature (None: not visible)
    aud: int | None  # audio signature (None: silent)
    etype: int | None = None  # event type (vocab.EVENTS index) when the event is one
    x: float = 0.5  # centre, fraction of the frame
    y: float = 0.5
    size: float = 0.17  # radius, fraction of the frame side
    amp: float = 0.1  # motion amplitude, fraction of the frame side
    freq: float = 1.0  # motion cycles per second
    phase: float = 0.0
    bright: float = 1.0
    gain: float = 1.0
    pitch: float = 1.0  # multiplier of the signature pitch
    pulse_phase: float = 0.0


@dataclass
class Scene:
    duration: float
    events: list[Event]
    bg: dict = field(default_factory=dict)
    clutter: list[tuple[int, int, float, float, float]] = field(default_factory=list)  # shape, colour, x, y, size
    pixel_noise: float = 0.0
    noise: float = 0.0
    noise_smooth: float = 0.0
    hum: tuple[float, int, float] = (440.0, 0, 0.0)  # freq, timbre, amplitude
    label: int | None = None
    labels: list[int] | None = None


def _timeline(duration: float, seg_s: float, rng: np.random.Generator, spec: SyntheticSpec) -> list[tuple[float, float]]:
    """One event per segment: it starts within the first `onset_jitter` of the segment and ends within its
    last `onset_jitter` (a short silent, object-free gap between events)."""
    n = int(round(duration / seg_s))
    j = spec.onset_jitter * seg_s
    return [(k * seg_s + rng.uniform(0, j), (k + 1) * seg_s - rng.uniform(0, j)) for k in range(n)]


def _draw_types(n: int, k: int, rng: np.random.Generator, pool: int = 8) -> list[int]:
    """n segments showing k distinct values of range(pool), each on n/k segments (as evenly as n allows),
    in a random order."""
    chosen = rng.choice(pool, k, replace=False)
    return [int(x) for x in rng.permutation(np.resize(chosen, n))]


def _slots(duration: float, m: int, rng: np.random.Generator) -> list[tuple[float, float]]:
    """m events in order, one per equal slot, each 60-90% of its slot."""
    slot = duration / m
    out = []
    for i in range(m):
        length = rng.uniform(0.6, 0.9) * slot
        t0 = i * slot + rng.uniform(0, slot - length)
        out.append((t0, t0 + length))
    return out


def _lerp(lo_hi: tuple[float, float], z: float) -> float:
    return float(lo_hi[0] + (lo_hi[1] - lo_hi[0]) * z)


def _dress(ev: Event, rng: np.random.Generator, spec: SyntheticSpec) -> Event:
    """Per-event values. The event latent (z0, z1) sets size + brightness (seen) and loudness + pitch
    (heard), the same latent for both modalities when spec.event_coupling; position and motion phase /
    rate are nuisances of the picture only, the pulse phase of the sound only."""
    zv = rng.uniform(0, 1, 2)
    za = zv if spec.event_coupling else rng.uniform(0, 1, 2)
    ev.size = _lerp(spec.event_size, zv[0])
    ev.bright = _lerp(spec.event_bright, zv[1])
    ev.gain = 10 ** (_lerp(spec.event_loudness_db, za[0]) / 20)
    ev.pitch = 1.0 + spec.event_pitch * (2 * za[1] - 1)
    ev.amp = rng.uniform(0.06, 0.1)
    margin = ev.size * 1.3 + ev.amp
    ev.x, ev.y = rng.uniform(margin, 1 - margin, 2)
    ev.freq = rng.uniform(0.7, 1.3)
    ev.phase = rng.uniform(0, 2 * np.pi)
    ev.pulse_phase = rng.uniform(0, 1)
    return ev


def _nuisances(scene: Scene, rng: np.random.Generator, spec: SyntheticSpec) -> Scene:
    n = spec.nuisance
    scene.bg = {  # muted background colours (version 5), so the signature colours stand out
        "a": rng.uniform(*spec.background, 3), "b": rng.uniform(*spec.background, 3), "angle": rng.uniform(0, 2 * np.pi),
        "gratings": [(rng.uniform(0, np.pi), rng.uniform(1.5, 5.0), rng.uniform(0, 2 * np.pi),
                      rng.uniform(-0.5, 0.5), rng.uniform(-1, 1, 3)) for _ in range(2)],
        "texture": n * spec.texture_amplitude,
    }
    k = int(rng.integers(spec.clutter_objects[0], spec.clutter_objects[1] + 1)) if n > 0 else 0
    scene.clutter = [(int(rng.integers(len(vocab.SHAPES))), int(rng.integers(len(vocab.COLOURS))),
                      *rng.uniform(0.2, 0.8, 2), rng.uniform(*spec.object_size)) for _ in range(k)]
    scene.pixel_noise = n * rng.uniform(*spec.pixel_noise)
    scene.noise = n * rng.uniform(*spec.noise_level)
    scene.noise_smooth = rng.uniform(0.0, 0.9)
    scene.hum = (float(rng.uniform(150, 1200)), int(rng.integers(len(vocab.TIMBRES))), n * rng.uniform(*spec.hum_level))
    return scene


def _typed(t: tuple[float, float], etype: int) -> Event:
    v, a = vocab.EVENTS[etype]
    return Event(t[0], t[1], v, a, etype)


def sample_scene(task: str, label: int | None, duration: float, seg_s: float, rng: np.random.Generator,
                 spec: SyntheticSpec) -> Scene:
    """One clip's scene. `label` is the class (downstream; None for pretraining and charades_like)."""
    p = spec.class_event_prob
    events: list[Event] = []
    labels = None
    if task == "pretrain":  # k of the 8 bound types (v_i with a_i), each on S/k segments, in a random order
        times = _timeline(duration, seg_s, rng, spec)
        events = [_typed(t, et) for t, et in zip(times, _draw_types(len(times), spec.types_per_clip, rng))]
    elif task == "bind_like":  # as pretraining, with the audio signature = the class's map of the visual one
        times = _timeline(duration, seg_s, rng, spec)
        amap = vocab.BIND_MAPS[label]
        events = [Event(t[0], t[1], v, amap[v]) for t, v in zip(times, _draw_types(len(times), spec.types_per_clip, rng))]
    elif task == "ucf_like":  # label = visual signature; audio signatures random (uninformative)
        for t in _timeline(duration, seg_s, rng, spec):
            v = label if rng.random() < p else int(rng.choice([i for i in range(8) if i != label]))
            events.append(Event(t[0], t[1], v, int(rng.integers(8))))
    elif task == "esc_like":  # label = audio signature; audio only
        for t in _timeline(duration, seg_s, rng, spec):
            a = label if rng.random() < p else int(rng.choice([j for j in range(8) if j != label]))
            events.append(Event(t[0], t[1], None, a))
    elif task == "ks_like":  # label = a set of event types; distractors are event types of no class
        types = vocab.KS_CLASSES[label][1]
        for t in _timeline(duration, seg_s, rng, spec):
            pool = types if rng.random() < p else vocab.KS_FILLERS
            events.append(_typed(t, int(rng.choice(pool))))
    elif task == "charades_like":  # labels = ordered pairs of the distinct event types, in order
        m = int(rng.integers(3, 5))
        order = [int(x) for x in rng.choice(vocab.CHARADES_TYPES, m, replace=False)]
        events = [_typed(t, et) for t, et in zip(_slots(duration, m, rng), order)]
        rank = {et: i for i, et in enumerate(order)}
        labels = [k for k, (a, b) in enumerate(vocab.CHARADES_LABELS) if a in rank and b in rank and rank[a] < rank[b]]
    else:
        raise ValueError(f"unknown synthetic task {task!r}")
    events = [_dress(e, rng, spec) for e in events]
    scene = Scene(duration=duration, events=events, labels=labels,
                  label=None if task in ("pretrain", "charades_like") else int(label))
    return _nuisances(scene, rng, spec)
