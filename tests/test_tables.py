"""Table scripts on a fabricated results tree (built in tmp_path, never committed): paper vs ours
side by side, differences, seed aggregation, missing-run commands, refusal of mismatched configs,
the empty case, LaTeX booktabs; and the paper CSVs' key poster numbers."""
from __future__ import annotations

import copy
import json

import pandas as pd
import pytest
import yaml

from common.paths import CODE_ROOT
from tables import make_table1, make_table2
from tables.results_io import ConfigMismatch, ResultsError

PAPER = CODE_ROOT / "results" / "paper"


# ---------------------------------------------------------------- fabricated runs
def _merge(a: dict, b: dict) -> dict:
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def ev(task="ks_like", model="m_bert", init="pretrained", mods=("visual", "audio"), split=1, top1=None, top5=None,
       mAP=None):
    return {"task": task, "model": model, "init": init, "protocol": "linear", "modalities": list(mods),
            "split": split, "multilabel": mAP is not None, "top1": top1, "top5": top5, "mAP": mAP,
            "num_test": 10, "num_classes": 8, "wall_s": 1.0}


def write_run(root, rq, name, evals, *, profile="tiny", seed=0, config=None, params=12_345, metrics=True):
    cfg = {"name": name, "rq": rq, "profile": profile, "seed": seed, "output_root": "results",
           "model": {"fusion": "mid", "sharing": "part"}, "data": {"num_workers": 1},
           "pretrain": {"enabled": True, "freeze_cnn": False, "dataset": "pretrain", "epochs": 4,
                        "negatives": {"sampler": "cans_similar"}},
           "downstream": [], "runtime": {"log_every": 10}}
    cfg = _merge(cfg, config or {})
    folder = root / rq / name
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    if metrics:
        m = {"run": name, "rq": rq, "profile": profile, "seed": seed, "config_hash": "0" * 16, "status": "complete",
             "params": {"transformer": params, "visual_cnn": 100, "audio_cnn": 50, "total": params + 150},
             "pretrain": None, "downstream": evals, "wall_time_s": 3.0, "peak_memory_mb": 256.0,
             "samples_skipped": {}}
        (folder / "metrics.json").write_text(json.dumps(m))
    return folder


def run_main(module, capsys, *args):
    assert module.main(list(args)) == 0
    return capsys.readouterr().out


