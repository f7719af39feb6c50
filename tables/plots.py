"""PNG figures beside the tables (Agg backend, no display): accuracy vs transformer parameters for
the sharing schemes, and paper-vs-ours bars for the other ablations."""
from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402  (after selecting the backend)

import pandas as pd  # noqa: E402

PAPER_COLOR, OURS_COLOR = "#4c72b0", "#dd8452"


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    return buf.getvalue()


def _num(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _pick(long: pd.DataFrame, column: str, field: str) -> dict[str, float | None]:
    sub = long[long["column"] == column]
    return {r: _num(v) for r, v in zip(sub["row"], sub[field])}


def _chance(long: pd.DataFrame, metric: str) -> float | None:
    """Our chance level for `metric` (the tables' `chance` column), when every cell that has one agrees."""
    if "chance" not in long:
        return None
    vals = {float(v) for v in long[long["column"] == metric]["chance"] if _num(v) is not None}
    return vals.pop() if len(vals) == 1 else None


def _chance_lines(ax, ours_chance: float | None, paper_chance: float | None) -> None:
    if ours_chance is not None:
        ax.axhline(ours_chance, color=OURS_COLOR, ls="--", lw=1, label=f"chance, ours ({ours_chance:.1f} %)")
    if paper_chance is not None:
        ax.axhline(paper_chance, color=PAPER_COLOR, ls=":", lw=1, label=f"chance, paper ({paper_chance:.1f} %)")


def _joined_labels(labels: dict[str, str], acc: dict, par: dict) -> dict[tuple[float, float], str]:
    """One label per point; rows that land within 2 % in parameters and 1 point in accuracy share one
    (e.g. "None / Multi-2" when two schemes are the same model at the tiny depth), so labels never overlap."""
    out: dict[tuple[float, float], str] = {}
    for row, label in labels.items():
        if acc.get(row) is None or not par.get(row):
            continue
        near = next((k for k in out if abs(k[0] / par[row] - 1) < 0.02 and abs(k[1] - acc[row]) < 1.0), None)
        if near is None:
            out[(par[row], acc[row])] = label
        else:
            out[near] += f" / {label}"
    return out


def sharing_figure(long: pd.DataFrame, ours: str, metric: str = "top1", params: str = "params",
                   short: dict[str, str] | None = None, paper_chance: float | None = None) -> bytes:
    """Top-1 vs transformer parameters (log x): paper points at the exact paper-scale counts, ours at
    the counts in metrics.json (tiny-profile models are far smaller: the x axis spans both). Points
    carry `short` labels (row key -> a word), the legend sits outside the axes, dashed lines mark chance."""
    labels = {r: (short or {}).get(r, lab) for r, lab in zip(long["row"], long["label"])}
    p_acc, o_acc = _pick(long, metric, "paper"), _pick(long, metric, "ours_mean")
    o_err = _pick(long, metric, "ours_ci95")  # error bars = the tables' 95 % CI half-width
    p_par, o_par = _pick(long, params, "paper"), _pick(long, params, "ours_mean")
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.subplots()
    for row in labels:
        if p_acc.get(row) is not None and p_par.get(row):
            ax.scatter(p_par[row], p_acc[row], color=PAPER_COLOR, marker="o", zorder=3)
        if o_acc.get(row) is not None and o_par.get(row):
            ax.errorbar(o_par[row], o_acc[row], yerr=o_err.get(row) or 0, fmt="s", color=OURS_COLOR, capsize=3,
                        zorder=3)
    for acc, par, dy, color in ((p_acc, p_par, 3, PAPER_COLOR), (o_acc, o_par, -11, OURS_COLOR)):
        for (x, y), label in _joined_labels(labels, acc, par).items():
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, dy), fontsize=8, color=color)
    ax.scatter([], [], color=PAPER_COLOR, marker="o", label="paper (poster, Kinetics-Sounds)")
    ax.scatter([], [], color=OURS_COLOR, marker="s", label=f"{ours} (± 95 % CI)")
    _chance_lines(ax, _chance(long, metric), paper_chance)
    ax.set_xscale("log")
    ax.set_xlabel("transformer parameters")
    ax.set_ylabel(f"{metric.replace('top', 'top-')} accuracy (%)")
    ax.set_title("Parameter sharing schemes: accuracy vs parameters")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.text(0.01, -0.02, "paper points at our exact paper-scale counts (the poster prints 7M for Multi-2, "
             "the arithmetic gives 42.5M)", fontsize=7, ha="left", va="top")
    return _png(fig)


def bar_figure(long: pd.DataFrame, ours: str, title: str, metric: str = "top1",
               paper_chance: float | None = None) -> bytes:
    """Grouped bars per row, paper vs ours; a missing side is left out and labelled; dashed lines mark
    chance (ours from the tables' chance column)."""
    sub = long[long["column"] == metric]
    labels = list(sub["label"])
    paper = [_num(v) for v in sub["paper"]]
    mine = [_num(v) for v in sub["ours_mean"]]
    err = [_num(v) or 0.0 for v in sub["ours_ci95"]]  # 95 % CI half-width, as in the tables
    fig = Figure(figsize=(max(5.0, 0.9 * len(labels) + 2), 4.0))
    ax = fig.subplots()
    x = list(range(len(labels)))
    w = 0.38
    ax.bar([i - w / 2 for i in x], [p or 0 for p in paper], w, color=PAPER_COLOR, label="paper (poster)")
    ax.bar([i + w / 2 for i in x], [m or 0 for m in mine], w, yerr=err if any(err) else None, color=OURS_COLOR,
           capsize=3, label=f"{ours} (± 95 % CI)")
    for i, (p, m) in enumerate(zip(paper, mine)):
        if p is None:
            ax.text(i - w / 2, 1, "n/r", ha="center", va="bottom", fontsize=7, rotation=90)
        if m is None:
            ax.text(i + w / 2, 1, "missing", ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"{metric.replace('top', 'top-')} (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    _chance_lines(ax, _chance(long, metric), paper_chance)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    return _png(fig)
