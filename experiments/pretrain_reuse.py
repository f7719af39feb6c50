"""Reuse a finished pretraining of the same configuration instead of repeating it.

Why: several rows of different RQs are the same pretraining (at the tiny profile rq1/end_to_end,
rq3/part and rq4/current_sequence; rq2/mid and rq3/cross_layer), and only their evaluation lists
differ. Pretraining is deterministic given its config and seed, and every evaluation reseeds from the
run's seed (experiments/downstream.py), so a run that takes another run's pretrained weights gets the
numbers it would have computed itself, for a fraction of the time.

A source is a run folder under the same output_root whose `config.yaml` has the same pretraining key
(model, pretrain, data, runtime and seed; not name, rq, downstream evaluations, logging cadence or
loader workers) and whose `checkpoints/pretrained.pt` was written under that config (its config_hash
is the folder's stamp). The run gets a copy of the weights (a hard link where the file system allows),
the source's pretraining lines of log.jsonl, and the source's pretraining summary with
`reused_from` set (its `wall_s` moves to `reused_wall_s`: no time was spent here). Off with
`runtime.reuse_pretraining=false`.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
import yaml

from common.fsutil import atomic_write_json, atomic_write_text
from experiments.config import config_hash, without_keys

PRETRAIN_SECTIONS = ("model", "pretrain", "data", "runtime", "seed")


def pretrain_key(config: dict) -> str:
    """Hash of what decides the pretrained weights, from a resolved config dict (to_dict / config.yaml):
    its pretraining sections without the keys that never change a result (as the run's result hash)."""
    return config_hash(without_keys({k: config.get(k) for k in PRETRAIN_SECTIONS}))


def _summary(folder: Path) -> dict | None:
    for name in ("metrics.json", "metrics.partial.json"):
        try:
            pre = json.loads((folder / name).read_text()).get("pretrain")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(pre, dict):
            return pre
    return None


def find_source(root: Path, key: str, exclude: Path) -> tuple[Path, dict] | None:
    """(folder, pretraining summary) of the first run under root/<rq>/<name> (sorted) with a finished
    pretraining of this key; folders moved aside (`*.old-*`) and `exclude` are skipped."""
    for cfg_file in sorted(root.glob("*/*/config.yaml")):
        folder = cfg_file.parent
        if folder.resolve() == exclude.resolve() or ".old-" in folder.name:
            continue
        weights, stamp = folder / "checkpoints" / "pretrained.pt", folder / "checkpoints" / "hash"
        if not weights.is_file() or not stamp.is_file():
            continue
        try:
            config = yaml.safe_load(cfg_file.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(config, dict) or pretrain_key(config) != key:
            continue
        summary = _summary(folder)
        if summary is None:
            continue
        written = torch.load(weights, map_location="cpu", weights_only=True, mmap=True).get("config_hash")
        if written != stamp.read_text().strip():
            continue  # the weights belong to an earlier config of that folder
        return folder, summary
    return None


def _link_or_copy(src: Path, dst: Path) -> None:
    """dst appears whole or not at all: a hard link (or copy) under a temporary name, then a rename."""
    tmp = dst.with_name(f".{dst.name}.reuse-tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _pretrain_lines(source: Path) -> list[str]:
    try:
        lines = (source / "log.jsonl").read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            if json.loads(line).get("stage") == "pretrain":
                out.append(line)
        except ValueError:
            continue
    return out


def reuse(root: Path, folder: Path, config: dict) -> str | None:
    """Give `folder` the pretraining of an identical earlier run, if there is one and `folder` has none
    yet; returns the source as 'rq/name' (None: nothing reused). Writes pretrained.pt, the log lines and
    metrics.partial.json's `pretrain` entry with the log length the later stages rewind to."""
    target = folder / "checkpoints" / "pretrained.pt"
    partial_file = folder / "metrics.partial.json"
    try:
        partial = json.loads(partial_file.read_text())
    except (OSError, ValueError):
        partial = {}
    if target.is_file() or partial.get("pretrain") or (folder / "checkpoints" / "last.pt").is_file():
        return None  # this run has pretraining of its own (finished or in progress)
    found = find_source(root, pretrain_key(config), folder)
    if found is None:
        return None
    source, summary = found
    name = f"{source.parent.name}/{source.name}"

    lines = _pretrain_lines(source)
    atomic_write_text(folder / "log.jsonl", "".join(line + "\n" for line in lines))
    summary = {**summary, "reused_from": name, "reused_wall_s": summary.get("wall_s"), "wall_s": 0.0}
    _link_or_copy(source / "checkpoints" / "pretrained.pt", target)
    atomic_write_json(partial_file, {**partial, "pretrain": summary, "log_bytes": (folder / "log.jsonl").stat().st_size})
    return name
