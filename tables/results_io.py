"""Read run folders `results/<rq>/<run>/{metrics.json,config.yaml}` into validated records and one
DataFrame (one row per run x downstream eval), so table scripts never parse files themselves and a
malformed or inconsistent result is refused with a message naming the file."""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

SEED_SUFFIX = re.compile(r"^(?P<base>.+?)_seed(?P<seed>\d+)$")
_MISSING = object()


class ResultsError(ValueError):
    """A results file is malformed or inconsistent with its folder; the message names the file."""


class ConfigMismatch(ResultsError):
    """A run's config does not match the table row its folder name files it under."""


def base_name(folder_name: str) -> str:
    """`part_seed2` -> `part`: extra seeds of one row live beside it as `<run>_seed<k>`."""
    m = SEED_SUFFIX.match(folder_name)
    return m.group("base") if m else folder_name


def get_path(d: Any, dotted: str, default: Any = _MISSING) -> Any:
    """`get_path(cfg, "model.sharing")`; raises KeyError unless a default is given."""
    cur = d
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            if default is _MISSING:
                raise KeyError(dotted)
            return default
        cur = cur[part]
    return cur


@dataclass
class RunRecord:
    """One run folder. `metrics` is None while the run is unfinished (no metrics.json yet)."""

    folder: Path
    rq: str
    name: str
    config: dict
    metrics: dict | None

    @property
    def base(self) -> str:
        return base_name(self.name)

    @property
    def complete(self) -> bool:
        return bool(self.metrics) and self.metrics.get("status") == "complete"

    @property
    def profile(self) -> str:
        return (self.metrics or {}).get("profile") or self.config.get("profile", "?")

    @property
    def seed(self) -> int:
        return int((self.metrics or {}).get("seed", self.config.get("seed", 0)))

    @property
    def rel(self) -> str:
        """`<rq>/<run>`: the folder relative to the results directory, as tables show it."""
        return f"{self.rq}/{self.name}"


# ---------------------------------------------------------------- validation
def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _need(cond: bool, path: Path, msg: str) -> None:
    if not cond:
        raise ResultsError(f"{path}: {msg}")


def validate_metrics(data: Any, path: Path) -> dict:
    """Check metrics.json against the contract's schema; return it unchanged."""
    _need(isinstance(data, dict), path, "top level must be a JSON object")
    for key, typ in (("run", str), ("rq", str), ("profile", str), ("status", str)):
        _need(isinstance(data.get(key), typ), path, f"'{key}' must be a string, got {data.get(key)!r}")
    _need(isinstance(data.get("seed"), int) and not isinstance(data.get("seed"), bool), path,
          f"'seed' must be an integer, got {data.get('seed')!r}")
    params = data.get("params")
    _need(isinstance(params, dict), path, "'params' must be an object")
    for key in ("transformer", "visual_cnn", "audio_cnn", "total"):
        v = params.get(key)
        _need(isinstance(v, int) and not isinstance(v, bool) and v >= 0, path,
              f"'params.{key}' must be a non-negative integer, got {v!r}")
    for key in ("wall_time_s", "peak_memory_mb"):
        v = data.get(key)
        _need(v is None or _is_num(v), path, f"'{key}' must be a number or null, got {v!r}")
    _need(data.get("pretrain") is None or isinstance(data.get("pretrain"), dict), path,
          "'pretrain' must be an object or null")
    evals = data.get("downstream")
    _need(isinstance(evals, dict), path, "'downstream' must be an object of evals")
    for name, ev in evals.items():
        where = f"downstream.{name}"
        _need(isinstance(ev, dict), path, f"'{where}' must be an object")
        for key in ("task", "model", "init"):
            _need(isinstance(ev.get(key), str), path, f"'{where}.{key}' must be a string, got {ev.get(key)!r}")
        mods = ev.get("modalities")
        _need(isinstance(mods, list) and mods and all(m in ("visual", "audio") for m in mods), path,
              f"'{where}.modalities' must be a non-empty list of 'visual'/'audio', got {mods!r}")
        split = ev.get("split", 1)
        _need(isinstance(split, int) and not isinstance(split, bool), path, f"'{where}.split' must be an integer")
        for key in ("top1", "top5", "mAP"):
            v = ev.get(key)
            _need(v is None or (_is_num(v) and 0.0 <= v <= 100.0), path,
                  f"'{where}.{key}' must be a percentage in [0, 100] or null, got {v!r}")
    return data


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ResultsError(f"{path}: cannot read YAML ({e})") from e
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: expected a mapping (a resolved RunConfig)")
    return data


