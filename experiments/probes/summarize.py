"""Margins of the pretrained-vs-random check over seeds: `python -m experiments.probes.summarize`.

Reads every complete run under <results>/probes/ whose evaluations come in `<x>_pre` / `<x>_rand` pairs
(experiments/probes/configs/pretraining_gain.yaml and its seeds) and prints, per pair, the top-1 (or
mAP) of both sides and the paired margin, mean +- std over the runs (one run per seed).
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from experiments import paths


def _metric(d: dict) -> float:
    return d["mAP"] if d.get("mAP") is not None else d["top1"]


def collect(root: Path) -> dict[str, list[tuple[int, float, float]]]:
    """{pair name: [(seed, pretrained, random), ...]} from the complete runs under root."""
    pairs: dict[str, list[tuple[int, float, float]]] = {}
    for f in sorted(root.glob("*/metrics.json")):
        m = json.loads(f.read_text())
        if m.get("status") != "complete":
            continue
        ds = m.get("downstream") or {}
        for name, d in ds.items():
            base = name.removesuffix("_pre")
            if base != name and f"{base}_rand" in ds:
                pairs.setdefault(base, []).append((int(m["seed"]), _metric(d), _metric(ds[f"{base}_rand"])))
    return pairs


def _ms(xs: list[float]) -> str:
    return f"{statistics.mean(xs):.1f} ± {statistics.stdev(xs):.1f}" if len(xs) > 1 else f"{xs[0]:.1f}"


def table(pairs: dict[str, list[tuple[int, float, float]]]) -> str:
    rows = ["| evaluation | seeds | pretrained | random | margin | smallest margin |", "|---|---|---|---|---|---|"]
    for name, runs in sorted(pairs.items()):
        pre, rnd = [r[1] for r in runs], [r[2] for r in runs]
        diff = [p - r for p, r in zip(pre, rnd)]
        seeds = ",".join(str(r[0]) for r in sorted(runs))
        rows.append(f"| {name} | {seeds} | {_ms(pre)} | {_ms(rnd)} | {_ms(diff)} | {min(diff):+.1f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.probes.summarize", description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=paths.repo_root() / "results", help="results root (default: results/)")
    args = ap.parse_args(argv)
    pairs = collect(args.results / "probes")
    if not pairs:
        print(f"no complete check runs under {args.results / 'probes'}; run "
              "experiments/probes/configs/pretraining_gain.yaml first (see its header)")
        return 1
    print(table(pairs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
