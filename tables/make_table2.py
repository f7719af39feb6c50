"""Transfer tables (the paper's downstream comparisons, from the poster): UCF101 (V-CNN, per split and
mean +- 95 % CI over splits), HMDB51 (ours only: no paper number exists), ESC-50 (A-CNN, per fold and
mean), Charades mAP + Kinetics-Sounds top-1/top-5 (Random, V/A/M-CNN, V/A/M-BERT), with the released
code's post-submission README numbers as a separate reference column. On the tiny profile the
synthetic tasks ucf_like / esc_like / ks_like / charades_like fill the same tables. Evals are matched
by their fields in metrics.json (task, model, init, split), not by name.

    python tables/make_table2.py [--results results/] [--profile tiny|paper|smoke|any]
                                 [--out results/tables/] [--format md,tex,csv,png]
"""
from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:  # `python tables/make_table2.py` from the repo root (or anywhere)
    sys.path.insert(0, _ROOT)

import pandas as pd  # noqa: E402

from common.fsutil import atomic_write_bytes, atomic_write_text  # noqa: E402
from tables import cli, paper_data, plots  # noqa: E402
from tables.build import Section, build_section  # noqa: E402
from tables.render import document_markdown, write_section  # noqa: E402
from tables.spec import (CHARADES_TASKS, ESC_TASKS, HMDB_TASKS, KS_TASKS, UCF_TASKS, MetricCol,  # noqa: E402
                         RowSpec, ours_label)

RQ = "rq5_transfer"
RQ_RUNS = {RQ: {"k700", "audioset", "synthetic", "random_init"}}
PRETRAIN_RUN = {"K700": "k700", "AS": "audioset"}
DATASET = {"k700": "kinetics700", "audioset": "audioset"}  # pretrain.dataset of each paper-scale run
SYNTHETIC = ("tiny", "smoke")
MODELS = {"v_cnn": "V-CNN", "a_cnn": "A-CNN", "m_cnn": "M-CNN", "v_bert": "V-BERT", "a_bert": "A-BERT",
          "m_bert": "M-BERT"}


def pretrain_runs(profile: str, data: str, primary: bool) -> tuple[str, ...]:
    """Run names that stand for the poster's pretraining data `data` (K700 / AS) at this profile.
    The synthetic profiles have one pretraining run, mapped onto the table's primary row."""
    if profile in SYNTHETIC:
        return ("synthetic",) if primary else ()
    if profile == "paper":
        return (PRETRAIN_RUN[data],)
    return (PRETRAIN_RUN[data], "synthetic") if primary else (PRETRAIN_RUN[data],)


def pretrained_expect(runs: tuple[str, ...]) -> dict:
    exp = {"pretrain.enabled": True}
    datasets = {r: DATASET[r] for r in runs if r in DATASET}
    if datasets:
        exp["pretrain.dataset"] = datasets
    return exp


def random_baseline(select: dict) -> RowSpec:
    return RowSpec(key="random_init", label="random init", rq=RQ, runs=("random_init",),
                   expect={"pretrain.enabled": False}, select={**select, "init": "random"})


def metric_cols(tasks: tuple[str, ...], synthetic_task: str, profile: str, prefix: str = "", name: str = "",
                metrics=(("top1", "top-1"), ("top5", "top-5"))) -> list[MetricCol]:
    """Columns for one dataset; on the synthetic profiles our column names the mirror task."""
    syn = profile in SYNTHETIC
    return [MetricCol(f"{prefix}{m}", f"{name} {label}".strip(), m, {"task": tasks},
                      ours_label=f"{synthetic_task} {label}" if syn else None) for m, label in metrics]


