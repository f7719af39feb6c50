"""Pretraining curves of one or several runs, from their log.jsonl: losses (total, MEP, CPP), CPP / MEP
accuracies on the training batches with the held-out ones after each epoch, and the learning rate.

    python tables/plot_curves.py RUN_DIR [RUN_DIR ...] [--out FILE.png]

Default output: RUN_DIR/curves.png for one run, results/tables/curves.png for several. A run whose log
has no pretraining lines (pretraining disabled) is left out with a warning.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:  # `python tables/plot_curves.py` from anywhere
    sys.path.insert(0, str(_ROOT))

from common.fsutil import atomic_write_bytes  # noqa: E402
from tables.plots import Figure, _png  # noqa: E402

STAGE = "pretrain"


def read_curves(run_dir: Path) -> tuple[list[dict], list[dict]]:
    """(training lines, held-out lines) of the run's pretraining, in step order."""
    log = run_dir / "log.jsonl"
    if not log.is_file():
        raise FileNotFoundError(f"{run_dir}: no log.jsonl (not a run folder, or the run has not started)")
    train, heldout = [], []
    for n, line in enumerate(log.read_text().splitlines(), 1):
        try:
            rec = json.loads(line)
        except ValueError:
            raise ValueError(f"{log}:{n}: not a JSON line") from None
        if rec.get("stage") != STAGE or "step" not in rec:
            continue
        if rec.get("event") == "heldout":
            heldout.append(rec)
        elif "event" not in rec and "loss" in rec:
            train.append(rec)
    return sorted(train, key=lambda r: r["step"]), sorted(heldout, key=lambda r: r["step"])


def _series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def curves_figure(runs: dict[str, tuple[list[dict], list[dict]]]) -> bytes:
    """Three panels sharing the step axis; one colour per run."""
    fig = Figure(figsize=(7.5, 9.0))
    ax_loss, ax_acc, ax_lr = fig.subplots(3, 1, sharex=True)
    colors = [f"C{i % 10}" for i in range(len(runs))]
    for color, (name, (train, heldout)) in zip(colors, runs.items()):
        for key, style in (("loss", "-"), ("mep", "--"), ("cpp", ":")):
            ax_loss.plot(*_series(train, key), style, color=color, lw=1.2, label=f"{name}: {key}")
        for key, style in (("cpp_acc", "-"), ("mep_acc", "--")):
            ax_acc.plot(*_series(train, key), style, color=color, lw=1.0, alpha=0.6, label=f"{name}: {key} (train)")
        for key, marker in (("heldout_cpp_acc", "o"), ("heldout_mep_top1", "s")):
            ax_acc.plot(*_series(heldout, key), marker=marker, ls="none", color=color, ms=5,
                        label=f"{name}: {key.removeprefix('heldout_')} (held-out)")
        ax_lr.plot(*_series(train, "lr"), color=color, lw=1.2, label=name)
    chance_mep = next((r.get("heldout_mep_chance") for _, h in runs.values() for r in h if r.get("heldout_mep_chance")),
                      None)
    ax_acc.axhline(0.5, color="grey", ls="-.", lw=0.8, label="CPP chance (0.5)")
    if chance_mep:
        ax_acc.axhline(chance_mep, color="grey", ls=":", lw=0.8, label=f"held-out MEP chance ({chance_mep:.3f})")
    ax_loss.set_ylabel("loss")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1)
    ax_lr.set_ylabel("learning rate (CNNs)")
    ax_lr.set_xlabel("optimizer step")
    ax_loss.set_title("Pretraining: losses, CPP / MEP accuracy, learning rate")
    for ax in (ax_loss, ax_acc, ax_lr):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    return _png(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python tables/plot_curves.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="run folders (results/<rq>/<run>)")
    ap.add_argument("--out", type=Path, default=None, help="PNG to write (see above for the default)")
    args = ap.parse_args(argv)
    runs: dict[str, tuple[list[dict], list[dict]]] = {}
    for run_dir in args.runs:
        try:
            train, heldout = read_curves(run_dir)
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if not train:
            print(f"warning: {run_dir}: no pretraining lines in log.jsonl (pretraining disabled?): left out",
                  file=sys.stderr)
            continue
        name = f"{run_dir.resolve().parent.name}/{run_dir.resolve().name}"
        runs[name] = (train, heldout)
    if not runs:
        print("error: none of the runs has pretraining curves", file=sys.stderr)
        return 2
    out = args.out or (args.runs[0] / "curves.png" if len(args.runs) == 1 else _ROOT / "results" / "tables" / "curves.png")
    atomic_write_bytes(out, curves_figure(runs))
    print(f"wrote {out} ({len(runs)} run(s))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
