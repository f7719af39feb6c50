"""Turn row/column specs plus run records into one table section: a display DataFrame (paper | ours |
ours - paper per column, the run folders and profile), a tidy long DataFrame (for CSV and plots), and
the commands that fill missing runs."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from tables.aggregate import Cell, check_row_config, metric_cell, run_cell
from tables.results_io import RunRecord
from tables.spec import MetricCol, RowSpec, RunCol, fill_command, ours_label

STATUS_TEXT = {"missing": "missing", "incomplete": "incomplete", "no_eval": "no eval", "na": "n/a"}
# missing: no run folder; incomplete: folder without metrics.json yet; no eval: the finished run has no
# eval with the row's fields; n/a: the row does not exist at this profile.
PAPER_BLANK = "-"  # as on the poster: not reported
CI_NOTE = ("ours ± = half-width of the t-based 95 % confidence interval (df = n − 1) over the n seeds (or splits) "
           "shown in the cell; the CSV also has the sample std.")


@dataclass
class Section:
    key: str  # output file stem, e.g. "table1_sharing"
    title: str
    header: list[str]  # the caption: what ours rests on (seeds, test clips, chance), then the section's own notes
    display: pd.DataFrame
    long: pd.DataFrame
    commands: list[tuple[str, str]] = field(default_factory=list)  # (run folder, command)
    notes: list[str] = field(default_factory=list)
    common: list[str] = field(default_factory=list)  # notes every section of a document shares: said once


def chance(metric: str, classes: int) -> float | None:
    """Chance level (%) of a top-k accuracy over `classes` classes; None for other metrics (mAP's is the
    label frequency)."""
    k = {"top1": 1, "top5": 5}.get(metric)
    return None if k is None or classes < 1 else min(100.0, 100.0 * k / classes)


def _span(values: set[int], unit: str) -> str:
    lo, hi = min(values), max(values)
    word = unit if hi == 1 else unit + "s"
    return f"{lo:,} {word}" if lo == hi else f"{lo:,}-{hi:,} {word}"


def context_line(seeds: set[int], tests: set[int], chances: dict[tuple[str, int], float], over_splits: bool) -> str:
    """The caption's first line: how many runs and test clips each of our cells rests on, and chance."""
    if not seeds:
        return "Ours: no finished runs yet."
    parts = [f"Ours: {_span(seeds, 'seed')} per cell" + (" (per split; the mean row: n = splits)" if over_splits else "")
             + (" (single runs: their last digits depend on the machine's floating-point kernels)"
                if max(seeds) == 1 else " (n in the cell when > 1)")]
    if tests:
        parts.append(f"{_span(tests, 'test clip')} per evaluation")
    if chances:
        parts.append("chance " + ", ".join(f"{label} {c:.1f} % ({k} classes)" for (label, k), c in chances.items()))
    return "; ".join(parts) + "."


def fmt_value(v: float | None, integer: bool = False, digits: int = 2) -> str:
    if v is None:
        return ""
    return f"{v:,.0f}" if integer else f"{v:.{digits}f}"


def fmt_cell(cell: Cell, integer: bool = False, over_splits: bool = False) -> str:
    """mean ± 95 % CI half-width (t over seeds, or over splits) and n; a lone value as is."""
    if cell.status != "ok":
        return STATUS_TEXT[cell.status]
    text = fmt_value(cell.mean, integer)
    if cell.ci95 is not None:
        text += f" ± {fmt_value(cell.ci95, integer)} (n={cell.n} {'splits' if over_splits else 'seeds'})"
    return text


def fmt_diff(paper: float | None, cell: Cell, integer: bool = False) -> str:
    if paper is None or cell.status != "ok" or cell.mean is None:
        return ""
    d = cell.mean - paper
    return f"{d:+,.0f}" if integer else f"{d:+.2f}"


def _cell(col, frame, records, spec) -> Cell:
    return run_cell(records, spec, col) if isinstance(col, RunCol) else metric_cell(frame, records, spec, col)


