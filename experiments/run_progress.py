"""Where a running run is, read from the tail of its log.jsonl: phase, step of total, last loss, ETA.

The launcher shows this for every running job in its status line, so a sweep is not silent for the
half hour a tiny run takes (the per-step bar is only in the job's own stderr log).
"""
from __future__ import annotations

import json
from pathlib import Path

TAIL_BYTES = 64 * 1024


def _tail_records(path: Path) -> list[dict]:
    """The JSON records of the last TAIL_BYTES of a log (a partial first line is dropped)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - TAIL_BYTES))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []
    if size > TAIL_BYTES:
        lines = lines[1:]
    out = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def _eta(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def progress(folder: Path, cfg) -> str | None:
    """'pretraining step 120/600, loss 3.120, ETA 8 min' or 'evaluation bind (2/6), epoch 40/100' for
    the run in `folder` with config `cfg`; None before its first log line."""
    recs = [r for r in _tail_records(Path(folder) / "log.jsonl") if isinstance(r.get("stage"), str)]
    if not recs:
        return None
    last = recs[-1]
    stage = last["stage"]
    if stage == "pretrain":
        steps = [r for r in recs if r.get("stage") == "pretrain" and "step" in r and "event" not in r
                 and isinstance(r.get("time"), (int, float))]
        if not steps:
            return "pretraining: starting"
        total = cfg.pretrain.total_steps
        cur = steps[-1]
        text = f"pretraining step {cur['step']}/{total}"
        if isinstance(cur.get("loss"), (int, float)):
            text += f", loss {cur['loss']:.3f}"
        first = steps[0]
        if cur["step"] > first["step"] and cur["time"] > first["time"]:
            rate = (cur["step"] - first["step"]) / (cur["time"] - first["time"])
            text += f", ETA {_eta(max(0, total - cur['step']) / rate)}"
        return text
    if stage.startswith("downstream:"):
        name = stage.split(":", 1)[1]
        names = [ev.name for ev in cfg.downstream]
        pos = f" ({names.index(name) + 1}/{len(names)})" if name in names else ""
        if last.get("event") == "result":
            return f"evaluation {name}{pos} done"
        ev = next((e for e in cfg.downstream if e.name == name), None)
        epoch = last.get("epoch")
        if ev is not None and isinstance(epoch, int):
            return f"evaluation {name}{pos}, epoch {epoch + 1}/{ev.epochs}"
        return f"evaluation {name}{pos}"
    return stage
