"""The paper's published numbers (`results/paper/*.csv`) as DataFrames, looked up by row key, so the
table scripts never hard-code a paper number."""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import pandas as pd

from common.paths import CODE_ROOT

PAPER_DIR = CODE_ROOT / "results" / "paper"
POSTER = "poster"
README = "readme_post_submission"
# Kinetics-Sounds has 32 classes (reference/paper_facts.md): chance on the paper's side of the KS figures
KS_CHANCE = 100.0 / 32


@lru_cache(maxsize=None)
def load(name: str, paper_dir: str | None = None) -> pd.DataFrame:
    """`load("sharing")` -> results/paper/sharing.csv (blank cells are NaN)."""
    path = Path(paper_dir) if paper_dir else PAPER_DIR
    return pd.read_csv(path / f"{name}.csv", keep_default_na=True)


def _num(x) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def lookup(name: str, row: str, column: str, source: str = POSTER, **match) -> float | None:
    """A number from one CSV; None where the source reports nothing (blank / '-' / no row)."""
    df = load(name)
    sel = (df["row"] == row) & (df["source"] == source)
    for key, value in match.items():
        sel &= df[key] == value
    hits = df.loc[sel, column]
    if len(hits) > 1:
        raise ValueError(f"results/paper/{name}.csv: {len(hits)} rows match row={row!r} {match}")
    return _num(hits.iloc[0]) if len(hits) else None


def field(name: str, row: str, column: str, source: str = POSTER) -> str:
    """A text field (e.g. the printed '7M'); '' when blank."""
    df = load(name)
    hits = df.loc[(df["row"] == row) & (df["source"] == source), column]
    if not len(hits) or pd.isna(hits.iloc[0]):
        return ""
    return str(hits.iloc[0])
