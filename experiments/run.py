"""Run one configuration: pretraining (optional) then every downstream evaluation it lists.

    python experiments/run.py --config experiments/rq3_sharing/configs/part.yaml [--profile tiny] [key=value ...]

Writes `results/<rq>/<name>/`: config.yaml (resolved), provenance.json, log.jsonl, metrics.json,
checkpoints/{last.pt,pretrained.pt}. Re-running is safe: a complete run with the same config is
skipped, an unfinished one resumes from `last.pt` (pretraining mid-epoch, finished evaluations kept).
A run folder whose config changed is never overwritten: pass --restart to move it aside. One process
at a time trains into a run folder (experiments.run_lock): a second one says who holds it and exits 2.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # `python experiments/run.py` from anywhere: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import contextlib
import json
import time

from experiments import paths, preemption, run_lock
from experiments.config import (ConfigError, RunConfig, config_hash, explain_config, load_config, save_config,
                                to_dict, without_keys)
from experiments.io_utils import atomic_write_json

PARTIAL = "metrics.partial.json"


def result_hash(cfg: RunConfig) -> str:
    """Hash of everything that can change a result (not where results go, not logging cadence)."""
    return config_hash(without_keys(to_dict(cfg)))


def run_dir(cfg: RunConfig) -> Path:
    """output_root/rq/name, refused if it resolves outside output_root (the schema already allows only
    plain folder names; this also covers a symlinked rq folder)."""
    root = paths.resolve(cfg.output_root)
    folder = root / cfg.rq / cfg.name
    real, base = folder.resolve(), root.resolve()
    if real == base or not real.is_relative_to(base):
        raise ValueError(f"run folder {real} (rq {cfg.rq!r}, name {cfg.name!r}) is not inside output_root {root}")
    return folder


def read_metrics(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_complete(cfg: RunConfig) -> bool:
    m = read_metrics(run_dir(cfg))
    return bool(m) and m.get("status") == "complete" and m.get("config_hash") == result_hash(cfg)


class ConfigChanged(RuntimeError):
    """The run folder holds results of a different config; we refuse to mix or overwrite them."""


def _move_aside(folder: Path, why: str) -> None:
    """Never delete a run: rename it to <name>.old-<timestamp> beside the new one."""
    aside = folder.with_name(f"{folder.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    folder.rename(aside)
    print(f"moved the previous run ({why}) to {aside}")


def _check_folder(cfg: RunConfig, folder: Path, restart: bool, fresh: bool) -> None:
    """restart: move a folder of a different config aside; fresh: move any previous run aside."""
    old = folder / "config.yaml"
    if not old.is_file():
        return
    if fresh:
        _move_aside(folder, "--no-resume")
        return
    prev = (read_metrics(folder) or {}).get("config_hash")
    stamp = (folder / "checkpoints" / "hash").read_text().strip() if (folder / "checkpoints" / "hash").is_file() else prev
    if stamp in (None, result_hash(cfg)):
        return
    if restart:
        _move_aside(folder, "a different config")
        return
    raise ConfigChanged(
        f"{folder} holds a run of a different config (hash {stamp} != {result_hash(cfg)}). "
        "Use another name (name=...), or pass --restart to move the old folder aside.")


def execute(cfg: RunConfig, *, resume: bool = True, restart: bool = False) -> dict:
    """Run (or resume, or skip) one config and return its metrics dict. resume=False starts over:
    a previous run folder is moved aside (never deleted)."""
    from experiments import distributed

    folder = run_dir(cfg)
    if resume and is_complete(cfg):
        print(f"{folder} is complete with this config: skipped (--no-resume starts it over)", file=sys.stderr)
        return read_metrics(folder)
    env = distributed.setup()
    try:
        with contextlib.ExitStack() as stack:
            locked = None
            if env.rank == 0:  # one lock per run; the other ranks learn the outcome from rank 0
                try:
                    stack.enter_context(run_lock.hold(folder))
                except run_lock.RunFolderLocked as e:
                    locked = e
            if distributed.any_flag(locked is not None):
                raise locked or run_lock.RunFolderLocked(f"{folder} is in use (rank 0 could not lock it)")
            if distributed.any_flag(env.rank == 0 and resume and is_complete(cfg)):  # finished meanwhile
                return read_metrics(folder) if env.rank == 0 else {}
            return _execute_locked(cfg, folder, env, resume, restart)
    finally:
        distributed.cleanup()


def _execute_locked(cfg: RunConfig, folder: Path, env, resume: bool, restart: bool) -> dict:
    from experiments import distributed
    from experiments.stages import run_stages

    if env.rank == 0:
        _check_folder(cfg, folder, restart, fresh=not resume)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "checkpoints").mkdir(exist_ok=True)
        (folder / "checkpoints" / "hash").write_text(result_hash(cfg) + "\n")
        save_config(cfg, folder / "config.yaml")
        if cfg.pretrain.enabled and cfg.runtime.reuse_pretraining:
            from experiments.pretrain_reuse import reuse

            source = reuse(paths.resolve(cfg.output_root), folder, to_dict(cfg))
            if source:
                print(f"{cfg.rq}/{cfg.name}: pretraining reused from {source} (same model, pretraining, data, "
                      "runtime and seed; runtime.reuse_pretraining=false repeats it)", file=sys.stderr, flush=True)
    distributed.barrier()
    metrics = run_stages(cfg, folder, result_hash(cfg), env)
    if metrics is None:  # not rank 0: done after pretraining
        return {}
    atomic_write_json(folder / "metrics.json", metrics)
    (folder / PARTIAL).unlink(missing_ok=True)
    return metrics


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="run YAML (e.g. experiments/rq3_sharing/configs/part.yaml)")
    ap.add_argument("--profile", choices=("tiny", "paper", "smoke"), help="default: the YAML's profile, else tiny")
    ap.add_argument("--restart", action="store_true", help="move an existing run folder of a different config aside")
    ap.add_argument("--no-resume", action="store_true", help="start over: move the previous run folder aside (kept as <name>.old-<time>)")
    ap.add_argument("--print-config", action="store_true",
                    help="print the resolved config, each value with the layer it came from, and exit")
    ap.add_argument("overrides", nargs="*", help="dotted overrides, e.g. pretrain.optim.lr=1e-4")
    args = ap.parse_args(argv)
    try:
        if args.print_config:
            print(explain_config(args.config, args.overrides, args.profile))
            return 0
        cfg = load_config(args.config, args.overrides, args.profile)
    except (ConfigError, FileNotFoundError) as e:  # as launch.py: the message, exit 2, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    from experiments import distributed, logs

    logs.configure(distributed.resolve_env().rank)
    preemption.install()
    preemption.shield_forked_children()  # srun/scancel signal every process; workers must not act
    try:
        metrics = execute(cfg, resume=not args.no_resume, restart=args.restart)
    except (ConfigChanged, run_lock.RunFolderLocked) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except preemption.Preempted as e:
        print(f"stopped on request ({e}); last.pt saved, exit {preemption.REQUEUE_EXIT_CODE} asks for a requeue",
              file=sys.stderr)
        return preemption.REQUEUE_EXIT_CODE
    summary = {k: {m: v.get(m) for m in ("top1", "top5", "mAP")} for k, v in metrics.get("downstream", {}).items()}
    print(json.dumps({"run": f"{cfg.rq}/{cfg.name}", "downstream": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
