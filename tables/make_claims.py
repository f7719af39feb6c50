"""Verdicts on the paper's claims (tables/claims_spec.py): for each claim, run A minus run B on one eval,
paired over seeds, mean with a t-based 95 % CI, n seeds, n test clips, and reproduced / contradicted /
inconclusive / missing. Reads the same validated run folders as the tables (config checked against the
table row), so a claim and its table cells always come from the same numbers.

    python tables/make_claims.py [--results results/] [--profile tiny|paper|smoke|any]
                                 [--out results/<profile>/]

Writes claims.json and claims.md into --out (default results/<profile>/).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:  # `python tables/make_claims.py` from the repo root (or anywhere)
    sys.path.insert(0, _ROOT)

from common.fsutil import atomic_write_text  # noqa: E402
from common.paths import repo_root  # noqa: E402
from tables import claims_spec, make_table1  # noqa: E402
from tables.aggregate import check_row_config, check_seed_groups  # noqa: E402
from tables.claims import VERDICTS, judge_all  # noqa: E402
from tables.cli import keep_profile, missing_results, run_main, runs_parser  # noqa: E402
from tables.results_io import RunRecord, eval_frame, scan  # noqa: E402
from tables.spec import RowSpec  # noqa: E402

RULES = ("Verdict rules (A − B paired over seeds, percentage points; 95 % CI = mean ± t(0.975, n−1)·sd/√n): "
         "“A > B”: reproduced if the CI's low end > 0, contradicted if its high end < 0; "
         "“A within m points of B”: reproduced if low > −m, contradicted if high < −m; "
         "otherwise, or with fewer than 2 paired seeds, inconclusive; missing = an arm has no result "
         "(commands below).")


def parser() -> argparse.ArgumentParser:
    ap = runs_parser(__doc__, "to judge")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: results/<profile>/)")
    return ap


def table_rows() -> dict[tuple[str, str], RowSpec]:
    """(rq, run) -> its Table 1 row, whose `expect` a run's config must satisfy (as in the tables)."""
    rows = (make_table1.fusion_rows() + make_table1.sharing_rows() + make_table1.negatives_rows()
            + make_table1.end_to_end_rows())
    out: dict[tuple[str, str], RowSpec] = {}
    for spec in rows:
        for run in spec.runs:
            out.setdefault((spec.rq, run), spec)
    return out


def load(results: Path, claims: list, profile: str) -> tuple[list[RunRecord], list[str]]:
    """Validated records of the claims' runs (seed groups and row configs checked), kept to `profile`."""
    names: dict[str, set[str]] = {}
    for c in claims:
        names.setdefault(c.rq, set()).update((c.run_a, c.run_b))
    records = []
    for rq, runs in names.items():
        records += scan(results, rq, runs)[0]
    check_seed_groups(records)
    rows = table_rows()
    for rec in records:
        if (rec.rq, rec.base) in rows:
            check_row_config(rec, rows[(rec.rq, rec.base)])
    records, note = keep_profile(records, profile)
    return records, [note] if note else []


def fmt_diff(row: dict) -> str:
    if row["diff_mean"] is None:
        return "-"
    text = f"{row['diff_mean']:+.2f}"
    return text + (f" [{row['ci95_low']:+.2f}, {row['ci95_high']:+.2f}]" if row["ci95_low"] is not None
                   else " [no CI]")


def claims_markdown(rows: list[dict], profile: str, notes: list[str]) -> str:
    lines = [f"## Claims of the paper, checked on our runs ({profile} profile)", "", RULES, "",
             "| claim | A − B mean [95 % CI] | n seeds | n test clips | verdict |", "|:---|---:|---:|---:|:---|"]
    for r in rows:
        what = f"{r['claim']} (`{r['rq']}`: {r['run_a']} − {r['run_b']}, {r['eval']} {r['metric']})"
        lines.append(f"| {what} | {fmt_diff(r)} | {r['n_seeds']} | {r['n_test'] if r['n_test'] is not None else '-'} "
                     f"| {r['verdict']} |")
    cmds = list(dict.fromkeys(c for r in rows for c in r["commands"]))
    if cmds:
        lines += ["", "Missing runs and the commands that fill them:", "", *[f"- `{c}`" for c in cmds]]
    row_notes = [f"{r['claim']}: {r['note']}" for r in rows if r["note"]]
    if row_notes or notes:
        lines += ["", "Notes:", "", *[f"- {n}" for n in row_notes + notes]]
    return "\n".join(lines) + "\n"


def summary(rows: list[dict]) -> str:
    counts = Counter(r["verdict"] for r in rows)
    head = "claims: " + ", ".join(f"{counts[v]} {v}" for v in VERDICTS if counts[v])
    body = [f"  {r['verdict']:<13} {fmt_diff(r):<26} n={r['n_seeds']}  {r['claim']}" for r in rows]
    missing = [f"  missing: {r['claim']}: " + "; ".join(f"`{c}`" for c in r["commands"])
               for r in rows if r["verdict"] == "missing"]
    return "\n".join([head, *body, *missing])


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if (missing := missing_results(args.results)) is not None:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    claims = claims_spec.CLAIMS
    claims_spec.check(claims)
    records, notes = load(args.results, claims, args.profile)
    rows = judge_all(claims, eval_frame(records), records, args.profile)
    out = args.out or repo_root() / "results" / args.profile
    atomic_write_text(out / "claims.json", json.dumps(rows, indent=2) + "\n")
    atomic_write_text(out / "claims.md", claims_markdown(rows, args.profile, notes))
    print(summary(rows))
    if not records:
        print(f"warning: no runs of the claims (profile {args.profile}) under {args.results}; every claim is "
              "missing", file=sys.stderr)
    print(f"wrote {out / 'claims.json'} and {out / 'claims.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_main(main)
