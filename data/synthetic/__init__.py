"""The embedded synthetic audio-visual benchmark (see generate.py for the layout, spec.py for knobs).

Imports are lazy so `import data.synthetic` stays cheap (the launcher and every run import it; the
renderers load only when a corpus is missing).
"""
from __future__ import annotations

from typing import Any


def ensure_synthetic(root: Any, data_cfg: Any, seed: int = 0, workers: int | None = None, spec: Any = None,
                     progress: bool = True, shards: int | None = None, tasks: Any = None):
    from data.synthetic.generate import ensure_synthetic as _ensure

    return _ensure(root, data_cfg, seed=seed, workers=workers, spec=spec, progress=progress, shards=shards,
                   tasks=tasks)


def generate(root: Any, data_cfg: Any, spec: Any = None, seed: int = 0, workers: int | None = None,
             progress: bool = True, shard_clips: int | None = None, shards: int | None = None,
             tasks: Any = None):
    from data.synthetic.generate import generate as _generate

    return _generate(root, data_cfg, spec=spec, seed=seed, workers=workers, progress=progress,
                     shard_clips=shard_clips, shards=shards, tasks=tasks)


__all__ = ["ensure_synthetic", "generate"]
