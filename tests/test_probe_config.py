"""The pretrained-vs-random check (experiments/probes/configs/pretraining_gain.yaml) runs, and its
random-init evaluations do not depend on the pretraining: the two columns differ by it alone."""
from __future__ import annotations

from experiments.config import load_config
from experiments.run import execute

CONFIG = "experiments/probes/configs/pretraining_gain.yaml"
KEYS = ("top1", "top5", "val", "best_epoch")


def test_pretraining_gain_check_compares_like_with_like(tmp_path):
    base = [f"output_root={tmp_path}", "runtime.num_threads=1"]
    short = execute(load_config(CONFIG, [*base, "name=short", "pretrain.steps_per_epoch=1"], "smoke"))
    longer = execute(load_config(CONFIG, [*base, "name=longer", "pretrain.steps_per_epoch=3"], "smoke"))
    a, b = short["downstream"], longer["downstream"]
    assert set(a) == {f"{t}_{i}" for t in ("ucf_v", "esc_a", "ks_m") for i in ("pre", "rand")}
    assert {k: v["init"] for k, v in a.items()} == {k: "pretrained" if k.endswith("pre") else "random" for k in a}
    assert short["pretrain"]["steps"] == 1 and longer["pretrain"]["steps"] == 3
    for k in ("ucf_v_rand", "esc_a_rand", "ks_m_rand"):
        assert {x: a[k][x] for x in KEYS} == {x: b[k][x] for x in KEYS}, k


def test_summarize_pairs_runs_and_reports_paired_margins(tmp_path, capsys):
    import json

    from experiments.probes import summarize

    def run(name, seed, pre, rand, status="complete"):
        (tmp_path / "probes" / name).mkdir(parents=True)
        ds = {"esc_a_pre": {"top1": pre, "mAP": None}, "esc_a_rand": {"top1": rand, "mAP": None},
              "other": {"top1": 1.0, "mAP": None}}
        (tmp_path / "probes" / name / "metrics.json").write_text(json.dumps({"status": status, "seed": seed, "downstream": ds}))

    assert summarize.main(["--results", str(tmp_path)]) == 1  # nothing yet: says so, fails
    run("a", 0, 60.0, 50.0)
    run("b", 1, 50.0, 48.0)
    run("c", 2, 99.0, 0.0, status="partial")  # unfinished runs do not count
    assert summarize.collect(tmp_path / "probes") == {"esc_a": [(0, 60.0, 50.0), (1, 50.0, 48.0)]}
    assert summarize.main(["--results", str(tmp_path)]) == 0
    row = capsys.readouterr().out.strip().splitlines()[-1]
    assert row == "| esc_a | 0,1 | 55.0 ± 7.1 | 49.0 ± 1.4 | 6.0 ± 5.7 | +2.0 |"
