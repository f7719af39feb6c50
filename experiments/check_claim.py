"""Rerun one seed of one quoted claim on this machine and say whether it reproduces within the quoted
uncertainty.

    python experiments/check_claim.py --claim binding [--seed 0] [--claims results/tiny/claims.json]
                                      [--out DIR] [--dry-run]

Why: single tiny runs are deterministic on one machine but differ in their last digits between
machines (floating-point kernels), so a quoted number is only worth its interval. This reruns both arms
of the claim for one seed (`experiments/run.py`, into --out, never into results/) and compares
- each arm with the quoted value of the same seed (the machine-to-machine difference, reported), and
- the new paired difference A - B with the 95 % prediction interval of one more seed from the quoted
  seeds, mean ± t(0.975, n-1) · sd · sqrt(1 + 1/n): the check passes (exit 0) when it lies inside,
  fails (exit 1) when outside. Bad arguments exit 2.
Two runs of the tiny profile take about 6 minutes on 2 cores (the random-init arm is the short one).
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.paths import repo_root  # noqa: E402
from experiments.run_folder import METRICS  # noqa: E402
from tables.stats import mean_ci, t975  # noqa: E402

DEFAULT_CLAIMS = "results/tiny/claims.json"

Runner = Callable[[list[str], Path], dict]  # (run.py argv, its metrics.json path) -> the metrics


def pick_claim(rows: list[dict], key: str) -> dict:
    """A claim by 1-based number or by a case-insensitive piece of its text that names exactly one."""
    if key.isdigit():
        if not 1 <= int(key) <= len(rows):
            raise ValueError(f"--claim {key}: there are {len(rows)} claims (1..{len(rows)})")
        return rows[int(key) - 1]
    hits = [r for r in rows if key.lower() in r["claim"].lower()]
    if len(hits) != 1:
        listing = "\n".join(f"  {i}. {r['claim']}" for i, r in enumerate(rows, 1))
        raise ValueError(f"--claim {key!r} matches {len(hits)} claims; pass a number or a longer text:\n{listing}")
    return hits[0]


def prediction_interval(diffs: list[float]) -> tuple[float, float]:
    """95 % interval for one new seed's difference: mean ± t(0.975, n-1) · sd · sqrt(1 + 1/n)."""
    st = mean_ci(diffs)
    if st.std is None:
        raise ValueError(f"a prediction interval needs at least 2 quoted seeds, the claim has {len(diffs)}")
    half = t975(st.n - 1) * st.std * math.sqrt(1 + 1 / st.n)
    return st.mean - half, st.mean + half


def run_argv(row: dict, arm: str, seed: int, out: Path) -> tuple[list[str], Path]:
    """run.py command line of one arm ('a' or 'b') at `seed`, written under `out` (launcher naming), and
    the metrics.json it writes."""
    base = row["run_a"] if arm == "a" else row["run_b"]
    config = Path("experiments") / row["rq"] / "configs" / f"{base}.yaml"
    name = base if seed == 0 else f"{base}_seed{seed}"
    profile = (row.get("profile") or "tiny").split()[0]
    argv = [sys.executable, "experiments/run.py", "--config", str(config), "--profile", profile,
            f"seed={seed}", f"name={name}", f"output_root={out}"]
    return argv, out / row["rq"] / name / METRICS


def run_subprocess(argv: list[str], metrics: Path) -> dict:
    """Run one arm with run.py (progress on this terminal); its metrics.json."""
    proc = subprocess.run(argv, cwd=repo_root(), stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}")
    return json.loads(metrics.read_text())


def arm_value(metrics: dict, eval_name: str, metric: str) -> float:
    try:
        value = metrics["downstream"][eval_name][metric]
    except KeyError as e:
        raise RuntimeError(f"the rerun has no {eval_name} {metric} (missing {e}); was the config changed?") from None
    if value is None:
        raise RuntimeError(f"the rerun's {eval_name} {metric} is empty")
    return float(value)


