"""Reuse a finished pretraining of the same configuration instead of repeating it.

Why: several rows of different RQs are the same pretraining (at the tiny profile rq1/end_to_end,
rq3/part and rq4/current_sequence; rq2/mid and rq3/cross_layer), and only their evaluation lists
differ. Pretraining is deterministic given its config and seed, and every evaluation reseeds from the
run's seed (experiments/downstream.py), so a run that takes another run's pretrained weights gets the
numbers it would have computed itself, for a fraction of the time.

A source is a run folder under the same output_root whose `config.yaml` has the same pretraining key
(model, pretrain, data, runtime and seed; not name, rq, downstream evaluations, logging cadence or
loader workers) and whose `checkpoints/pretrained.pt` was written under that config (its config_hash
is the folder's stamp). The key reads `multi2` sharing as what it builds, `none` with 2 layers, so at
the tiny profile (2 layers) rq3's `multi2` and `none` rows are one pretraining. The run gets a copy of
the weights (a hard link where the file system allows), the source's pretraining lines of log.jsonl
(each with `reused_from`), and the source's pretraining summary with `reused_from` set (its `wall_s`
moves to `reused_wall_s`: no time was spent here; a source that reused in turn passes on its own
`reused_wall_s`, the time of the pretraining that ran, as evaluation reuse does). Off with
`runtime.reuse_pretraining=false`.

Runs of one launch, of launches side by side, or of SLURM jobs that start in any order: when no finished
source exists but a run of the same key that started before this one is pretraining now (its folder
lock is held), the run waits for it instead of pretraining too (`wait_for_source`). "Started before"
is the order in which the runs wrote their config.yaml (a run writes it after taking its lock and
before it looks for twins), ties broken by `rq/name`: a total order, so two runs never wait on each
other, and a run that looks before its twin has written its config.yaml is the earlier one, which the
twin then waits for. The launcher submits the first run of each key before the others and the repeats
last (`submission_order`), so a wait is rare. Only when two twins write their config.yaml within one
tick of the file system's clock (a few ms) and look at once can both pretrain (same weights; only the
time is lost).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable

import yaml

from common.fsutil import atomic_write_json, atomic_write_text
from experiments import preemption, run_lock
from experiments.config import config_hash, without_keys
from experiments.run_folder import METRICS, PARTIAL

PRETRAIN_SECTIONS = ("model", "pretrain", "data", "runtime", "seed")
WAIT_POLL_S = 5.0


def _built_model(model: dict | None) -> dict | None:
    """The model section as what it builds: `multi2` is `none` with 2 layers (model.config.num_layers,
    model.sharing.build_stacks: the same modules, names and initialisation)."""
    if not isinstance(model, dict) or model.get("sharing") != "multi2":
        return model
    transformer = model.get("transformer")
    transformer = {**transformer, "layers": 2} if isinstance(transformer, dict) else transformer
    return {**model, "sharing": "none", "transformer": transformer}


def pretrain_key(config: dict) -> str:
    """Hash of what decides the pretrained weights, from a resolved config dict (to_dict / config.yaml):
    its pretraining sections without the keys that never change a result (as the run's result hash),
    the model as what it builds (`_built_model`)."""
    sections = {k: config.get(k) for k in PRETRAIN_SECTIONS}
    sections["model"] = _built_model(sections["model"])
    return config_hash(without_keys(sections))


def reuse_wanted(config: dict) -> bool:
    """Whether a run (resolved config dict) pretrains and may take or give an identical pretraining."""
    pre, rt = config.get("pretrain") or {}, config.get("runtime") or {}
    return bool(pre.get("enabled", True) and rt.get("reuse_pretraining", True))


def run_label(folder: Path) -> str:
    return f"{folder.parent.name}/{folder.name}"


_READ: dict[Path, tuple[tuple, dict | None, str | None]] = {}


def read_run_config(cfg_file: Path) -> tuple[dict | None, str | None]:
    """(config, pretraining key) of a run's config.yaml, None for an unreadable one. Parsed once per
    version of the file in this process (why: every evaluation of a run and every 5-s poll of a waiting
    twin looks through all run folders; parsing 70 configs takes about a second)."""
    try:
        st = cfg_file.stat()
    except OSError:
        return None, None
    stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
    cached = _READ.get(cfg_file)
    if cached is None or cached[0] != stamp:
        try:
            config = yaml.safe_load(cfg_file.read_text())
        except (OSError, yaml.YAMLError):
            config = None
        config = config if isinstance(config, dict) else None
        cached = _READ[cfg_file] = (stamp, config, None if config is None else pretrain_key(config))
    return cached[1], cached[2]


def same_key_folders(root: Path, key: str, exclude: Path):
    """Every run folder under root/<rq>/<name> (sorted) whose config.yaml has this pretraining key;
    folders moved aside (`*.old-*`) and `exclude` are skipped."""
    for cfg_file in sorted(root.glob("*/*/config.yaml")):
        folder = cfg_file.parent
        if folder.resolve() == exclude.resolve() or ".old-" in folder.name:
            continue
        if read_run_config(cfg_file)[1] == key:
            yield folder


def finished_entry(folder: Path, section: str) -> dict | None:
    """A run folder's finished `section` ("pretrain": the summary; "downstream": the evaluations by
    name), from metrics.json or, while the run goes on, metrics.partial.json; None if there is none."""
    for name in (METRICS, PARTIAL):
        try:
            entry = json.loads((folder / name).read_text()).get(section)
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(entry, dict):
            return entry
    return None


def find_source(root: Path, key: str, exclude: Path) -> tuple[Path, dict] | None:
    """(folder, pretraining summary) of the first run under root/<rq>/<name> (sorted) with a finished
    pretraining of this key; folders moved aside (`*.old-*`) and `exclude` are skipped."""
    for folder in same_key_folders(root, key, exclude):
        weights, stamp = folder / "checkpoints" / "pretrained.pt", folder / "checkpoints" / "hash"
        if not weights.is_file() or not stamp.is_file():
            continue
        summary = finished_entry(folder, "pretrain")
        if summary is None:
            continue
        import torch  # lazy: the launcher orders runs with this module and never loads weights

        written = torch.load(weights, map_location="cpu", weights_only=True, mmap=True).get("config_hash")
        if written != stamp.read_text().strip():
            continue  # the weights belong to an earlier config of that folder
        return folder, summary
    return None


def _started(folder: Path) -> tuple[int | float, str]:
    """When the run in `folder` (re)started: the write time of its config.yaml (written after the run
    took its lock and before it looked for twins), then its `rq/name`; the order twins wait in."""
    try:
        written: int | float = (folder / "config.yaml").stat().st_mtime_ns
    except OSError:
        written = float("inf")
    return written, run_label(folder)


def running_source(root: Path, key: str, folder: Path) -> Path | None:
    """A run of this key that is pretraining now (its folder lock held, no pretrained.pt yet) and that
    started before `folder`'s run (`_started`); None if there is none."""
    mine = _started(folder)
    for other in same_key_folders(root, key, folder):
        if _started(other) >= mine:
            continue
        if not (other / "checkpoints" / "pretrained.pt").is_file() and run_lock.holder(other) is not None:
            return other
    return None


