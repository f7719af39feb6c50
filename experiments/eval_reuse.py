"""Reuse a finished evaluation of the same backbone and evaluation config instead of repeating it.

Why: rows of different RQs that share a pretraining (experiments/pretrain_reuse.py) also share some of
their evaluations: at the tiny profile rq3/part's `av` is rq1/end_to_end's `av`, rq4/current_sequence's
`av` and rq5/synthetic's `ks_like_m_bert`; rq1/no_pretrain's `order` is rq5/random_init's
`charades_like_m_bert`. An evaluation reseeds from the run's seed and starts from the backbone its
run's pretraining key fixes (the pretrained weights, or the seeded random init when pretraining is off),
so the same evaluation config gives the same numbers in either run (before this existed both runs
computed them: identical in every such group of the tiny sweep's seeds 0-2, README "Runs, configs and
results").

A source is a run folder under the same output_root with the same pretraining key and the same
`data.num_workers` (the few-label subset depends on the loader's order), whose config.yaml lists an
evaluation equal to this one but for its name, and which has finished it (metrics.json or
metrics.partial.json). The run gets the source's entry with `reused_from` set ('rq/name:evaluation';
its `wall_s` moves to `reused_wall_s`) and the evaluation's log lines under its own name, each with
`reused_from`. Off with `runtime.reuse_evaluations=false`.
"""
from __future__ import annotations

import json
from pathlib import Path

from experiments.pretrain_reuse import (finished_entry, pretrain_key, read_run_config, reused_entry, run_label,
                                        same_key_folders, stage_records)


def _without_name(ev: dict) -> dict:
    return {k: v for k, v in ev.items() if k != "name"}


def find_evaluation(root: Path, folder: Path, config: dict, ev: dict) -> tuple[Path, str, dict] | None:
    """(source folder, its evaluation's name, its metrics entry) of the first run under root/<rq>/<name>
    (sorted, `folder` excluded) that finished an evaluation equal to `ev` (a resolved evaluation dict of
    `config`) but for its name, from the same backbone; None if there is none."""
    wanted = _without_name(ev)
    workers = (config.get("data") or {}).get("num_workers")
    for source in same_key_folders(root, pretrain_key(config), folder):
        other = read_run_config(source / "config.yaml")[0] or {}
        if (other.get("data") or {}).get("num_workers") != workers:
            continue
        done = finished_entry(source, "downstream") or {}
        for candidate in other.get("downstream") or []:
            name = candidate.get("name")
            if name in done and _without_name(candidate) == wanted:
                return source, name, done[name]
    return None


def reuse(root: Path, folder: Path, config: dict, ev: dict, log) -> dict | None:
    """The metrics entry of `ev` taken from an identical finished evaluation (its log lines appended
    to `log` under this evaluation's name), or None when there is none."""
    found = find_evaluation(root, folder, config, ev)
    if found is None:
        return None
    source, name, entry = found
    label = f"{run_label(source)}:{name}"
    for record in stage_records(source, f"downstream:{name}"):  # marked as copied: their times are the source's
        log.write(**{**record, "stage": f"downstream:{ev['name']}", "reused_from": label})
    return reused_entry(entry, label)
