"""The synthetic benchmark's vocabulary: visual and audio signatures, event types, task label sets.

Why these tables: every single attribute is shared by two signatures (colours and motions of visual
signatures, pitches and timbres of audio signatures come in overlapping pairs), so no one cheap
statistic (mean colour, dominant pitch) identifies an event; the shape plus its motion, or the pitch
plus its timbre and rhythm, does. Event types bind a visual signature to an audio signature; their
co-occurrence is the audio-visual factor that pretraining (MEP, CPP) can discover.
"""
from __future__ import annotations

SHAPES = ("disk", "square", "triangle", "plus", "ring", "diamond", "bar", "cross")
COLOURS = ((0.90, 0.15, 0.15), (0.95, 0.85, 0.10), (0.15, 0.80, 0.20), (0.20, 0.35, 0.95))  # red yellow green blue
COLOUR_NAMES = ("red", "yellow", "green", "blue")
MOTIONS = ("sway", "bob", "orbit", "zoom")  # horizontal, vertical, circular, size pulsing

# visual signature i = (shape, colour, motion); colours pair (0,1)(2,3)..., motions pair (7,0)(1,2)...
VISUAL = tuple((i, i // 2, (0, 1, 1, 2, 2, 3, 3, 0)[i]) for i in range(8))

PITCHES = (262.0, 392.0, 587.0, 880.0)  # Hz
TIMBRES = ("sine", "odd", "saw", "bell")  # harmonic profiles (bell: inharmonic partials)
RHYTHMS = (0.0, 2.0, 4.0, 8.0)  # pulses per second (0 = steady tone)
# audio signature j = (pitch, timbre, rhythm); pitches pair (0,1)(2,3)..., timbres pair (7,0)(1,2)...
AUDIO = tuple((j // 2, (0, 1, 1, 2, 2, 3, 3, 0)[j], (0, 1, 2, 3, 1, 0, 3, 2)[j]) for j in range(8))

# event types: (visual signature, audio signature). 0-7 diagonal, 8-11 re-bindings used by ks_like
EVENTS = tuple((i, i) for i in range(8)) + ((0, 1), (3, 2), (4, 5), (5, 4))

# ks_like classes: event types a clip of the class is made of
KS_CLASSES = (
    ("v0a0", (0,)),  # vs v0a1: same visual signature -> separable by audio only
    ("v0a1", (8,)),
    ("v2a2", (2,)),  # vs v3a2: same audio signature -> separable by video only
    ("v3a2", (9,)),
    ("v4a4+v5a5", (4, 5)),  # vs the re-bound pair: same visual and audio sets -> needs both, bound in time
    ("v4a5+v5a4", (10, 11)),
    ("v6a6", (6,)),
    ("v7a7", (7,)),
)
KS_FILLERS = (1, 3)  # event types in no ks_like class, used as distractor events

# charades_like: order labels "a before b" over these event types (all ordered pairs)
CHARADES_TYPES = (0, 2, 4, 6, 7)
CHARADES_LABELS = tuple((a, b) for a in CHARADES_TYPES for b in CHARADES_TYPES if a != b)


def visual_name(i: int) -> str:
    s, c, m = VISUAL[i]
    return f"{COLOUR_NAMES[c]}_{SHAPES[s]}_{MOTIONS[m]}"


def audio_name(j: int) -> str:
    p, t, r = AUDIO[j]
    return f"{int(PITCHES[p])}hz_{TIMBRES[t]}_{RHYTHMS[r]:g}pps"