def wait_for_source(root: Path, key: str, folder: Path, poll_s: float = WAIT_POLL_S,
                    say: Callable[[str], None] | None = None) -> None:
    """While a run that started first pretrains the same thing (running_source), wait for it to finish
    or stop. A stop request here raises Preempted (nothing of this run exists yet: the requeue redoes it)."""
    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    waited_for = None
    while (other := running_source(root, key, folder)) is not None:
        if other != waited_for:
            say(f"{run_label(folder)}: waiting for {run_label(other)}, which is pretraining the same model, data "
                "and seed now (its weights are then reused; runtime.reuse_pretraining=false does not wait)")
            waited_for = other
        if preemption.stop_requested():
            raise preemption.Preempted(f"stop requested while waiting for {run_label(other)}'s pretraining")
        time.sleep(poll_s)


def submission_order(items: list, config_of: Callable[[object], dict], folder_of: Callable[[object], Path]) -> list:
    """`items` (runs of a launch) reordered so that a run whose pretraining another one of them repeats
    (same key, reuse on) starts first: for each key, the run whose folder sorts first, in launch order
    (it starts first, so the others wait for it: `running_source`); then the runs without a twin; then
    the twins, which reuse the first one's weights."""
    groups: dict[str, list] = {}
    keys = []
    for item in items:
        config = config_of(item)
        key = pretrain_key(config) if reuse_wanted(config) else None
        keys.append(key)
        if key is not None:
            groups.setdefault(key, []).append(item)
    first = {key: min(members, key=lambda m: run_label(folder_of(m))) for key, members in groups.items()}

    def rank(pair) -> int:
        item, key = pair
        if key is None or len(groups[key]) == 1:
            return 1
        return 0 if first[key] is item else 2
    return [item for item, _ in sorted(zip(items, keys), key=rank)]  # stable: launch order within a rank


def _link_or_copy(src: Path, dst: Path) -> None:
    """dst appears whole or not at all: a hard link (or copy) under a temporary name, then a rename."""
    tmp = dst.with_name(f".{dst.name}.reuse-tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def reused_entry(entry: dict, source: str) -> dict:
    """A finished entry (pretraining summary, evaluation) as the run that takes it from `source` records
    it: no time spent here, the time of the computation that ran in `reused_wall_s` (passed on when the
    source took it from another run in turn)."""
    return {**entry, "reused_from": source, "reused_wall_s": entry.get("reused_wall_s", entry.get("wall_s")),
            "wall_s": 0.0}


def stage_records(source: Path, stage: str) -> list[dict]:
    """The records of a run's log.jsonl that belong to `stage` ("pretrain", "downstream:<name>")."""
    try:
        lines = (source / "log.jsonl").read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("stage") == stage:
            out.append(record)
    return out


def reuse(root: Path, folder: Path, config: dict) -> str | None:
    """Give `folder` the pretraining of an identical earlier run, if there is one and `folder` has none
    yet; returns the source as 'rq/name' (None: nothing reused, or the run does not pretrain or has reuse
    off). Writes pretrained.pt, the log lines and metrics.partial.json's `pretrain` entry with the log
    length the later stages rewind to."""
    if not reuse_wanted(config):
        return None
    target = folder / "checkpoints" / "pretrained.pt"
    partial_file = folder / PARTIAL
    try:
        partial = json.loads(partial_file.read_text())
    except (OSError, ValueError):
        partial = {}
    if target.is_file() or partial.get("pretrain") or (folder / "checkpoints" / "last.pt").is_file():
        return None  # this run has pretraining of its own (finished or in progress)
    key = pretrain_key(config)
    found = find_source(root, key, folder)
    if found is None:
        wait_for_source(root, key, folder)
        found = find_source(root, key, folder)
    if found is None:
        return None
    source, summary = found
    name = run_label(source)

    records = stage_records(source, "pretrain")  # marked as copied: their times are the source's
    atomic_write_text(folder / "log.jsonl", "".join(json.dumps({**r, "reused_from": name}) + "\n" for r in records))
    _link_or_copy(source / "checkpoints" / "pretrained.pt", target)
    atomic_write_json(partial_file, {**partial, "pretrain": reused_entry(summary, name),
                                     "log_bytes": (folder / "log.jsonl").stat().st_size})
    return name
