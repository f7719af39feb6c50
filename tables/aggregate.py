"""Fill table cells from run records: refuse runs whose config does not match their row, group seeds
(same row, same config apart from seed) and aggregate them to mean, std and t-based 95 % CI; for
split/fold tables, average seeds within a split first, then aggregate over splits."""
from __future__ import annotations

import copy
from dataclasses import dataclass
import pandas as pd

from tables.results_io import ConfigMismatch, ResultsError, RunRecord, get_path
from tables.spec import MetricCol, RowSpec, RunCol
from tables.stats import mean_ci

# Keys that may differ between seeds of one row: experiments.config.NON_RESULT_KEYS (mirrored, tables do not
# import experiments) + name and seed.
SEED_FREE_KEYS = ("name", "seed", "output_root", "runtime.log_every", "runtime.reuse_pretraining",
                  "runtime.reuse_evaluations", "data.num_workers", "data.normalize_video", "data.decode_cache")


@dataclass
class Cell:
    """One 'ours' cell. status: ok | missing | incomplete | no_eval | na."""

    status: str = "missing"
    mean: float | None = None
    std: float | None = None
    ci95: float | None = None  # half-width of the t-based 95 % CI (None when n < 2)
    n: int = 0  # values aggregated: seeds, or splits when the row averages over splits
    n_seeds: int = 0
    splits: tuple[int, ...] = ()
    folders: tuple[str, ...] = ()
    profiles: tuple[str, ...] = ()
    detail: str = ""
    n_test: tuple[int, ...] = ()  # distinct test-clip counts of the evals aggregated
    classes: tuple[int, ...] = ()  # distinct class counts of their tasks (chance = 1 / classes)


def _allowed(want) -> tuple:
    return want if isinstance(want, tuple) else (want,)


def check_row_config(rec: RunRecord, spec: RowSpec) -> None:
    """Raise ConfigMismatch when `rec` sits in a row's folder but its config says otherwise."""
    for key, want in spec.expect.items():
        if isinstance(want, dict):
            if rec.base not in want:
                continue
            want = want[rec.base]
        found = get_path(rec.config, key, None)
        if found not in _allowed(want):
            expected = " or ".join(repr(w) for w in _allowed(want))
            raise ConfigMismatch(
                f"{rec.folder / 'config.yaml'}: this run is filed under row '{spec.key}' of {spec.rq} "
                f"(folder name '{rec.name}') but its config has {key} = {found!r}, expected {expected}. "
                "Rename the folder to the row it belongs to, or re-run it with the row's config.")


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def comparable_config(config: dict) -> dict:
    """The config minus what may differ between seeds of one row, flattened to dotted keys."""
    flat = _flatten(copy.deepcopy(config))
    return {k: v for k, v in flat.items() if k not in SEED_FREE_KEYS}


def check_seed_groups(records: list[RunRecord]) -> None:
    """Runs of one row (same rq, run name without `_seed<k>`, profile) must share their config apart
    from the seed and must not repeat a seed; otherwise averaging them would mix experiments."""
    groups: dict[tuple, list[RunRecord]] = {}
    for rec in records:
        groups.setdefault((rec.rq, rec.base, rec.profile), []).append(rec)
    for (rq, base, profile), recs in groups.items():
        seen: dict[int, RunRecord] = {}
        for rec in recs:
            if rec.seed in seen:
                raise ResultsError(f"{rec.folder} and {seen[rec.seed].folder}: both are seed {rec.seed} of row "
                                   f"'{base}' ({rq}, profile {profile}); one would be counted twice")
            seen[rec.seed] = rec
        ref = recs[0]
        ref_cfg = comparable_config(ref.config)
        for rec in recs[1:]:
            cfg = comparable_config(rec.config)
            diff = sorted(k for k in set(ref_cfg) | set(cfg) if ref_cfg.get(k) != cfg.get(k))
            if diff:
                shown = ", ".join(f"{k}: {ref_cfg.get(k)!r} vs {cfg.get(k)!r}" for k in diff[:5])
                raise ResultsError(
                    f"{rec.folder / 'config.yaml'} and {ref.folder / 'config.yaml'} are seeds of row '{base}' "
                    f"({rq}) but their configs differ beyond the seed ({shown}{', ...' if len(diff) > 5 else ''}). "
                    "Give the variant its own run name.")


def _row_records(records: list[RunRecord], spec: RowSpec) -> list[RunRecord]:
    return [r for r in records if r.rq == spec.rq and r.base in spec.runs]


