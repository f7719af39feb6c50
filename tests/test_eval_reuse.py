"""experiments/eval_reuse.py: an evaluation equal to a finished one of a run with the same pretraining key
is taken from it, and its numbers are the ones it would have computed itself (real smoke runs)."""
from __future__ import annotations

import json

import pytest
import yaml

from experiments import run
from experiments.config import load_config, to_dict
from experiments.eval_reuse import find_evaluation

CONFIG = "experiments/rq3_sharing/configs/part.yaml"
EV = "task: ks_like, protocol: linear, model: m_bert, segments: 4, spatial_crops: 1, epochs: 5, batch_size: 16, " \
     "lr: 1.0e-2, dropout: 0.0"
KEYS = ("top1", "top5", "val", "best_epoch", "num_train", "num_test")
pytestmark = pytest.mark.usefixtures("restore_threads")


def _run(tmp_path, name: str, downstream: str, *extra: str) -> dict:
    assert run.main(["--config", CONFIG, "--profile", "smoke", f"output_root={tmp_path}", f"name={name}",
                     f"downstream=[{downstream}]", *extra]) == 0
    return json.loads((tmp_path / "rq3_sharing" / name / "metrics.json").read_text())


def _eval_log(tmp_path, name: str, stage: str) -> list[dict]:
    lines = (tmp_path / "rq3_sharing" / name / "log.jsonl").read_text().splitlines()
    return [{k: v for k, v in r.items() if k not in ("time", "stage", "wall_s", "reused_from")}
            for r in map(json.loads, lines) if r.get("stage") == stage]


def test_an_identical_evaluation_is_reused_with_the_numbers_it_would_compute(tmp_path, capsys):
    first = _run(tmp_path, "first", f"{{name: av, {EV}}}")
    second = _run(tmp_path, "second", f"{{name: ks, {EV}}}, {{name: ks6, {EV.replace('epochs: 5', 'epochs: 6')}}}")
    assert "evaluation ks reused from rq3_sharing/first:av" in capsys.readouterr().err
    ks, av = second["downstream"]["ks"], first["downstream"]["av"]
    assert ks["reused_from"] == "rq3_sharing/first:av" and ks["wall_s"] == 0.0 and ks["reused_wall_s"] == av["wall_s"]
    assert "reused_from" not in second["downstream"]["ks6"]  # another evaluation config: computed
    assert _eval_log(tmp_path, "second", "downstream:ks") == _eval_log(tmp_path, "first", "downstream:av")
    copied = [json.loads(line) for line in (tmp_path / "rq3_sharing" / "second" / "log.jsonl").read_text().splitlines()]
    assert {r.get("reused_from") for r in copied if r.get("stage") == "downstream:ks"} == {"rq3_sharing/first:av"}
    assert all("reused_from" not in r for r in copied if r.get("stage") == "downstream:ks6")  # computed here
    own = _run(tmp_path, "own", f"{{name: ks, {EV}}}", "runtime.reuse_evaluations=false")["downstream"]["ks"]
    assert "reused_from" not in own
    assert {k: own[k] for k in KEYS} == {k: ks[k] for k in KEYS} == {k: av[k] for k in KEYS}


def test_no_source_for_another_backbone_loader_or_evaluation(tmp_path):
    config = to_dict(load_config(CONFIG, [], "smoke"))
    ev = config["downstream"][0]
    source, me = tmp_path / "rq3_sharing" / "source", tmp_path / "rq1_end_to_end" / "me"
    source.mkdir(parents=True)
    (source / "config.yaml").write_text(yaml.safe_dump(config))
    assert find_evaluation(tmp_path, me, config, ev) is None  # listed, not finished
    entry = {"top1": 50.0, "wall_s": 3.0}
    (source / "metrics.partial.json").write_text(json.dumps({"downstream": {ev["name"]: entry}}))
    assert find_evaluation(tmp_path, me, config, {**ev, "name": "renamed"}) == (source, ev["name"], entry)
    assert find_evaluation(tmp_path, source, config, ev) is None  # a run is never its own source
    assert find_evaluation(tmp_path, me, config, {**ev, "epochs": ev["epochs"] + 1}) is None
    seed1 = to_dict(load_config(CONFIG, ["seed=1"], "smoke"))
    assert find_evaluation(tmp_path, me, seed1, seed1["downstream"][0]) is None  # another backbone
    workers = {**config, "data": {**config["data"], "num_workers": config["data"]["num_workers"] + 1}}
    assert find_evaluation(tmp_path, me, workers, ev) is None  # the few-label subset follows the loader order


def test_a_rewritten_config_is_read_again(tmp_path):
    """Run configs are parsed once per version of the file (experiments.pretrain_reuse.read_run_config)."""
    from common.fsutil import atomic_write_text
    from experiments.pretrain_reuse import pretrain_key, read_run_config

    file = tmp_path / "config.yaml"
    configs = [to_dict(load_config(CONFIG, [f"seed={s}"], "smoke")) for s in (0, 1)]
    atomic_write_text(file, yaml.safe_dump(configs[0]))
    assert read_run_config(file) == (configs[0], pretrain_key(configs[0]))
    atomic_write_text(file, yaml.safe_dump(configs[1]))  # as save_config rewrites it: a new file
    assert read_run_config(file) == (configs[1], pretrain_key(configs[1]))
    file.write_text("[not a mapping")
    assert read_run_config(file) == (None, None) and read_run_config(tmp_path / "missing.yaml") == (None, None)
