"""Evaluation features shared by the linear evaluations of one run that read the same clips the same way.

Why: RQ5 scores a CNN row and a transformer row of each modality on the same task (ks_like `v_cnn` and
`v_bert`, `m_cnn` and `m_bert`, ...) and RQ1 scores `bind` with all and with 4 labels per class; each
evaluation extracted its splits again. Every evaluation of a run starts from the same backbone (the
run's pretrained weights, or the same seeded random init), the evaluation loaders are deterministic and
nothing after the extraction draws from the global random state, so one extraction serves them all and
the numbers stay the same (tests/test_feature_cache.py). It includes the transformer outputs when any
evaluation that reads it needs them (the CNN features are computed the same way either way), and it is
dropped once no evaluation left in the run reads it.
"""
from __future__ import annotations

from typing import Callable

from model.heads import row_modalities

SPLITS = ("train", "val", "test")


def all_views(split: str) -> bool:
    """A linear evaluation reads the train split as one centred view per clip and val / test with all
    the evaluation's views (experiments/downstream.py); the cache key follows the same rule."""
    return split != "train"


def _key(ev, split: str) -> tuple:
    """What decides the features of one split: the clips and how they are read (task, split, segments,
    views, crops, the inputs given, batch size, targets), the backbone (random or the run's weights) and
    which features the row computes (its modalities; CNN or hand-crafted)."""
    views = all_views(split)
    return (ev.task, ev.split, split, ev.segments, ev.temporal_views if views else 1, ev.spatial_crops if views else 1,
            tuple(ev.modalities), row_modalities(ev.model, ev.modalities), ev.model.endswith("hand"),
            ev.init == "random", ev.batch_size, ev.multilabel)


class FeatureCache:
    """`get` returns a split's (features, targets), extracting them on the first request; `release`
    marks an evaluation done. Only linear evaluations read features this way."""

    def __init__(self, evals: list):
        self._pending = [ev for ev in evals if ev.protocol == "linear"]
        self._store: dict[tuple, tuple] = {}

    def get(self, ev, split: str, extract: Callable[[bool], tuple]) -> tuple:
        """`extract(transformer)` computes the split; transformer: also the transformer outputs (any
        pending evaluation of this key is a *_bert row)."""
        key = _key(ev, split)
        if key not in self._store:
            readers = [e for e in self._pending if _key(e, split) == key] or [ev]
            self._store[key] = extract(any(e.model.endswith("bert") for e in readers))
        return self._store[key]

    def release(self, ev) -> None:
        """`ev` is done (computed or reused): drop what no pending evaluation reads."""
        self._pending = [e for e in self._pending if e is not ev]
        wanted = {_key(e, split) for e in self._pending for split in SPLITS}
        self._store = {k: v for k, v in self._store.items() if k in wanted}
