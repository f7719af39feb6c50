"""The stages of one run, in order, each resumable: data -> pretraining -> downstream evaluations.

Finished stages leave a mark (checkpoints/pretrained.pt, entries in metrics.partial.json) so a
requeued job continues with the first unfinished stage; the stage in progress resumes from last.pt.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from common import paths
from common.fsutil import atomic_write_json
from common.provenance import collect
from data.pipeline import skipped_summary
from data.synthetic import ensure_synthetic
from experiments import checkpoint, distributed, runtime
from experiments.config import RunConfig, to_dict
from experiments.downstream import run_eval
from experiments.eval_reuse import reuse as reuse_evaluation
from experiments.feature_cache import FeatureCache
from experiments.jsonl_log import JsonlLog
from experiments.pretrain import pretrain
from experiments.run_folder import PARTIAL
from model.build import build_model
from model.config import standard_init
from model.params import count_params


def _partial(folder: Path) -> dict:
    try:
        return json.loads((folder / PARTIAL).read_text())
    except (OSError, ValueError):
        return {}


def _save_partial(folder: Path, data: dict) -> None:
    atomic_write_json(folder / PARTIAL, data)


def _rewind_log(log: JsonlLog, folder: Path, part: dict, stage: str) -> None:
    """A stage about to start from scratch (no last.pt of its own) drops what an earlier attempt of it
    logged, back to where the previous stage finished (`log_bytes` in metrics.partial.json); a stage
    that resumes from last.pt cuts the log itself (experiments.resumable)."""
    if checkpoint.last_stage(folder) == stage:
        return
    if "log_bytes" in part:
        log.truncate(int(part["log_bytes"]))
    elif not part.get("pretrain") and not part.get("downstream"):  # nothing finished yet (a folder of
        log.truncate(0)  # older code, with finished stages but no recorded length, keeps its log)


def _finished(log: JsonlLog, folder: Path, part: dict) -> None:
    part["log_bytes"] = log.size()
    _save_partial(folder, part)


def prepare_data(cfg: RunConfig, env) -> Path:
    """Data root as an absolute path; the synthetic benchmark's tasks this run reads are generated there
    if they are missing."""
    root = paths.resolve(cfg.data.root)
    if cfg.data.synthetic:
        if env.rank == 0:
            ensure_synthetic(root, cfg.data, seed=0, tasks=cfg.synthetic_tasks)
        distributed.barrier()
    elif not root.is_dir():
        raise FileNotFoundError(
            f"data.root {root} does not exist: prepare shards with `python -m data.prepare ...` "
            "(see README, 'Data preparation') or set data.root")
    return root


def load_init_file(path: str) -> dict | None:
    """The whole `pretrain.init_checkpoint` file ({"model": state_dict, optional "heads": downstream
    head weights}, e.g. written by `python -m model.convert_released` or a run's
    checkpoints/pretrained.pt); None when unset."""
    if not path:
        return None
    file = paths.resolve(path)
    if not file.is_file():
        raise FileNotFoundError(f"pretrain.init_checkpoint {file} does not exist")
    state = torch.load(file, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise ValueError(f"pretrain.init_checkpoint {file} holds no 'model' state dict")
    return state


def _reused_evaluation(cfg: RunConfig, config: dict, folder: Path, ev, log) -> dict | None:
    """`ev`'s entry from an identical finished evaluation of another run (experiments/eval_reuse.py);
    `config`: the run's resolved config (to_dict)."""
    resolved = next(d for d in config["downstream"] if d["name"] == ev.name)
    entry = reuse_evaluation(paths.resolve(cfg.output_root), folder, config, resolved, log)
    if entry is not None:
        print(f"{cfg.rq}/{cfg.name}: evaluation {ev.name} reused from {entry['reused_from']} (same backbone and "
              "evaluation config; runtime.reuse_evaluations=false repeats it)", file=sys.stderr, flush=True)
    return entry


def run_stages(cfg: RunConfig, folder: Path, cfg_hash: str, env) -> dict | None:
    """All stages; returns the metrics dict on rank 0 and None on the other ranks."""
    runtime.configure(cfg.runtime, cfg.seed + env.rank)
    device = runtime.pick_device(cfg.runtime, env.local_rank)
    runtime.reset_peak_memory(device)
    log = JsonlLog(folder / "log.jsonl", enabled=env.rank == 0)
    if env.rank == 0:
        atomic_write_json(folder / "provenance.json", collect(cfg.seed, env.world_size))
    data_root = prepare_data(cfg, env)
    part = _partial(folder)
    # CNNs frozen at init stay random features: they get the standard init, as random-init baselines do
    model = build_model(standard_init(cfg.model) if cfg.pretrain.freeze_cnn else cfg.model)
    params = count_params(model)
    init_file = load_init_file(cfg.pretrain.init_checkpoint)
    initial = None if init_file is None else init_file["model"]
    init_heads = None if init_file is None else init_file.get("heads")  # protocol: test scores with these
    del init_file
    if initial is not None:
        model.load_state_dict(initial)
    pre_path = checkpoint.checkpoint_dir(folder) / checkpoint.PRETRAINED
    if cfg.pretrain.enabled and not pre_path.is_file():
        if env.rank == 0:
            _rewind_log(log, folder, part, "pretrain")
        summary = pretrain(cfg, model, data_root, folder, cfg_hash, env, device, log)
        part["pretrain"] = summary
        if env.rank == 0:
            checkpoint.save(folder, {"model": checkpoint.unwrap(model).state_dict(), "config_hash": cfg_hash},
                            checkpoint.PRETRAINED)
            _finished(log, folder, part)
    pretrained = initial  # with pretraining disabled, evaluations start from init_checkpoint (if any)
    if cfg.pretrain.enabled:
        distributed.barrier()
        pretrained = checkpoint.load(folder, checkpoint.PRETRAINED)["model"]
    del model
    if env.rank != 0:
        return None  # downstream evaluation runs on one device (rank 0), as the released commands do

    downstream = dict(part.get("downstream", {}))
    todo = [ev for ev in cfg.downstream if ev.name not in downstream]
    features = FeatureCache(todo)  # evaluations that read the same clips the same way extract them once
    config = to_dict(cfg) if cfg.runtime.reuse_evaluations else None
    for ev in todo:
        init_state = None if ev.init == "random" else pretrained  # auto: pretrained iff there are such weights
        _rewind_log(log, folder, part, f"downstream:{ev.name}")
        entry = _reused_evaluation(cfg, config, folder, ev, log) if config is not None else None
        downstream[ev.name] = entry or run_eval(cfg, ev, init_state, data_root, folder, cfg_hash, env, device, log,
                                                heads=init_heads, features=features)
        features.release(ev)
        part["downstream"] = downstream
        _finished(log, folder, part)

    return {
        "run": cfg.name, "rq": cfg.rq, "profile": cfg.profile, "seed": cfg.seed, "config_hash": cfg_hash,
        "status": "complete", "params": params,
        "pretrain": part.get("pretrain"), "downstream": downstream,
        # stage times include earlier (preempted) attempts; t0 only this process's setup
        "wall_time_s": round(sum(v.get("wall_s", 0.0) for v in downstream.values())
                             + (part.get("pretrain") or {}).get("wall_s", 0.0), 2),
        "peak_memory_mb": round(runtime.peak_memory_mb(device), 1),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "world_size": env.world_size,
        "samples_skipped": skipped_summary(),
    }
