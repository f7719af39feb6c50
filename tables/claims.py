"""Judge each claim from the validated eval frame: pair the two runs seed by seed (so seed-to-seed
noise shared by both arms cancels), take the mean difference A - B with a t-based 95 % CI, and give a
verdict by the claim's rule; an arm without results is `missing`, with the command that fills it."""
from __future__ import annotations

import pandas as pd

from tables.claims_spec import ClaimSpec
from tables.results_io import ResultsError, RunRecord
from tables.spec import fill_command
from tables.stats import mean_ci

VERDICTS = ("reproduced", "contradicted", "inconclusive", "missing")


def verdict(low: float | None, high: float | None, threshold: float) -> str:
    """The claim says A - B > threshold: reproduced if the whole CI is above it, contradicted if the whole
    CI is below it, inconclusive otherwise (or when there is no CI)."""
    if low is None or high is None:
        return "inconclusive"
    if low > threshold:
        return "reproduced"
    if high < threshold:
        return "contradicted"
    return "inconclusive"


def arm_values(frame: pd.DataFrame, rq: str, run: str, eval_name: str, metric: str) -> pd.DataFrame:
    """Rows (seed, value, num_test, folder, profile) of one arm: complete runs' eval `eval_name` with a
    value; one row per seed (two profiles' runs of one seed under --profile any are refused)."""
    sel = frame[(frame["rq"] == rq) & (frame["base"] == run) & frame["complete"] & (frame["eval"] == eval_name)]
    sel = sel[sel[metric].notna()]
    dup = sel[sel["seed"].duplicated(keep=False)]
    if not dup.empty:
        raise ResultsError(f"{', '.join(sorted(dup['folder']))}: several runs of {rq}/{run} have seed "
                           f"{int(dup['seed'].iloc[0])} (profiles {sorted(set(dup['profile']))}); pass --profile")
    return pd.DataFrame({"seed": sel["seed"].astype(int), "value": sel[metric].astype(float),
                         "num_test": sel["num_test"], "folder": sel["folder"], "profile": sel["profile"]})


def _arm_gap(records: list[RunRecord], rq: str, run: str, eval_name: str, metric: str) -> str:
    """Why an arm has no value: no folder, unfinished, or finished without the eval."""
    recs = [r for r in records if r.rq == rq and r.base == run]
    if not recs:
        return f"{rq}/{run}: no run folder"
    if not any(r.complete for r in recs):
        return f"{rq}/{run}: not finished (no complete metrics.json; re-launching resumes it)"
    return (f"{rq}/{run}: no eval '{eval_name}' with a {metric} value in "
            f"{', '.join(sorted(r.rel for r in recs if r.complete))} (add the eval to the run's config; a changed "
            "config needs a new run name or --restart)")


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def judge(spec: ClaimSpec, frame: pd.DataFrame, records: list[RunRecord], profile: str) -> dict:
    """One claims.json row: paired seeds, per-seed values and differences, mean, CI, n, verdict."""
    row = {"claim": spec.claim, "rq": spec.rq, "run_a": spec.run_a, "run_b": spec.run_b, "eval": spec.eval,
           "eval_b": spec.eval_of_b, "metric": spec.metric, "kind": spec.kind, "margin": spec.margin,
           "rule": spec.rule, "diff_mean": None, "ci95_low": None, "ci95_high": None, "ci95_half": None,
           "n_seeds": 0, "n_test": None, "seeds": [], "values_a": [], "values_b": [], "diffs": [],
           "verdict": "missing", "note": "", "commands": [], "folders_a": [], "folders_b": [], "profile": ""}
    arms = [(spec.run_a, spec.eval, arm_values(frame, spec.rq, spec.run_a, spec.eval, spec.metric)),
            (spec.run_b, spec.eval_of_b, arm_values(frame, spec.rq, spec.run_b, spec.eval_of_b, spec.metric))]
    gaps = [(run, _arm_gap(records, spec.rq, run, ev, spec.metric)) for run, ev, vals in arms if vals.empty]
    if gaps:
        row["note"] = "; ".join(g for _, g in gaps)
        row["commands"] = [fill_command(spec.rq, run, profile) for run, _ in gaps]
        return row
    a, b = (vals.set_index("seed") for _, _, vals in arms)
    seeds = sorted(set(a.index) & set(b.index))
    pa, pb = a.loc[seeds], b.loc[seeds]
    diffs = [float(x - y) for x, y in zip(pa["value"], pb["value"])]
    tests = pd.concat([pa["num_test"], pb["num_test"]]).dropna()
    stats = mean_ci(diffs)
    row.update({"seeds": [int(s) for s in seeds], "values_a": [_r(v) for v in pa["value"]],
                "values_b": [_r(v) for v in pb["value"]], "diffs": [_r(d) for d in diffs], "n_seeds": len(seeds),
                "n_test": int(tests.min()) if len(tests) else None, "diff_mean": _r(stats.mean),
                "ci95_low": _r(stats.low), "ci95_high": _r(stats.high), "ci95_half": _r(stats.half),
                "folders_a": sorted(pa["folder"]), "folders_b": sorted(pb["folder"]),
                "profile": " ".join(sorted(set(pa["profile"]) | set(pb["profile"]))),
                "verdict": verdict(stats.low, stats.high, spec.threshold)})
    notes = []
    unpaired = sorted(set(a.index) ^ set(b.index))
    if unpaired:
        notes.append(f"seeds {unpaired} have only one arm and are left out of the pairing")
    if len(seeds) < 2:
        both = fill_command(spec.rq, f"{spec.run_a},{spec.run_b}", profile)
        notes.append(f"{len(seeds)} paired seed(s): no confidence interval from fewer than 2 "
                     f"(more seeds: `{both} --seeds 0,1,2`)")
    row["note"] = "; ".join(notes)
    return row


def judge_all(claims: list[ClaimSpec], frame: pd.DataFrame, records: list[RunRecord], profile: str) -> list[dict]:
    return [judge(c, frame, records, profile) for c in claims]
