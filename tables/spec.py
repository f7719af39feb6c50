"""What a table row and column are: which run folders may fill a row (and what their config must
say), which downstream eval fills a column (matched by the eval's fields, not its name), and the
command that produces a missing run."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Paper datasets and their synthetic (tiny-profile) mirrors fill the same table columns.
KS_TASKS = ("kinetics_sounds", "ks_like")
UCF_TASKS = ("ucf101", "ucf_like")
HMDB_TASKS = ("hmdb51", "hmdb_like")
ESC_TASKS = ("esc50", "esc_like")
CHARADES_TASKS = ("charades", "charades_like")
PROFILES = ("tiny", "paper", "smoke", "any")


@dataclass(frozen=True)
class MetricCol:
    """A metric column: `metric` (top1/top5/mAP) of the eval matching the row's and this column's
    `select` (eval fields; a tuple value means any of these)."""

    key: str
    label: str
    metric: str
    select: dict[str, Any] = field(default_factory=dict)
    ours_label: str | None = None  # e.g. "ks_like top-1" when ours is on the synthetic mirror task


@dataclass(frozen=True)
class RunCol:
    """A per-run number from metrics.json (e.g. `params.transformer`), shown as ours only."""

    key: str
    label: str
    path: str
    integer: bool = False


@dataclass
class RowSpec:
    """One table row. `runs`: accepted run names (folder names without `_seed<k>`); `expect`: dotted
    config keys the run's config.yaml must hold (else ConfigMismatch; a value may be a tuple of
    allowed values, or a dict run name -> value when the row accepts several runs); `select`: eval fields;
    `paper`: MetricCol.key -> paper number (None = not reported); `paper_cols`: extra paper-side text;
    `over_splits`: average seeds per split, then mean +- CI over splits; `na`: why the row has no
    run at this profile; `baseline`: a second source shown as its own column (random init)."""

    key: str
    label: str
    rq: str
    runs: tuple[str, ...]
    expect: dict[str, Any] = field(default_factory=dict)
    select: dict[str, Any] = field(default_factory=dict)
    paper: dict[str, float | None] = field(default_factory=dict)
    paper_cols: dict[str, str] = field(default_factory=dict)
    readme: dict[str, float | None] = field(default_factory=dict)
    over_splits: bool = False
    na: str | None = None
    baseline: "RowSpec | None" = None


# Runs that exist at one scale only (their YAML's `profiles` list).
PAPER_ONLY = {("rq5_transfer", "k700"), ("rq5_transfer", "audioset")}
TINY_ONLY = {("rq5_transfer", "synthetic")}


def command_profile(rq: str, run: str, profile: str) -> str:
    if (rq, run) in PAPER_ONLY:
        return "paper"
    if (rq, run) in TINY_ONLY and profile not in ("smoke",):
        return "tiny"
    return "tiny" if profile == "any" else profile


def fill_command(rq: str, run: str, profile: str) -> str:
    """The launcher call that (re)creates or resumes one run; finished evals are kept on re-launch."""
    prof = command_profile(rq, run, profile)
    cluster = " --cluster slurm" if prof == "paper" else ""
    return f"python experiments/{rq}/launch.py --profile {prof}{cluster} --only {run}"


def ours_label(profile: str) -> str:
    return f"ours ({profile})" if profile != "any" else "ours"