def match_evals(frame: pd.DataFrame, spec: RowSpec, col: MetricCol) -> pd.DataFrame:
    """Eval rows of the row's runs whose fields (task, model, init, modalities, split ...) match."""
    sel = frame[(frame["rq"] == spec.rq) & frame["base"].isin(spec.runs) & frame["complete"] & frame["eval"].notna()]
    for key, want in {**spec.select, **col.select}.items():
        sel = sel[sel[key].isin(_allowed(want))]
    dup = sel.groupby(["folder", "split"]).size()
    if (dup > 1).any():
        folder, split = dup[dup > 1].index[0]
        names = ", ".join(sel[(sel["folder"] == folder) & (sel["split"] == split)]["eval"])
        raise ResultsError(f"{folder}/metrics.json: evals {names} all match row '{spec.key}' column "
                           f"'{col.label}' ({ {**spec.select, **col.select} }); cannot tell which to use")
    return sel


def _mean_std_ci(values: list[float]) -> tuple[float, float | None, float | None]:
    m = mean_ci(values)
    return m.mean, m.std, m.half


def _empty_cell(records: list[RunRecord], spec: RowSpec, col: MetricCol) -> Cell:
    recs = _row_records(records, spec)
    folders = tuple(sorted(r.rel for r in recs))
    if not recs:
        return Cell("missing")
    if any(r.complete for r in recs):
        want = {**spec.select, **col.select}
        return Cell("no_eval", folders=folders,
                    detail=f"no eval with {want} and a {col.metric} value in {', '.join(folders)}")
    return Cell("incomplete", folders=folders, detail="no metrics.json yet (running, or stopped: re-launch resumes)")


def metric_cell(frame: pd.DataFrame, records: list[RunRecord], spec: RowSpec, col: MetricCol) -> Cell:
    """Aggregate one metric of one row over seeds (and over splits if the row asks for it)."""
    if spec.na:
        return Cell("na", detail=spec.na)
    hits = match_evals(frame, spec, col)
    hits = hits[hits[col.metric].notna()]
    if hits.empty:
        return _empty_cell(records, spec, col)
    profiles = tuple(sorted(hits["profile"].unique()))
    if len(profiles) > 1:
        raise ResultsError(f"row '{spec.key}' ({spec.rq}) has results of several profiles {profiles} "
                           f"({', '.join(sorted(hits['folder']))}); pass --profile to pick one")
    splits = tuple(sorted(int(s) for s in hits["split"].unique()))
    if spec.over_splits:
        per_split = hits.groupby("split")[col.metric].mean()
        mean, std, ci95 = _mean_std_ci([float(v) for v in per_split])
        n = len(per_split)
    else:
        if len(splits) > 1:
            raise ResultsError(f"row '{spec.key}' ({spec.rq}) matches evals of splits {splits} "
                               f"in {', '.join(sorted(hits['folder'].unique()))}; add the split to the row")
        mean, std, ci95 = _mean_std_ci([float(v) for v in hits[col.metric]])
        n = len(hits)
    ints = lambda c: tuple(sorted({int(v) for v in hits[c].dropna()}))  # noqa: E731
    return Cell("ok", mean=mean, std=std, ci95=ci95, n=n, n_seeds=hits["folder"].nunique(), splits=splits,
                folders=tuple(sorted(hits["folder"].unique())), profiles=profiles,
                n_test=ints("num_test"), classes=ints("num_classes"))


def run_cell(records: list[RunRecord], spec: RowSpec, col: RunCol) -> Cell:
    """A per-run number (parameters, peak memory): one value if all seeds agree, else mean, std, CI."""
    if spec.na:
        return Cell("na", detail=spec.na)
    recs = [r for r in _row_records(records, spec) if r.complete]
    vals = [(r, get_path(r.metrics, col.path, None)) for r in recs]
    vals = [(r, float(v)) for r, v in vals if v is not None]
    if not vals:
        return _empty_cell(records, spec, MetricCol(col.key, col.label, col.path))
    numbers = [v for _, v in vals]
    mean, std, ci95 = (numbers[0], None, None) if len(set(numbers)) == 1 else _mean_std_ci(numbers)
    return Cell("ok", mean=mean, std=std, ci95=ci95, n=len(numbers), n_seeds=len(numbers),
                folders=tuple(sorted(r.rel for r, _ in vals)),
                profiles=tuple(sorted({r.profile for r, _ in vals})))