def check(row: dict, seed: int, out: Path, runner: Runner = run_subprocess) -> tuple[bool, list[str]]:
    """Rerun both arms at `seed`; (within the prediction interval, report lines)."""
    low, high = prediction_interval(row["diffs"])
    quoted = dict(zip(row["seeds"], zip(row["values_a"], row["values_b"])))
    new = {}
    for arm, eval_name in (("a", row["eval"]), ("b", row.get("eval_b") or row["eval"])):
        argv, metrics = run_argv(row, arm, seed, out)
        print(f"running: {' '.join(argv[1:])}", flush=True)
        new[arm] = arm_value(runner(argv, metrics), eval_name, row["metric"])
    diff = new["a"] - new["b"]
    lines = [f"claim: {row['claim']} ({row['rq']}: {row['run_a']} - {row['run_b']}, {row['eval']} {row['metric']})"]
    if seed in quoted:
        qa, qb = quoted[seed]
        lines.append(f"seed {seed}: {row['run_a']} {new['a']:.2f} (quoted {qa:.2f}, {new['a'] - qa:+.2f}), "
                     f"{row['run_b']} {new['b']:.2f} (quoted {qb:.2f}, {new['b'] - qb:+.2f})")
    else:
        lines.append(f"seed {seed} (not among the quoted seeds {row['seeds']}): {row['run_a']} {new['a']:.2f}, "
                     f"{row['run_b']} {new['b']:.2f}")
    ok = low <= diff <= high
    lines.append(f"A - B = {diff:+.2f}; quoted {row['diff_mean']:+.2f} [{row['ci95_low']:+.2f}, {row['ci95_high']:+.2f}] "
                 f"over {row['n_seeds']} seeds, 95 % interval for one more seed [{low:+.2f}, {high:+.2f}]: "
                 + ("reproduces" if ok else "OUTSIDE the interval"))
    return ok, lines


def main(argv: list[str] | None = None, runner: Runner = run_subprocess) -> int:
    ap = argparse.ArgumentParser(prog="python experiments/check_claim.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--claim", required=True, help="claim number (1-based, as listed) or a piece of its text")
    ap.add_argument("--seed", type=int, default=None, help="seed to rerun (default: the claim's first quoted seed)")
    ap.add_argument("--claims", type=Path, default=Path(DEFAULT_CLAIMS), help=f"claims file (default {DEFAULT_CLAIMS})")
    ap.add_argument("--out", type=Path, default=Path("results/checks"),
                    help="where the reruns go (default results/checks; never the quoted run folders)")
    ap.add_argument("--dry-run", action="store_true", help="print the two run.py commands and the interval; run nothing")
    args = ap.parse_args(argv)
    path = args.claims if args.claims.is_absolute() else repo_root() / args.claims
    out = (args.out if args.out.is_absolute() else repo_root() / args.out).resolve()
    try:
        rows = json.loads(path.read_text())
        row = pick_claim(rows, args.claim)
        low, high = prediction_interval(row["diffs"])
    except (OSError, json.JSONDecodeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (KeyError, TypeError, AttributeError) as e:
        print(f"error: {path} is not a claims file of `python tables/make_claims.py` ({type(e).__name__}: {e})",
              file=sys.stderr)
        return 2
    seed = row["seeds"][0] if args.seed is None else args.seed
    if seed < 0:
        print(f"error: --seed {seed}: seeds are >= 0", file=sys.stderr)
        return 2
    if out == (repo_root() / "results").resolve():
        print("error: --out results/ would rerun into the quoted run folders; pick another folder", file=sys.stderr)
        return 2
    if args.dry_run:
        for arm in ("a", "b"):
            print(" ".join(run_argv(row, arm, seed, out)[0][1:]))
        print(f"pass if A - B lies in [{low:+.2f}, {high:+.2f}]")
        return 0
    try:
        ok, lines = check(row, seed, out, runner)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