def split_rows(kind: str, model: str, paper_csv: str | None, datas: list[tuple[str, bool]], profile: str,
               n_splits: int, unit: str, na_text: str | None = None) -> list[RowSpec]:
    """Per split/fold rows and a mean +- CI row for each pretraining data (K700 / AS)."""
    splits = tuple(range(1, n_splits + 1)) if profile in ("paper", "any") else (1,)
    rows = []
    for data, primary in datas:
        runs = pretrain_runs(profile, data, primary)
        synthetic = profile in SYNTHETIC and runs and not na_text
        name = f"{MODELS[model]} (synthetic; paper: {data})" if synthetic else f"{MODELS[model]} ({data})"
        na = na_text or (None if runs else f"{data} pretraining exists at paper scale only")
        base = {"model": model, "init": "pretrained"}
        for k in splits:
            sel = {**base, "split": k}
            rows.append(RowSpec(key=f"{model}_{data.lower()}_{unit}{k}", label=f"{name} {unit} {k}", rq=RQ, runs=runs,
                                expect=pretrained_expect(runs), select=sel, na=na,
                                baseline=None if na else random_baseline(sel)))
        paper = {}
        readme = {}
        if paper_csv:
            paper = {"top1": paper_data.lookup(paper_csv, f"{model}_{data.lower()}", "top1")}
            readme = {m: paper_data.lookup(paper_csv, "readme", m, source=paper_data.README) for m in ("top1", "top5")}
        sel = {**base, "split": splits}
        rows.append(RowSpec(key=f"{model}_{data.lower()}_mean", label=f"{name} mean over {unit}s", rq=RQ, runs=runs,
                            expect=pretrained_expect(runs), select=sel, paper=paper, readme=readme, over_splits=True,
                            na=na, baseline=None if na else random_baseline(sel)))
    return rows


def charades_ks_rows(profile: str) -> list[RowSpec]:
    runs = pretrain_runs(profile, "K700", True)
    rows = [RowSpec(key="random", label="Random (random init, M-BERT)", rq=RQ, runs=("random_init",),
                    expect={"pretrain.enabled": False}, select={"model": "m_bert", "init": "random"},
                    paper={"charades_mAP": paper_data.lookup("charades_ks", "random", "charades_map")})]
    for model, label in MODELS.items():
        sel = {"model": model, "init": "pretrained"}
        rows.append(RowSpec(
            key=model, label=label + ("†" if model == "m_bert" else ""), rq=RQ, runs=runs,
            expect=pretrained_expect(runs), select=sel, baseline=random_baseline(sel),
            paper={"charades_mAP": paper_data.lookup("charades_ks", model, "charades_map"),
                   "ks_top1": paper_data.lookup("charades_ks", model, "ks_top1"),
                   "ks_top5": paper_data.lookup("charades_ks", model, "ks_top5")},
            readme={"ks_top1": paper_data.lookup("charades_ks", "readme", "ks_top1", source=paper_data.README),
                    "ks_top5": paper_data.lookup("charades_ks", "readme", "ks_top5", source=paper_data.README)}
            if model == "m_bert" else {}))
    return rows


def ours_header(profile: str) -> str:
    if profile in SYNTHETIC:
        return (f"**Ours ({profile} profile) = the synthetic benchmark's mirror tasks (ucf_like, esc_like, "
                "ks_like, charades_like; one split) with the tiny model and linear evaluation, pretrained on the "
                "synthetic set: NOT the paper's datasets. Compare trends, not values; so no Δ column (the CSVs keep "
                "ours − paper).**")
    if profile == "paper":
        return ("Ours (paper profile) = the real datasets with the released protocols where they exist "
                "(UCF101 fine-tune, ESC-50 linear, KS fine-tune; Charades: ours); Δ = ours − paper.")
    return ("Ours = runs of any profile (see the profile column); tiny/smoke rows are on synthetic tasks, so no "
            "Δ column (the CSVs keep ours − paper).")


PAPER_HEADER = ("Paper = the authors' ICLR 2021 poster (results/paper/); the paper's splits/folds, averaging and "
                "protocols are NOT FOUND. README post-sub. = the released code's README numbers after re-tuning "
                "hyperparameters post submission (not paper numbers; pretraining data of that checkpoint not "
                "stated). Random-init column = the same evaluation from the random_init run.")


