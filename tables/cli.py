"""The command line shared by make_table1.py and make_table2.py, and loading of the runs they use."""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import pandas as pd

from common.paths import repo_root
from tables.aggregate import check_seed_groups
from tables.results_io import ResultsError, RunRecord, eval_frame, scan
from tables.spec import PROFILES

FORMATS = ("md", "tex", "csv", "png")


def runs_parser(description: str, whose: str) -> argparse.ArgumentParser:
    """The options of every script that reads runs: --results and --profile (`whose`: what its runs do)."""
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=repo_root() / "results", help="results root (default: results/)")
    ap.add_argument("--profile", choices=PROFILES, default="tiny",
                    help=f"whose runs {whose} (default: tiny; 'any' takes every profile)")
    return ap


def parser(description: str) -> argparse.ArgumentParser:
    ap = runs_parser(description, "fill the 'ours' columns")
    ap.add_argument("--out", type=Path, default=repo_root() / "results" / "tables",
                    help="output folder (default: results/tables/)")
    ap.add_argument("--format", default=",".join(FORMATS), help="comma-separated subset of md,tex,csv,png")
    ap.add_argument("--quiet", action="store_true", help="do not print the Markdown")
    return ap


def parse_formats(text: str) -> set[str]:
    formats = {f.strip() for f in text.split(",") if f.strip()}
    bad = formats - set(FORMATS)
    if bad:
        raise SystemExit(f"--format: unknown {sorted(bad)}; choose from {','.join(FORMATS)}")
    return formats


def missing_results(results: Path) -> str | None:
    """The error for a results root that does not exist (None when it does)."""
    if Path(results).is_dir():
        return None
    return (f"--results {results} does not exist (or is not a folder); pass the results root that holds "
            "<rq>/<run>/ folders")


def load_runs(results: Path, rq_names: dict[str, set[str]], profile: str
              ) -> tuple[list[RunRecord], pd.DataFrame, list[str]]:
    """Validated records of the given rqs/run names, filtered to `profile`, their eval DataFrame, and
    notes on what was left out (other profiles, folders that match no row). A results root that does
    not exist is an error (ResultsError); one without any matching run warns, naming what fills it."""
    if (missing := missing_results(results)) is not None:
        raise ResultsError(missing)
    records, notes = [], []
    for rq, names in rq_names.items():
        recs, ignored = scan(results, rq, names)
        if ignored:
            notes.append(f"ignored folders in {rq}/ (no table row of that name): {', '.join(ignored)}")
        records += recs
    check_seed_groups(records)
    records, note = keep_profile(records, profile)
    if not records:
        flag = "" if profile in ("tiny", "any") else f" --profile {profile}"
        print(f"warning: no runs of profile {profile} under {results}; every cell is missing. Fill them with: "
              + "; ".join(f"python experiments/{rq}/launch.py{flag}" for rq in rq_names), file=sys.stderr)
    return records, eval_frame(records), notes + ([note] if note else [])


def keep_profile(records: list[RunRecord], profile: str) -> tuple[list[RunRecord], str | None]:
    """The records of `profile` ('any': all), and a note naming what was left out (None if nothing)."""
    if profile == "any":
        return records, None
    other = Counter(r.profile for r in records if r.profile != profile)
    note = ("left out runs of other profiles (" + ", ".join(f"{p}: {n}" for p, n in sorted(other.items()))
            + "); pass --profile to use them") if other else None
    return [r for r in records if r.profile == profile], note


def run_main(main) -> None:
    """`python tables/make_*.py`: exit with main()'s code; a malformed or inconsistent result is one
    line on stderr and exit code 2, not a traceback."""
    try:
        sys.exit(main())
    except ResultsError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
