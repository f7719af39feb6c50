"""experiments/pretrain_reuse.py: a run whose pretraining equals a finished one takes its weights, and its
numbers are the ones it would have computed itself (real smoke runs, seconds each)."""
from __future__ import annotations

import io
import json
import os
import threading
import time

import pytest
import torch
import yaml

from common.paths import CODE_ROOT
from experiments import preemption, run, run_lock
from experiments.config import load_config, to_dict
from experiments.pretrain_reuse import (find_source, pretrain_key, reuse, running_source, submission_order,
                                        wait_for_source)
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


def _metrics(tmp_path, name: str, *extra: str, config: str = CONFIG) -> dict:
    assert run.main(["--config", config, "--profile", "smoke", f"output_root={tmp_path}", f"name={name}", *extra]) == 0
    return json.loads((tmp_path / "rq3_sharing" / name / "metrics.json").read_text())


def _pretrain_log(tmp_path, name: str) -> list[dict]:
    lines = (tmp_path / "rq3_sharing" / name / "log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("stage") == "pretrain"]


def test_identical_pretraining_is_reused_with_the_same_results(tmp_path, capsys):
    first = _metrics(tmp_path, "first")
    assert "reused_from" not in first["pretrain"]
    # both evaluate themselves (runtime.reuse_evaluations would take first's identical evaluations)
    reused = _metrics(tmp_path, "reused", "runtime.reuse_evaluations=false")
    assert "pretraining reused from rq3_sharing/first" in capsys.readouterr().err
    own = _metrics(tmp_path, "own", "runtime.reuse_pretraining=false", "runtime.reuse_evaluations=false")
    assert reused["pretrain"]["reused_from"] == "rq3_sharing/first" and "reused_from" not in own["pretrain"]
    assert reused["pretrain"]["wall_s"] == 0.0 and reused["pretrain"]["reused_wall_s"] == first["pretrain"]["wall_s"]
    scores = [{k: (v["top1"], v["top5"], v["val"]) for k, v in m["downstream"].items()} for m in (reused, own)]
    assert scores[0] == scores[1] and len(scores[0]) == 2
    weights = [torch.load(tmp_path / "rq3_sharing" / n / "checkpoints" / "pretrained.pt", weights_only=True)["model"]
               for n in ("reused", "own")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[1])  # deterministic: reuse is exact
    copied = _pretrain_log(tmp_path, "reused")  # the source's lines, each marked as copied
    assert copied and all(r.pop("reused_from") == "rq3_sharing/first" for r in copied)
    assert copied == _pretrain_log(tmp_path, "first")
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


def test_multi2_is_none_with_two_layers_one_pretraining():
    """At 2 layers (the tiny and smoke profiles) rq3's multi2 and none build the same modules with the same
    initialisation, so they share a key; at 6 layers they are different models."""
    multi2, none = (f"experiments/rq3_sharing/configs/{n}.yaml" for n in ("multi2", "none"))
    assert key(config=multi2) == key(config=none) != key()
    assert key("model.transformer.layers=6", config=multi2) == key(config=none)  # multi2 has 2 whatever it says
    assert key("model.transformer.layers=6", config=multi2) != key("model.transformer.layers=6", config=none)
    from model.build import build_model
    states = []
    for config in (multi2, none):
        torch.manual_seed(0)
        states.append(build_model(load_config(config, [], "smoke").model).state_dict())
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def _write_config(root, label: str, config: dict):
    folder = root / label
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


def _started_at(folder, seconds: float):
    os.utime(folder / "config.yaml", ns=(int(seconds * 1e9), int(seconds * 1e9)))


def test_a_run_waits_only_for_a_same_key_run_that_started_first_and_is_pretraining(tmp_path):
    """Started first = wrote its config.yaml first (ties: rq/name sorts first), whatever the names."""
    config = to_dict(load_config(CONFIG, [], "smoke"))
    first, me, later, early_z, tied = (_write_config(tmp_path, f"rq3_sharing/{n}", config) for n in ("a", "b", "c", "z", "a1"))
    other = _write_config(tmp_path, "rq3_sharing/a0", to_dict(load_config(CONFIG, ["seed=1"], "smoke")))
    for folder, t in ((first, 100), (me, 200), (later, 300), (early_z, 150), (tied, 200), (other, 100)):
        _started_at(folder, t)
    k = pretrain_key(config)
    assert running_source(tmp_path, k, me) is None  # nobody holds a lock
    with run_lock.hold(later), run_lock.hold(other):
        assert running_source(tmp_path, k, me) is None  # started after me / another key: never waited for
    with run_lock.hold(early_z):  # sorts after me, started before me: its pretraining is the one to take
        assert running_source(tmp_path, k, me) == early_z
        assert running_source(tmp_path, k, early_z) is None
    with run_lock.hold(tied):  # the same write time: the name that sorts first goes first
        assert running_source(tmp_path, k, me) == tied and running_source(tmp_path, k, tied) is None
    said: list[str] = []
    with run_lock.hold(first):
        assert running_source(tmp_path, k, me) == first
        assert running_source(tmp_path, k, first) is None  # so two runs never wait on each other
        timer = threading.Timer(0.3, lambda: (first / "checkpoints" / "pretrained.pt").write_bytes(b"x"))
        timer.start()
        t0 = time.time()
        wait_for_source(tmp_path, k, me, poll_s=0.05, say=said.append)
        timer.join()
    assert time.time() - t0 >= 0.25 and len(said) == 1 and "waiting for rq3_sharing/a" in said[0]
    (first / "checkpoints" / "pretrained.pt").unlink()
    with run_lock.hold(first):  # a stop request while waiting: Preempted (nothing of the run exists yet)
        preemption.request_stop("test")
        try:
            with pytest.raises(preemption.Preempted):
                wait_for_source(tmp_path, k, me, poll_s=0.05, say=said.append)
        finally:
            preemption.reset()
    wait_for_source(tmp_path, k, me, poll_s=0.05, say=said.append)  # the lock is gone: no wait


def test_launch_order_puts_the_run_others_repeat_first_and_the_repeats_last(tmp_path):
    names = ("all", "cross_layer", "multi2", "none", "part")
    plans = [(n, to_dict(load_config(f"experiments/rq3_sharing/configs/{n}.yaml", [f"output_root={tmp_path}"], "smoke")))
             for n in names]
    order = submission_order(plans, lambda p: p[1], lambda p: tmp_path / "rq3_sharing" / p[0])
    assert [n for n, _ in order] == ["multi2", "all", "cross_layer", "part", "none"]
    off = [(n, {**c, "runtime": {**c["runtime"], "reuse_pretraining": False}}) for n, c in plans]
    assert submission_order(off, lambda p: p[1], lambda p: tmp_path / p[0]) == off  # no reuse: launch order


def test_a_multi2_run_reuses_none_and_gets_its_numbers(tmp_path, capsys):
    """The real path: rq3's none pretrains, multi2 takes its weights, and multi2's downstream numbers are
    those of none (the same model)."""
    none, multi2 = (_metrics(tmp_path, row, "runtime.reuse_evaluations=false",  # evaluates itself
                             config=f"experiments/rq3_sharing/configs/{row}.yaml") for row in ("none", "multi2"))
    assert "pretraining reused from rq3_sharing/none" in capsys.readouterr().err
    assert multi2["pretrain"]["reused_from"] == "rq3_sharing/none"
    assert {k: v["top1"] for k, v in multi2["downstream"].items()} == {k: v["top1"] for k, v in none["downstream"].items()}


def test_a_twin_launched_while_its_source_pretrains_waits_and_reuses(tmp_path):
    """RQ3's none launched first (80 steps, about 15 s of pretraining); once it is pretraining, a second
    launch starts multi2, the same pretraining, which waits for none and reuses its weights instead of
    pretraining too, although its name sorts first (the run that started first is the source)."""
    from experiments import launcher

    common = ["--profile", "smoke", "--no-snapshot", f"output_root={tmp_path}", "pretrain.steps_per_epoch=80"]
    first = launcher.launch(CODE_ROOT / "experiments/rq3_sharing", ["--only", "none", "--no-wait", *common],
                            out=io.StringIO())
    source = tmp_path / "rq3_sharing" / "none"
    deadline = time.time() + 120
    while not ((source / "log.jsonl").is_file() and run_lock.holder(source)):  # its first steps are logged
        assert time.time() < deadline and first.outcomes[0].status == "submitted"
        time.sleep(0.1)
    second = launcher.launch(CODE_ROOT / "experiments/rq3_sharing", ["--only", "multi2", *common], out=io.StringIO())
    launcher.wait_for(first, out=io.StringIO())
    assert first.exit_code == 0 and second.exit_code == 0
    metrics = {r: json.loads((tmp_path / "rq3_sharing" / r / "metrics.json").read_text()) for r in ("multi2", "none")}
    assert "reused_from" not in metrics["none"]["pretrain"]
    assert metrics["multi2"]["pretrain"]["reused_from"] == "rq3_sharing/none"
    log = "".join(p.read_text() for p in (tmp_path / "rq3_sharing" / "multi2" / "submitit").glob("*/*_log.err"))
    assert "waiting for rq3_sharing/none" in log
    assert {k: v["top1"] for k, v in metrics["none"]["downstream"].items()} == \
        {k: v["top1"] for k, v in metrics["multi2"]["downstream"].items()}


def test_a_reused_pretraining_passes_on_the_time_of_the_one_that_ran(tmp_path):
    """A source that itself reused gives its source's `reused_wall_s`, not its own 0 s; a run that does
    not pretrain, or has reuse off, takes nothing."""
    config = to_dict(load_config(CONFIG, [], "smoke"))
    source = _write_config(tmp_path, "rq1_end_to_end/middle", config)
    (source / "checkpoints" / "hash").write_text("feedc0de\n")
    torch.save({"config_hash": "feedc0de", "model": {}}, source / "checkpoints" / "pretrained.pt")
    (source / "metrics.json").write_text(json.dumps(
        {"pretrain": {"wall_s": 0.0, "reused_from": "rq3_sharing/part", "reused_wall_s": 412.5}}))
    for off in ({**config, "pretrain": {**config["pretrain"], "enabled": False}},
                {**config, "runtime": {**config["runtime"], "reuse_pretraining": False}}):
        folder = tmp_path / "rq4_negatives" / "off"
        folder.mkdir(parents=True, exist_ok=True)
        assert reuse(tmp_path, folder, off) is None and not any(folder.iterdir())
    folder = tmp_path / "rq4_negatives" / "current_sequence"
    (folder / "checkpoints").mkdir(parents=True)
    assert reuse(tmp_path, folder, config) == "rq1_end_to_end/middle"
    summary = json.loads((folder / "metrics.partial.json").read_text())["pretrain"]
    assert summary["reused_from"] == "rq1_end_to_end/middle"
    assert summary["wall_s"] == 0.0 and summary["reused_wall_s"] == 412.5
