"""tables/plot_curves.py: pretraining curves from log.jsonl files (constructed logs, no training)."""
from __future__ import annotations

import json

from tables import plot_curves


def write_log(folder, steps=(10, 20, 30), pretrain=True):
    folder.mkdir(parents=True)
    lines = []
    for s in steps if pretrain else ():
        lines.append({"stage": "pretrain", "step": s, "epoch": 0, "lr": 1e-4 * s, "loss": 4.0 - s / 10,
                      "mep": 3.0, "cpp": 0.7, "mep_acc": 0.1, "cpp_acc": 0.5 + s / 100, "time": 1.0})
    if pretrain:
        lines.append({"stage": "pretrain", "event": "heldout", "epoch": 0, "step": steps[-1], "heldout_cpp_acc": 0.8,
                      "heldout_mep_top1": 0.4, "heldout_mep_chance": 0.125})
        lines.append({"event": "samples_skipped", "skipped": {}, "stage": "pretrain", "epoch": 0})
    lines.append({"stage": "downstream:av", "event": "result", "top1": 90.0})
    (folder / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return folder


def test_reads_training_and_heldout_lines_only(tmp_path):
    train, heldout = plot_curves.read_curves(write_log(tmp_path / "rq" / "a", steps=(20, 10, 30)))
    assert [r["step"] for r in train] == [10, 20, 30] and [r["step"] for r in heldout] == [30]


def test_writes_one_png_for_several_runs_and_skips_runs_without_pretraining(tmp_path, capsys):
    runs = [write_log(tmp_path / "rq" / "a"), write_log(tmp_path / "rq" / "b", steps=(10, 20)),
            write_log(tmp_path / "rq" / "random", pretrain=False)]
    out = tmp_path / "curves.png"
    assert plot_curves.main([*map(str, runs), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cap = capsys.readouterr()
    assert "(2 run(s))" in cap.out and "rq/random: no pretraining lines" in cap.err.replace(str(tmp_path) + "/", "")
    assert plot_curves.main([str(runs[0])]) == 0 and (runs[0] / "curves.png").is_file()  # one run: beside it


def test_errors_exit_2(tmp_path, capsys):
    assert plot_curves.main([str(tmp_path / "nope")]) == 2
    assert "no log.jsonl" in capsys.readouterr().err
    assert plot_curves.main([str(write_log(tmp_path / "rq" / "random", pretrain=False))]) == 2
    assert "none of the runs" in capsys.readouterr().err
    bad = tmp_path / "rq" / "bad"
    bad.mkdir()
    (bad / "log.jsonl").write_text("{not json\n")
    assert plot_curves.main([str(bad)]) == 2
    assert "log.jsonl:1: not a JSON line" in capsys.readouterr().err
