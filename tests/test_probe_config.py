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