def load_run(folder: Path, rq: str) -> RunRecord | None:
    """Read one run folder; None when it holds neither config.yaml nor metrics.json."""
    cfg_path, met_path = folder / "config.yaml", folder / "metrics.json"
    if not cfg_path.is_file():
        if met_path.is_file():
            raise ResultsError(f"{folder}: metrics.json without config.yaml; cannot check which row it belongs to")
        return None
    config = _read_yaml(cfg_path)
    for key, want in (("name", folder.name), ("rq", rq)):
        _need(config.get(key) == want, cfg_path, f"'{key}' is {config.get(key)!r} but the folder says {want!r}")
    metrics = None
    if met_path.is_file():
        try:
            raw = json.loads(met_path.read_text())
        except (OSError, ValueError) as e:
            raise ResultsError(f"{met_path}: not valid JSON ({e})") from e
        metrics = validate_metrics(raw, met_path)
        for key, want, who in (("run", folder.name, "the folder"), ("rq", rq, "the folder"),
                               ("seed", config.get("seed", 0), "config.yaml"),
                               ("profile", config.get("profile"), "config.yaml")):
            _need(metrics.get(key) == want, met_path, f"'{key}' is {metrics.get(key)!r} but {who} says {want!r}")
    return RunRecord(folder=folder, rq=rq, name=folder.name, config=config, metrics=metrics)


def scan(results_dir: Path, rq: str, names: set[str] | None = None) -> tuple[list[RunRecord], list[str]]:
    """Run records of `results/<rq>/`, keeping folders whose base name is in `names` (all if None).
    Returns (records, ignored folder names) so tables can say what they did not use."""
    root = Path(results_dir) / rq
    records, ignored = [], []
    if not root.is_dir():
        return records, ignored
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if names is not None and base_name(folder.name) not in names:
            ignored.append(folder.name)
            continue
        rec = load_run(folder, rq)
        if rec is not None:
            records.append(rec)
    return records, ignored


# ---------------------------------------------------------------- DataFrame
EVAL_COLUMNS = ["rq", "run", "base", "folder", "profile", "seed", "complete", "eval", "task", "model", "init",
                "protocol", "modalities", "split", "top1", "top5", "mAP", "num_test", "num_classes", "params_transformer",
                "params_total", "peak_memory_mb", "wall_time_s"]


def modality_key(mods: list[str] | tuple[str, ...]) -> str:
    """Order-free key for a modality list: ['visual', 'audio'] -> 'audio+visual'."""
    return "+".join(sorted(mods))


def eval_frame(records: list[RunRecord]) -> pd.DataFrame:
    """One row per (run, downstream eval); a run without metrics.json gives one row with eval=None."""
    rows = []
    for rec in records:
        m = rec.metrics or {}
        params = m.get("params") or {}
        base = {"rq": rec.rq, "run": rec.name, "base": rec.base, "folder": rec.rel, "profile": rec.profile,
                "seed": rec.seed, "complete": rec.complete, "params_transformer": params.get("transformer"),
                "params_total": params.get("total"), "peak_memory_mb": m.get("peak_memory_mb"),
                "wall_time_s": m.get("wall_time_s")}
        evals = (m.get("downstream") or {}) if rec.complete else {}
        auto_init = "pretrained" if get_path(rec.config, "pretrain.enabled", True) else "random"
        if not evals:
            rows.append({**base, "eval": None})
        for name, ev in evals.items():
            rows.append({**base, "eval": name, "task": ev["task"], "model": ev["model"],
                         "init": auto_init if ev["init"] == "auto" else ev["init"],
                         "protocol": ev.get("protocol"), "modalities": modality_key(ev["modalities"]),
                         "split": ev.get("split", 1), "top1": ev.get("top1"), "top5": ev.get("top5"),
                         "mAP": ev.get("mAP"), "num_test": ev.get("num_test"), "num_classes": ev.get("num_classes")})
    frame = pd.DataFrame(rows, columns=EVAL_COLUMNS)
    for col in ("top1", "top5", "mAP", "num_test", "num_classes", "peak_memory_mb", "wall_time_s"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    return frame