def table_lines(md: str, title: str) -> dict[str, str]:
    """Markdown table lines of the section whose heading starts with `title`, keyed by row label."""
    text = next(part for part in md.split("\n### ") if part.startswith(title))
    return {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ")}


# ---------------------------------------------------------------- paper CSVs
def test_paper_csvs_hold_the_poster_numbers():
    csv = {p.stem: pd.read_csv(p) for p in PAPER.glob("*.csv")}
    assert set(csv) == {"fusion", "sharing", "negatives", "ucf101", "esc50", "charades_ks"}
    for name, df in csv.items():
        assert "source" in df.columns and "notes" in df.columns, name
        assert set(df["source"]) <= {"poster", "readme_post_submission", "not_found"}, name

    def one(name, row, **kw):
        df = csv[name]
        sel = (df["row"] == row) & (df["source"] == kw.pop("source", "poster"))
        for k, v in kw.items():
            sel &= df[k] == v
        assert sel.sum() == 1, (name, row, kw)
        return df[sel].iloc[0]

    part = one("sharing", "part")
    assert (part["top1"], part["top5"], part["params_printed"], part["params_exact"]) == (67.5, 92.3, "4M", 3843840)
    exact = {r: one("sharing", r)["params_exact"] for r in ("multi2", "cross_layer", "all", "none")}
    assert exact == {"multi2": 42527232, "cross_layer": 21263616, "all": 7087872, "none": 127581696}
    assert pd.isna(one("sharing", "none")["top1"])
    mid = one("fusion", "mid", eval="av")
    assert (mid["top1"], mid["top5"]) == (65.7, 89.9)
    assert pd.isna(one("fusion", "early", eval="audio_only")["top1"])
    assert one("negatives", "cans_similar")["top1"] == 67.5
    assert pd.isna(one("negatives", "cans_dissimilar", source="not_found")["top1"])
    assert one("charades_ks", "m_bert")["charades_map"] == 29.5
    assert (one("charades_ks", "m_bert")["ks_top1"], one("charades_ks", "m_bert")["ks_top5"]) == (75.6, 94.6)
    assert one("esc50", "a_cnn_as")["top1"] == 81.5
    assert one("ucf101", "v_cnn_k700")["top1"] == 85.2
    readme = one("charades_ks", "readme", source="readme_post_submission")
    assert (readme["ks_top1"], readme["ks_top5"]) == (85.8, 97.8)
    assert one("ucf101", "readme", source="readme_post_submission")["top1"] == 87.5
    assert one("esc50", "readme", source="readme_post_submission")["top1"] == 85.9


# ---------------------------------------------------------------- table 1
def _table1_tree(root):
    av = lambda t1, t5: {"av": ev(top1=t1, top5=t5)}  # noqa: E731
    write_run(root, "rq3_sharing", "part", av(60.0, 85.0), params=12_345)
    write_run(root, "rq3_sharing", "part_seed1", av(62.0, 87.0), seed=1, params=12_345)
    write_run(root, "rq3_sharing", "cross_layer", av(55.0, 80.0), config={"model": {"sharing": "cross_layer"}})
    write_run(root, "rq2_fusion", "mid", {
        "av": ev(top1=50.0, top5=80.0), "audio_only": ev(mods=("audio",), top1=40.0, top5=70.0),
        "visual_only": ev(mods=("visual",), top1=30.0, top5=60.0)}, config={"model": {"sharing": "cross_layer"}})
    write_run(root, "rq4_negatives", "cans_similar", av(64.0, 90.0))
    write_run(root, "rq1_end_to_end", "end_to_end", av(58.0, 84.0))
    write_run(root, "rq1_end_to_end", "no_pretrain", {"av": ev(init="random", top1=20.0, top5=50.0)},
              config={"pretrain": {"enabled": False}})


def test_table1_paper_ours_seeds_context_and_missing(tmp_path, capsys):
    res, out = tmp_path / "results", tmp_path / "out"
    _table1_tree(res)
    md = run_main(make_table1, capsys, "--results", str(res), "--out", str(out), "--format", "md,tex,csv,png")
    lines = {line.split(" | ")[0].lstrip("| "): line for line in md.splitlines() if line.startswith("| ")}
    part = lines["Multi-6 X.-L + X.-T Part (ours)"]
    # paper 67.5 / 92.3 beside ours: mean +- 95 % CI half-width over the two seeds (t(1) = 12.706 times
    # std sqrt(2) / sqrt(2)); on a synthetic profile no Δ column (different data), the CSV keeps it
    assert "| 67.5 | 61.00 ± 12.71 (n=2 seeds) | 92.3 | 86.00 ± 12.71 (n=2 seeds) |" in part
    assert "Δ" not in "".join(ln for ln in md.splitlines() if ln.startswith("| Row"))
    assert "ours ± = half-width of the t-based 95 % confidence interval" in md
    assert "3,843,840 | 12,345 |" in part and "rq3_sharing/part, rq3_sharing/part_seed1" in part and "| tiny |" in part
    assert "| 65.7 | 55.00 | 89.9 |" in lines["Multi-6 X.-L"]
    assert "| 65.7 | 50.00 | 89.9 | 80.00 |" in lines["Mid Audio-Visual"]
    assert "| 42.5 | 30.00 |" in lines["Mid Visual-only"]
    assert "| - | missing |" in lines["Early Audio-only"]
    assert "| 67.5 | 64.00 |" in lines["CANS-Similar"]
    assert "| - | 20.00 |" in lines["No pretraining"] and "256.00" in lines["No pretraining"]
    assert "ours (tiny) ks_like top-1" in md and "NOT Kinetics-Sounds" in md
    # each table's caption: seeds, test clips and chance of its cells; single runs are called so
    sharing = md.split("### Table 1b")[1].split("###")[0]
    assert ("Ours: 1-2 seeds per cell (n in the cell when > 1); 10 test clips per evaluation; chance ks_like "
            "top-1 12.5 % (8 classes), ks_like top-5 62.5 % (8 classes).") in sharing
    assert "Ours: 1 seed per cell (single runs" in md.split("### Table 1c")[1]
    # the notes every table shares: once in the document, once as a footnote in each table's own file
    assert md.count("the paper's protocol (linear or fine-tune) is NOT FOUND") == 1
    own = (out / "table1_sharing.md").read_text()
    assert own.count("the paper's protocol (linear or fine-tune) is NOT FOUND") == 1
    assert own.index("Notes common to every table") > own.index("| Row")
    # missing runs are marked and the command that fills them is printed
    assert "missing" in lines["Multi-2 (no sharing)"]
    assert "`python experiments/rq3_sharing/launch.py --profile tiny --only multi2`" in md
    assert "`python experiments/rq2_fusion/launch.py --profile tiny --only early`" in md
    assert "--only part`" not in md
    # every format written; LaTeX is booktabs with escaped text
    tex = (out / "table1_sharing.tex").read_text()
    assert all(rule in tex for rule in (r"\toprule", r"\midrule", r"\bottomrule"))
    assert r"$\pm$" in tex and r"rq3\_sharing/part" in tex
    long = pd.read_csv(out / "table1.csv")
    row = long[(long["table"] == "table1_sharing") & (long["row"] == "part") & (long["column"] == "top1")].iloc[0]
    assert (row["paper"], row["ours_mean"], row["ours_n"], row["chance"]) == (67.5, 61.0, 2, 12.5)
    assert row["diff"] == pytest.approx(-6.5) and row["ours_std"] == pytest.approx(2 ** 0.5)
    assert row["ours_ci95"] == pytest.approx(12.706)
    for name in ("table1.md", "table1_fusion.md", "table1_negatives.tex", "table1_end_to_end.csv"):
        assert (out / name).is_file()
    for name in ("table1_sharing.png", "table1_fusion.png", "table1_negatives.png", "table1_end_to_end.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table1_paper_profile_shows_ours_minus_paper(tmp_path, capsys):
    res = tmp_path / "results"
    write_run(res, "rq3_sharing", "part", {"av": ev(top1=60.0, top5=85.0)}, profile="paper")
    write_run(res, "rq3_sharing", "part_seed1", {"av": ev(top1=62.0, top5=87.0)}, profile="paper", seed=1)
    md = run_main(make_table1, capsys, "--results", str(res), "--profile", "paper", "--out", str(tmp_path / "o"),
                  "--format", "md,tex")
    part = next(ln for ln in md.splitlines() if ln.startswith("| Multi-6 X.-L + X.-T Part (ours)"))
    assert "| 67.5 | 61.00 ± 12.71 (n=2 seeds) | -6.50 | 92.3 | 86.00 ± 12.71 (n=2 seeds) | -6.30 |" in part
    assert r"$\Delta$ top-1" in (tmp_path / "o" / "table1_sharing.tex").read_text()


def test_config_mismatch_is_refused(tmp_path):
    res = tmp_path / "results"
    write_run(res, "rq3_sharing", "part", {"av": ev(top1=1.0, top5=2.0)}, config={"model": {"sharing": "all"}})
    with pytest.raises(ConfigMismatch, match=r"rq3_sharing/part/config\.yaml.*model\.sharing = 'all', expected 'part'"):
        make_table1.main(["--results", str(res), "--out", str(tmp_path / "o"), "--format", "md", "--quiet"])

    res2 = tmp_path / "results2"
    write_run(res2, "rq2_fusion", "early", {"av": ev(top1=1.0, top5=2.0)}, config={"model": {"fusion": "mid"}})
    with pytest.raises(ConfigMismatch, match=r"rq2_fusion/early/config\.yaml.*model\.fusion = 'mid', expected 'early'"):
        make_table1.main(["--results", str(res2), "--out", str(tmp_path / "o"), "--format", "md", "--quiet"])


def test_seeds_must_share_their_config_and_metrics_must_be_valid(tmp_path):
    res = tmp_path / "results"
    write_run(res, "rq3_sharing", "part", {"av": ev(top1=1.0, top5=2.0)})
    write_run(res, "rq3_sharing", "part_seed1", {"av": ev(top1=1.0, top5=2.0)}, seed=1,
              config={"pretrain": {"epochs": 8}})
    with pytest.raises(ResultsError, match=r"differ beyond the seed \(pretrain\.epochs: 4 vs 8\)"):
        make_table1.main(["--results", str(res), "--out", str(tmp_path / "o"), "--format", "md", "--quiet"])

    res2 = tmp_path / "results2"
    folder = write_run(res2, "rq4_negatives", "cans_similar", {"av": ev(top1=1.0, top5=2.0)})
    bad = json.loads((folder / "metrics.json").read_text())
    del bad["params"]["transformer"]
    (folder / "metrics.json").write_text(json.dumps(bad))
    with pytest.raises(ResultsError, match=r"cans_similar/metrics\.json: 'params\.transformer'"):
        make_table1.main(["--results", str(res2), "--out", str(tmp_path / "o"), "--format", "md", "--quiet"])


def test_incomplete_and_other_profile_runs(tmp_path, capsys):
    res = tmp_path / "results"
    write_run(res, "rq3_sharing", "all", {}, config={"model": {"sharing": "all"}}, metrics=False)
    write_run(res, "rq3_sharing", "part", {"av": ev(task="kinetics_sounds", top1=66.0, top5=91.0)}, profile="paper")
    write_run(res, "rq3_sharing", "part.old-20240101-000000", {}, metrics=False)
    md = run_main(make_table1, capsys, "--results", str(res), "--out", str(tmp_path / "o"), "--format", "md")
    assert "| Multi-6 X.-L + X.-T All | yes | All | 7M | 67.1 | incomplete |" in md
    assert "`python experiments/rq3_sharing/launch.py --profile tiny --only all`" in md
    assert "left out runs of other profiles (paper: 1)" in md
    assert "ignored folders in rq3_sharing/ (no table row of that name): part.old-20240101-000000" in md
    md = run_main(make_table1, capsys, "--results", str(res), "--profile", "paper", "--out", str(tmp_path / "o"),
                  "--format", "md")
    assert "| 67.5 | 66.00 | -1.50 |" in md and "--profile paper --cluster slurm --only multi2" in md


def test_empty_results_give_paper_columns_and_commands(tmp_path, capsys):
    out = tmp_path / "out"
    (tmp_path / "none").mkdir()
    assert make_table1.main(["--results", str(tmp_path / "none"), "--out", str(out), "--format", "md,tex,csv"]) == 0
    captured = capsys.readouterr()
    md1 = captured.out
    assert f"warning: no runs of profile tiny under {tmp_path / 'none'}" in captured.err
    assert "python experiments/rq3_sharing/launch.py" in captured.err
    assert "| Mid Audio-Visual | 65.7 | missing |" in md1
    for rq, run in [("rq1_end_to_end", "frozen_cnn"), ("rq2_fusion", "late"), ("rq3_sharing", "none"),
                    ("rq4_negatives", "cans_dissimilar")]:
        assert f"`python experiments/{rq}/launch.py --profile tiny --only {run}`" in md1
    md2 = run_main(make_table2, capsys, "--results", str(tmp_path / "none"), "--out", str(out), "--format", "md,tex")
    assert "| M-BERT† | 29.5 | missing |" in md2 and "NOT FOUND" in md2
    assert "`python experiments/rq5_transfer/launch.py --profile tiny --only synthetic`" in md2
    assert r"\toprule" in (out / "table2_charades_ks.tex").read_text()


def test_nonexistent_results_folder_is_an_error(tmp_path, capsys):
    """A mistyped --results must not 'succeed' with every cell missing."""
    import subprocess
    import sys

    missing = tmp_path / "nope"
    for module in (make_table1, make_table2):
        with pytest.raises(ResultsError, match=r"--results .*nope does not exist"):
            module.main(["--results", str(missing), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
    proc = subprocess.run([sys.executable, "tables/make_table1.py", "--results", str(missing), "--quiet"],
                          cwd=CODE_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "wrote" not in proc.stderr


# ---------------------------------------------------------------- table 2
def test_table2_tiny_synthetic_tasks(tmp_path, capsys):
    res = tmp_path / "results"
    # eval names are deliberately odd: rows are matched by task/model/init/split fields
    evals = {"a": ev(task="ucf_like", model="v_cnn", mods=("visual",), top1=70.0, top5=95.0),
             "b": ev(task="esc_like", model="a_cnn", mods=("audio",), top1=60.0, top5=90.0),
             "c": ev(task="ks_like", model="m_bert", top1=55.0, top5=85.0),
             "d": ev(task="charades_like", model="m_bert", mAP=33.0),
             "e": ev(task="ks_like", model="v_cnn", mods=("visual",), top1=40.0, top5=70.0)}
    write_run(res, "rq5_transfer", "synthetic", evals)
    rnd = {k: {**v, "init": "random", "top1": v["top1"] and v["top1"] / 2, "mAP": v["mAP"] and 10.0}
           for k, v in evals.items()}
    write_run(res, "rq5_transfer", "random_init", rnd, config={"pretrain": {"enabled": False}})
    md = run_main(make_table2, capsys, "--results", str(res), "--out", str(tmp_path / "o"), "--format", "md,png")
    ucf = table_lines(md, "Table 2a")["V-CNN (synthetic; paper: K700) mean over splits"]
    assert "| 85.2 | 70.00 | 87.5 | 35.00 |" in ucf  # synthetic: no Δ column
    assert "rq5_transfer/random_init, rq5_transfer/synthetic" in ucf
    esc = table_lines(md, "Table 2c")["A-CNN (synthetic; paper: AS) mean over folds"]
    assert "| 81.5 | 60.00 | 85.9 | 30.00 |" in esc
    lines = table_lines(md, "Table 2d")
    mbert = lines["M-BERT†"]
    assert "| 29.5 | 33.00 | 10.00 | 75.6 | 55.00 | 85.8 | 27.50 |" in mbert
    assert "| 5.9 | 10.00 |" in lines["Random (random init, M-BERT)"]
    assert "| 18.7 | no eval |" in lines["V-CNN"] and "| 45.8 | 40.00 |" in lines["V-CNN"]
    assert "- V-CNN, Charades mAP: no eval with {'model': 'v_cnn', 'init': 'pretrained', 'task': " in md
    assert "ours (tiny) charades_like mAP" in md and "ours (tiny) ucf_like top-1" in md
    assert "| V-CNN (AS) mean over splits | 86.1 | n/a |" in md
    assert "Paper: NOT FOUND" in md
    assert (tmp_path / "o" / "table2_ks.png").read_bytes()[:4] == b"\x89PNG"


def test_table2_paper_profile_splits_mean_std(tmp_path, capsys):
    res = tmp_path / "results"
    k700 = {f"x{k}": ev(task="ucf101", model="v_cnn", mods=("visual",), split=k, top1=t, top5=99.0)
            for k, t in ((1, 82.0), (2, 84.0), (3, 86.0))}
    write_run(res, "rq5_transfer", "k700", k700, profile="paper", config={"pretrain": {"dataset": "kinetics700"}})
    k700_s1 = {k: {**v, "top1": v["top1"] + 2.0} for k, v in k700.items()}
    write_run(res, "rq5_transfer", "k700_seed1", k700_s1, profile="paper", seed=1,
              config={"pretrain": {"dataset": "kinetics700"}})
    md = run_main(make_table2, capsys, "--results", str(res), "--profile", "paper", "--out", str(tmp_path / "o"),
                  "--format", "md")
    lines = table_lines(md, "Table 2a")
    assert "| - | 83.00 ± 12.71 (n=2 seeds) |" in lines["V-CNN (K700) split 1"]
    # seeds averaged per split (83, 85, 87), then mean +- 95 % CI over the three splits: 4.303 * 2 / sqrt(3)
    assert "| 85.2 | 85.00 ± 4.97 (n=3 splits) | -0.20 | 87.5 |" in lines["V-CNN (K700) mean over splits"]
    assert "`python experiments/rq5_transfer/launch.py --profile paper --cluster slurm --only audioset`" in md
    # a paper-scale pretraining run whose data differs from its row is refused
    bad = tmp_path / "bad"
    write_run(bad, "rq5_transfer", "audioset", {}, profile="paper", config={"pretrain": {"dataset": "kinetics700"}})
    with pytest.raises(ConfigMismatch, match=r"pretrain\.dataset = 'kinetics700', expected 'audioset'"):
        make_table2.main(["--results", str(bad), "--profile", "paper", "--out", str(tmp_path / "o"), "--quiet",
                          "--format", "md"])


def test_sharing_figure_joins_labels_of_points_that_coincide():
    """Two schemes that are the same model at the tiny depth (None, Multi-2) land on one point: one label
    "None / Multi-2", not two overlapping ones; distinct points keep their own."""
    from tables.plots import _joined_labels

    labels = {"none": "None", "multi2": "Multi-2", "part": "Part"}
    acc = {"none": 88.0, "multi2": 88.0, "part": 90.1}
    par = {"none": 671040, "multi2": 671040, "part": 61152}
    assert _joined_labels(labels, acc, par) == {(671040, 88.0): "None / Multi-2", (61152, 90.1): "Part"}
    assert len(_joined_labels(labels, {**acc, "multi2": 60.0}, par)) == 3  # same size, different accuracy
