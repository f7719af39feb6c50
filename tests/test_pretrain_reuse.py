"""experiments/pretrain_reuse.py: a run whose pretraining equals a finished one takes its weights, and its
numbers are the ones it would have computed itself (real smoke runs, seconds each)."""
from __future__ import annotations

import json

import pytest
import torch

from experiments import run
from experiments.config import load_config, to_dict
from experiments.pretrain_reuse import find_source, pretrain_key
from experiments.run_folder import RunFolder

CONFIG = "experiments/rq3_sharing/configs/part.yaml"
pytestmark = pytest.mark.usefixtures("restore_threads")


def key(*overrides: str, config: str = CONFIG) -> str:
    return pretrain_key(to_dict(load_config(config, list(overrides), "smoke")))


def test_pretrain_key_ignores_what_does_not_change_pretraining():
    base = key()
    assert key("name=other", "output_root=/elsewhere", "runtime.log_every=3", "data.num_workers=0",
               "runtime.reuse_pretraining=false") == base
    assert key("downstream=[]") == base  # evaluations come after pretraining
    assert key(config="experiments/rq1_end_to_end/configs/end_to_end.yaml") == base  # the same row in RQ1
    for changed in ("seed=1", "model.sharing=none", "pretrain.optim.lr=3e-4", "pretrain.negatives.sampler=cans_similar",
                    "data.segments=4", "runtime.num_threads=2"):
        assert key(changed) != base, changed


def _metrics(tmp_path, name: str, *extra: str) -> dict:
    assert run.main(["--config", CONFIG, "--profile", "smoke", f"output_root={tmp_path}", f"name={name}", *extra]) == 0
    return json.loads((tmp_path / "rq3_sharing" / name / "metrics.json").read_text())


def _pretrain_log(tmp_path, name: str) -> list[dict]:
    lines = (tmp_path / "rq3_sharing" / name / "log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("stage") == "pretrain"]


def test_identical_pretraining_is_reused_with_the_same_results(tmp_path, capsys):
    first = _metrics(tmp_path, "first")
    assert "reused_from" not in first["pretrain"]
    reused = _metrics(tmp_path, "reused")
    assert "pretraining reused from rq3_sharing/first" in capsys.readouterr().err
    own = _metrics(tmp_path, "own", "runtime.reuse_pretraining=false")  # computes it again
    assert reused["pretrain"]["reused_from"] == "rq3_sharing/first" and "reused_from" not in own["pretrain"]
    assert reused["pretrain"]["wall_s"] == 0.0 and reused["pretrain"]["reused_wall_s"] == first["pretrain"]["wall_s"]
    scores = [{k: (v["top1"], v["top5"], v["val"]) for k, v in m["downstream"].items()} for m in (reused, own)]
    assert scores[0] == scores[1] and len(scores[0]) == 2
    weights = [torch.load(tmp_path / "rq3_sharing" / n / "checkpoints" / "pretrained.pt", weights_only=True)["model"]
               for n in ("reused", "own")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[1])  # deterministic: reuse is exact
    assert [{k: v for k, v in r.items() if k != "time"} for r in _pretrain_log(tmp_path, "reused")] == \
        [{k: v for k, v in r.items() if k != "time"} for r in _pretrain_log(tmp_path, "first")]
    # the runs are complete under their own configs (the flag is not part of the result hash)
    assert RunFolder.of(load_config(CONFIG, [f"output_root={tmp_path}", "name=reused"], "smoke")).is_complete()


def test_no_source_for_another_key_or_for_weights_of_an_older_config(tmp_path):
    _metrics(tmp_path, "first")
    folder = tmp_path / "rq3_sharing" / "first"
    assert find_source(tmp_path, key("seed=1"), tmp_path / "x") is None
    assert find_source(tmp_path, key(), folder) is None  # a run is never its own source
    assert find_source(tmp_path, key(), tmp_path / "x")[0] == folder
    (folder / "checkpoints" / "hash").write_text("0123456789abcdef\n")  # the folder now stamps another config
    assert find_source(tmp_path, key(), tmp_path / "x") is None
