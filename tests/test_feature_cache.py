"""experiments/feature_cache.py: the linear evaluations of one run that read the same clips the same way
extract them once, and each gets the numbers it gets when it runs alone (real smoke runs)."""
from __future__ import annotations

import json

import pytest

from experiments import run
from experiments.config import EvalConfig
from experiments.feature_cache import FeatureCache

CONFIG = "experiments/rq3_sharing/configs/part.yaml"
COMMON = "segments: 4, spatial_crops: 1, epochs: 4, batch_size: 16, lr: 1.0e-2, dropout: 0.0"
EVALS = {  # a CNN and a transformer row of one input, the same task with fewer labels, another input
    "v_cnn": f"task: ks_like, model: v_cnn, modalities: [visual], {COMMON}",
    "v_bert": f"task: ks_like, model: v_bert, modalities: [visual], {COMMON}",
    "bind": f"task: bind_like, model: m_bert, {COMMON}",
    "bind_2": f"task: bind_like, model: m_bert, train_per_class: 2, {COMMON}",
    "m_cnn": f"task: bind_like, model: m_cnn, {COMMON}",
}
KEYS = ("top1", "top5", "val", "best_epoch", "num_train", "num_test")
pytestmark = pytest.mark.usefixtures("restore_threads")


def test_one_extraction_per_input_with_the_transformer_when_a_reader_needs_it():
    evals = [EvalConfig(name="v_cnn", model="v_cnn", modalities=["visual"]),
             EvalConfig(name="v_bert", model="v_bert", modalities=["visual"]),
             EvalConfig(name="a_cnn", model="a_cnn", modalities=["audio"]),
             EvalConfig(name="v_cnn_all", model="v_cnn")]  # loads both inputs: another loader
    cache, calls = FeatureCache(evals), []

    def extract(name):
        return lambda transformer: calls.append((name, transformer)) or name

    for ev in evals:
        for split in ("train", "val", "test"):
            cache.get(ev, split, extract(ev.name))
        cache.release(ev)
    assert calls == [(n, t) for n, t in (("v_cnn", True), ("a_cnn", False), ("v_cnn_all", False))
                     for _ in range(3)]
    assert cache._store == {}  # nothing kept once no evaluation reads it
    late = FeatureCache(evals[:2])
    late.release(evals[1])  # the transformer row was reused from another run: the CNN row extracts less
    assert late.get(evals[0], "test", lambda transformer: transformer) is False


def test_shared_features_give_each_evaluation_its_own_numbers(tmp_path):
    def scores(name: str, names: list[str]) -> dict:
        downstream = ", ".join(f"{{name: {n}, {EVALS[n]}}}" for n in names)
        assert run.main(["--config", CONFIG, "--profile", "smoke", f"output_root={tmp_path}", f"name={name}",
                         "pretrain.enabled=false", "runtime.reuse_evaluations=false", f"downstream=[{downstream}]"]) == 0
        metrics = json.loads((tmp_path / "rq3_sharing" / name / "metrics.json").read_text())["downstream"]
        return {n: {k: metrics[n][k] for k in KEYS} for n in names}

    together = scores("together", list(EVALS))
    alone = {n: scores(f"alone_{n}", [n])[n] for n in EVALS}
    assert together == alone
