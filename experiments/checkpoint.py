"""The one canonical training checkpoint, `<run>/checkpoints/last.pt`, used by saver and resumer.

It holds everything needed to continue exactly where a run stopped: the stage it belongs to
(pretraining or one downstream evaluation), model/optimizer/scheduler states, RNG states, the data
position (epoch, batches consumed in the epoch), the optimizer step and the config hash. Written
atomically (temp file + rename), read with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

from pathlib import Path

import torch

from common.fsutil import atomic_torch_save

LAST = "last.pt"
PRETRAINED = "pretrained.pt"  # final pretrained weights, the init of every downstream evaluation


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def save(run_dir: Path, state: dict, name: str = LAST) -> Path:
    path = checkpoint_dir(run_dir) / name
    atomic_torch_save(state, path)
    return path


def load(run_dir: Path, name: str = LAST, map_location: str | torch.device = "cpu") -> dict | None:
    """The checkpoint's dict, or None when it does not exist."""
    path = checkpoint_dir(run_dir) / name
    if not path.is_file():
        return None
    return torch.load(path, map_location=map_location, weights_only=True)


def last_stage(run_dir: Path) -> str | None:
    """The stage `last.pt` belongs to (None without one), read memory-mapped: no full load."""
    path = checkpoint_dir(run_dir) / LAST
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("stage")


def load_for(run_dir: Path, stage: str, cfg_hash: str, map_location="cpu") -> dict | None:
    """`last.pt` if it belongs to this stage of this exact config; else None (start the stage fresh).

    A last.pt from a different config is never silently reused: run.py refuses to resume a run folder
    whose config changed (see run.py), so a hash mismatch here means a programming error."""
    state = load(run_dir, LAST, map_location)
    if state is None or state.get("stage") != stage:
        return None
    if state.get("config_hash") != cfg_hash:
        raise RuntimeError(f"{checkpoint_dir(run_dir) / LAST} was written by a different config "
                           f"({state.get('config_hash')} != {cfg_hash}); move it away or use a new run name")
    return state


def remove_stale_temps(run_dir: Path) -> list[Path]:
    """Delete the temp files (`.<name>.*.tmp`) that a kill during an atomic write left in the run folder
    and its checkpoints/. Safe because the run folder is locked (experiments.run_lock): no other
    process of this run can be writing them."""
    removed = []
    for d in (Path(run_dir), checkpoint_dir(run_dir)):
        for tmp in d.glob(".*.tmp"):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare module inside DDP / torch.compile wrappers (their state_dict keys differ)."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)
