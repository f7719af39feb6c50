"""The synthetic benchmark's vocabulary: visual and audio signatures, event types, task label sets.

Why these tables: each visual signature has its own colour and shape (version 5: a tiny CNN at 32 px
must be able to tell the 8 apart, or no audio-visual claim can be tested; motions come in overlapping
pairs); the audio signatures share pitches and timbres in overlapping pairs, so the pitch plus its
timbre and rhythm names one. Event types bind a visual signature to an audio signature; their
co-occurrence in time is the audio-visual factor that pretraining (CPP above all) can discover, and
`bind_like` is the task that needs it.
"""
from __future__ import annotations

SHAPES = ("disk", "square", "triangle", "plus", "ring", "diamond", "bar", "cross")
COLOURS = ((0.90, 0.15, 0.15), (0.95, 0.85, 0.10), (0.15, 0.80, 0.20), (0.20, 0.35, 0.95),
           (0.95, 0.50, 0.05), (0.65, 0.20, 0.85), (0.10, 0.85, 0.85), (0.95, 0.95, 0.95))
COLOUR_NAMES = ("red", "yellow", "green", "blue", "orange", "purple", "cyan", "white")
CLUTTER_GREY = (0.5, 0.5, 0.5)  # static clutter shapes: grey, so they never look like a signature
MOTIONS = ("sway", "bob", "orbit", "zoom")  # horizontal, vertical, circular, size pulsing

# visual signature i = (shape i, colour i, motion); motions pair (7,0)(1,2)...
VISUAL = tuple((i, i, (0, 1, 1, 2, 2, 3, 3, 0)[i]) for i in range(8))

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

# bind_like classes: which audio signature goes with visual signature v (a = BIND_MAPS[k][v]); a clip
# shows types_per_clip visual signatures (v6: all 8, once each) with the mapped sounds at the same
# time, so both unimodal marginals are identical across classes and only the binding separates them.
# Class 0 is the pretraining corpus's binding (event types 0-7); the others are derangements of it.
BIND_MAPS = (
    tuple(range(8)),  # as in pretraining
    tuple((v + 1) % 8 for v in range(8)),  # shifted by one
    tuple((v + 3) % 8 for v in range(8)),  # shifted by three
    tuple(v ^ 1 for v in range(8)),  # pairs swapped
)
BIND_NAMES = ("bound", "shift1", "shift3", "swap_pairs")
# charades_like: order labels "a before b" over these event types (all ordered pairs)
CHARADES_TYPES = (0, 2, 4, 6, 7)
CHARADES_LABELS = tuple((a, b) for a in CHARADES_TYPES for b in CHARADES_TYPES if a != b)


def visual_name(i: int) -> str:
    s, c, m = VISUAL[i]
    return f"{COLOUR_NAMES[c]}_{SHAPES[s]}_{MOTIONS[m]}"


def audio_name(j: int) -> str:
    p, t, r = AUDIO[j]
    return f"{int(PITCHES[p])}hz_{TIMBRES[t]}_{RHYTHMS[r]:g}pps"
