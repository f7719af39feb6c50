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

from common import paths
from common.fsutil import atomic_write_json
from experiments import distributed, logs, preemption, run_lock
from experiments.config import ConfigError, RunConfig, explain_config, load_config, save_config, to_dict
from experiments.run_folder import METRICS, PARTIAL, ConfigChanged, RunFolder


def execute(cfg: RunConfig, *, resume: bool = True, restart: bool = False) -> dict:
    """Run (or resume, or skip) one config and return its metrics dict. resume=False starts over:
    a previous run folder is moved aside (never deleted)."""
    folder = RunFolder.of(cfg)
    if resume and folder.is_complete():
        print(f"{folder.path} is complete with this config: skipped (--no-resume starts it over)", file=sys.stderr)
        return folder.metrics()
    env = distributed.setup()
    try:
        with contextlib.ExitStack() as stack:
            locked = None
            if env.rank == 0:  # one lock per run; the other ranks learn the outcome from rank 0
                try:
                    stack.enter_context(folder.lock())
                except run_lock.RunFolderLocked as e:
                    locked = e
            if distributed.any_flag(locked is not None):
                raise locked or run_lock.RunFolderLocked(f"{folder.path} is in use (rank 0 could not lock it)")
            if distributed.any_flag(env.rank == 0 and resume and folder.is_complete()):  # finished meanwhile
                return folder.metrics() if env.rank == 0 else {}
            return _execute_locked(cfg, folder, env, resume, restart)
    finally:
        distributed.cleanup()


def _execute_locked(cfg: RunConfig, folder: RunFolder, env, resume: bool, restart: bool) -> dict:
    # lazy: torch, the model and the data stack load only here, once the config is valid and the folder
    # ours, so `run.py` answers a config error, --print-config or a complete run in about a second
    from experiments.pretrain_reuse import reuse
    from experiments.stages import run_stages

    if env.rank == 0:
        folder.claim(restart=restart, fresh=not resume)
        save_config(cfg, folder.path / "config.yaml")
        source = reuse(paths.resolve(cfg.output_root), folder.path, to_dict(cfg))
        if source:
            print(f"{cfg.rq}/{cfg.name}: pretraining reused from {source} (same model, pretraining, data, "
                  "runtime and seed; runtime.reuse_pretraining=false repeats it)", file=sys.stderr, flush=True)
    distributed.barrier()
    metrics = run_stages(cfg, folder.path, folder.result_hash, env)
    if metrics is None:  # not rank 0: done after pretraining
        return {}
    atomic_write_json(folder.path / METRICS, metrics)
    (folder.path / PARTIAL).unlink(missing_ok=True)
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