def build(records, frame, profile: str, notes: list[str]) -> list[Section]:
    common = {"common": [PAPER_HEADER, ours_header(profile)]}  # said once per document, a footnote per file
    k700_as = [("K700", True), ("AS", False)]
    as_k700 = [("AS", True), ("K700", False)]
    split_note = ("Per-split rows: mean ± 95 % CI half-width over seeds; mean row: seeds averaged within each "
                  "split, then mean ± 95 % CI half-width over splits (n = splits).")
    return [
        build_section("table2_ucf101", "Table 2a. UCF101 (V-CNN)", [split_note],
                      split_rows("ucf", "v_cnn", "ucf101", k700_as, profile, 3, "split"),
                      metric_cols(UCF_TASKS, "ucf_like", profile), records, frame, profile,
                      notes=["Prior methods of the poster's UCF table: results/paper/ucf101.csv."], **common),
        build_section("table2_hmdb51", "Table 2b. HMDB51 (V-CNN), ours only",
                      ["Paper: NOT FOUND (no HMDB51 number on the poster or in any source we could read).",
                       split_note],
                      split_rows("hmdb", "v_cnn", None, k700_as, profile, 3, "split",
                                 na_text="no HMDB-like task in the synthetic benchmark"
                                 if profile in SYNTHETIC else None),
                      metric_cols(HMDB_TASKS, "hmdb_like", profile), records, frame, profile,
                      common=[ours_header(profile)]),
        build_section("table2_esc50", "Table 2c. ESC-50 (A-CNN)", [split_note.replace("split", "fold")],
                      split_rows("esc", "a_cnn", "esc50", as_k700, profile, 5, "fold"),
                      metric_cols(ESC_TASKS, "esc_like", profile), records, frame, profile,
                      notes=["Prior methods of the poster's ESC table: results/paper/esc50.csv."], **common),
        build_section("table2_charades_ks", "Table 2d. Charades and Kinetics-Sounds", [
            "Rows as on the poster (V/A/M = visual/audio/multimodal; CNN = CNN only, BERT = CNN + transformers); "
            "ours from the main pretraining run. What distinguishes the poster's un-daggered rows is NOT FOUND. "
            "ATF and ATF (OF) (Charades only) are in results/paper/charades_ks.csv."],
            charades_ks_rows(profile),
            metric_cols(CHARADES_TASKS, "charades_like", profile, "charades_", "Charades", (("mAP", "mAP"),))
            + metric_cols(KS_TASKS, "ks_like", profile, "ks_", "KS"), records, frame, profile, notes=notes, **common),
    ]


def write_figures(sections: list[Section], out: Path, profile: str) -> list[Path]:
    long = {s.key: s.long for s in sections}["table2_charades_ks"]
    ours = ours_label(profile)
    figs = {"table2_ks.png": plots.bar_figure(long, ours, "Kinetics-Sounds top-1, paper vs ours", "ks_top1",
                                              paper_chance=paper_data.KS_CHANCE),
            "table2_charades.png": plots.bar_figure(long, ours, "Charades mAP, paper vs ours", "charades_mAP")}
    for name, data in figs.items():
        atomic_write_bytes(out / name, data)
    return [out / n for n in figs]


INTRO = ["Each cell: paper value | ours (mean ± half-width of the t-based 95 % CI, with n, when n > 1; the CSVs "
         "also have the std) | Δ = ours − paper (paper profile only). Each table's first line gives the seeds and "
         "test clips its cells rest on, and chance. "
         "`runs` = the folders under the results directory the values came from; `-` = not reported by the paper; "
         "`missing` = no run yet (commands below); `n/a` = the row does not exist at this profile."]


def main(argv: list[str] | None = None) -> int:
    args = cli.parser(__doc__).parse_args(argv)
    formats = cli.parse_formats(args.format)
    records, frame, notes = cli.load_runs(args.results, RQ_RUNS, args.profile)
    sections = build(records, frame, args.profile, notes)
    md = document_markdown(f"Table 2: transfer (paper) vs {ours_label(args.profile)}", INTRO, sections)
    if not args.quiet:
        print(md)
    out = args.out
    written = []
    for sec in sections:
        written += write_section(sec, out, formats)
    if "md" in formats:
        atomic_write_text(out / "table2.md", md)
        written.append(out / "table2.md")
    if "csv" in formats:
        atomic_write_text(out / "table2.csv", pd.concat([s.long for s in sections]).to_csv(index=False))
        written.append(out / "table2.csv")
    if "png" in formats:
        written += write_figures(sections, out, args.profile)
    print(f"wrote {len(written)} files to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    cli.run_main(main)
