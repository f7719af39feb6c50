"""Fake run targets for the launcher tests (`--target tests.launcher_targets:<fn>`).

Same signature and result files as `experiments.run.execute(cfg, resume=True)` (metrics.json with
status complete and the config hash, so relaunches skip them), but no torch and seconds of work.
Every start appends a line to `<run>/starts.jsonl` (pid, code root, restart count, resumed step) so a
test can see where the job ran from and whether it resumed.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from common.fsutil import atomic_write_json
from experiments import distributed, preemption
from experiments.run_folder import result_hash, run_dir


def _note_start(cfg, **extra) -> Path:
    folder = run_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    import experiments

    rec = {"pid": os.getpid(), "code": str(Path(experiments.__file__).resolve().parents[1]), "cwd": os.getcwd(),
           "restart": int(os.environ.get("SLURM_RESTART_COUNT", "0")), "threads": os.environ.get("OMP_NUM_THREADS"),
           "avbert_root": os.environ.get("AVBERT_ROOT"), "time": time.time(), **extra}
    with open(folder / "starts.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")
    return folder


def starts(folder: Path) -> list[dict]:
    path = Path(folder) / "starts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _complete(cfg, **extra) -> dict:
    metrics = {"run": cfg.name, "rq": cfg.rq, "profile": cfg.profile, "seed": cfg.seed,
               "config_hash": result_hash(cfg), "status": "complete", "pretrain": None,
               "downstream": {"av": {"top1": 50.0, "top5": 90.0, "mAP": None}}, **extra}
    atomic_write_json(run_dir(cfg) / "metrics.json", metrics)
    return metrics


def quick(cfg, resume: bool = True) -> dict:
    _note_start(cfg)
    return _complete(cfg)


def failing(cfg, resume: bool = True) -> dict:
    _note_start(cfg)
    raise RuntimeError(f"boom in {cfg.name}")


def fail_if_named_bad(cfg, resume: bool = True) -> dict:
    if cfg.name.startswith("bad"):
        return failing(cfg, resume)
    return quick(cfg, resume)


def progress(cfg, resume: bool = True) -> dict:
    """`pretrain.steps_per_epoch` steps of FAKE_STEP_S seconds; state in checkpoints/last.json, saved every
    5 steps and by the registered saver (what submitit's checkpoint() calls); stops cleanly on request."""
    folder = run_dir(cfg)
    ckpt = folder / "checkpoints" / "last.json"
    start = json.loads(ckpt.read_text())["step"] if resume and ckpt.is_file() else 0
    _note_start(cfg, resumed_from=start)
    total, step_s = cfg.pretrain.steps_per_epoch, float(os.environ.get("FAKE_STEP_S", "0.2"))
    pos = {"step": start}

    def save() -> bool:
        atomic_write_json(ckpt, {"step": pos["step"]})
        return True

    preemption.register_saver(save)
    try:
        while pos["step"] < total:
            time.sleep(step_s)
            pos["step"] += 1
            if pos["step"] % 5 == 0:
                save()
            if preemption.stop_requested():
                save()
                raise preemption.Preempted(f"stop at step {pos['step']}")
    finally:
        preemption.unregister_saver()
    return _complete(cfg, steps=pos["step"], resumed_from=start)


def dist_probe(cfg, resume: bool = True) -> dict:
    """Every rank reports itself through a real collective; rank 0 writes the result."""
    env = distributed.setup()
    ranks = distributed.all_gather_object({"rank": env.rank, "local": env.local_rank, "pid": os.getpid(),
                                           "master": f"{env.master_addr}:{env.master_port}", "source": env.source})
    stop = distributed.any_flag(env.rank == 1)
    if env.rank == 0:
        _note_start(cfg)
        return _complete(cfg, ranks=ranks, world_size=env.world_size, any_flag=stop)
    return {"rank": env.rank}