def build_section(key: str, title: str, header: list[str], rows: list[RowSpec], cols: list[MetricCol | RunCol],
                  records: list[RunRecord], frame: pd.DataFrame, profile: str,
                  notes: list[str] | None = None, common: list[str] | None = None,
                  show_diff: bool | None = None) -> Section:
    """Every row x column: paper value, our aggregate, where it came from, and ours - paper when the
    two are on the same data (show_diff; default: the paper profile only, the CSV always has it)."""
    ours = ours_label(profile)
    show_diff = profile == "paper" if show_diff is None else show_diff
    seeds, tests, chances = set(), set(), {}
    paper_cols = list(dict.fromkeys(k for r in rows for k in r.paper_cols))
    show_paper = {c.key: any(r.paper.get(c.key) is not None for r in rows) for c in cols}
    show_readme = {c.key: any(r.readme.get(c.key) is not None for r in rows) for c in cols}
    show_base = any(r.baseline is not None for r in rows)
    disp_rows, long_rows, commands, gaps, with_ci = [], [], [], [], False
    for spec in rows:
        for src in (spec, spec.baseline):  # refuse runs filed under a row their config contradicts
            for rec in records if src is not None else ():
                if rec.rq == src.rq and rec.base in src.runs:
                    check_row_config(rec, src)
        d = {"row": spec.label}
        d.update({k: spec.paper_cols.get(k, "") for k in paper_cols})
        folders, profiles, need_cmd = set(), set(), False
        for col in cols:
            integer = isinstance(col, RunCol) and col.integer
            cell = _cell(col, frame, records, spec)
            paper = spec.paper.get(col.key)
            base = _cell(col, frame, records, spec.baseline) if spec.baseline is not None else None
            if show_paper[col.key]:
                d[f"paper {col.label}"] = PAPER_BLANK if paper is None else fmt_value(paper, integer, 1)
            ours_col = getattr(col, "ours_label", None) or col.label
            d[f"{ours} {ours_col}"] = fmt_cell(cell, integer, spec.over_splits)
            if show_paper[col.key] and show_diff:
                d[f"Δ {col.label}"] = fmt_diff(paper, cell, integer)
            if cell.status == "ok" and not isinstance(col, RunCol):
                seeds.add(cell.n_seeds)
                tests.update(cell.n_test)
                for k in cell.classes:
                    if chance(col.metric, k) is not None:
                        chances[(ours_col, k)] = chance(col.metric, k)
            if show_readme[col.key]:
                v = spec.readme.get(col.key)
                d[f"README post-sub. {col.label}"] = "" if v is None else fmt_value(v, digits=1)
            if show_base and not isinstance(col, RunCol):
                d[f"{ours} random-init {ours_col}"] = "" if base is None else fmt_cell(base, integer, spec.over_splits)
            for c in (cell, base):
                if c is None:
                    continue
                with_ci |= c.ci95 is not None
                folders.update(c.folders)
                profiles.update(c.profiles)
            need_cmd |= cell.status in ("missing", "incomplete")
            base_cmd = base is not None and base.status in ("missing", "incomplete")
            for c, what in ((cell, ""), (base, " (random init)")):
                if c is not None and c.status == "no_eval":
                    gaps.append(f"{spec.label}{what}, {col.label}: {c.detail} (add the eval to the run's config; "
                                "a changed config needs a new run name or --restart)")
            if base_cmd:
                commands += [(f"{spec.baseline.rq}/{r}", fill_command(spec.baseline.rq, r, profile))
                             for r in spec.baseline.runs]
            long_rows.append({
                "table": key, "row": spec.key, "label": spec.label, "column": col.key, "column_label": col.label,
                "metric": col.path if isinstance(col, RunCol) else col.metric, "paper": paper,
                "readme_post_submission": spec.readme.get(col.key), "ours_mean": cell.mean, "ours_std": cell.std,
                "ours_ci95": cell.ci95, "ours_n": cell.n, "n_seeds": cell.n_seeds,
                "splits": " ".join(map(str, cell.splits)),
                "diff": (cell.mean - paper) if (paper is not None and cell.mean is not None) else None,
                "chance": chance(col.metric, cell.classes[0]) if isinstance(col, MetricCol) and len(cell.classes) == 1
                else None,
                "status": cell.status, "detail": cell.detail, "profile": " ".join(cell.profiles),
                "runs": " ".join(cell.folders),
                "baseline_mean": base.mean if base else None, "baseline_std": base.std if base else None,
                "baseline_ci95": base.ci95 if base else None, "baseline_n": base.n if base else None,
                "baseline_status": base.status if base else "",
                "command": fill_command(spec.rq, spec.runs[0], profile) if spec.runs and cell.status != "ok"
                and cell.status != "na" else ""})
        if need_cmd:
            commands += [(f"{spec.rq}/{r}", fill_command(spec.rq, r, profile)) for r in spec.runs]
        d["profile"] = ", ".join(sorted(profiles))
        d["runs"] = ", ".join(sorted(folders)) if folders else ""
        disp_rows.append(d)
    display = pd.DataFrame(disp_rows).rename(columns={"row": "Row"})
    long = pd.DataFrame(long_rows)
    commands = list(dict.fromkeys(commands))
    over_splits = any(r.over_splits for r in rows)
    return Section(key=key, title=title, header=[context_line(seeds, tests, chances, over_splits), *header],
                   display=display, long=long, commands=commands,
                   notes=([CI_NOTE] if with_ci else []) + list(notes or []) + gaps, common=list(common or []))
