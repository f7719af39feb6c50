"""Synthetic benchmark: layout, determinism across worker counts, labels, concurrent ensure."""
from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

from data.pipeline import make_downstream_loader, make_pretrain_loader, resolve_folder
from data.shards import read_classes, read_manifest
from data.synthetic import vocab
from data.synthetic.generate import RECORD, ensure_synthetic, generate, render_clip
from data.synthetic.spec import data_config, preset, render_params
from data.decode import decode_clip

SMALL = dataclasses.replace(preset("tiny"), pretrain_clips=6, splits={"train": 8, "val": 2, "test": 2})
TASKS = ("ucf_like", "esc_like", "ks_like", "charades_like")


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("syn")
    cfg = data_config("tiny")
    return generate(base / "a", cfg, SMALL, seed=7, workers=1, progress=False), \
        generate(base / "b", cfg, SMALL, seed=7, workers=2, progress=False, shard_clips=40)


def test_layout(roots):
    root = roots[0]
    assert read_manifest(root / "pretrain")["total"] == 6
    for task in TASKS:
        for split, n in SMALL.splits.items():
            assert read_manifest(root / task / split)["total"] == n
        c = read_classes(root / task)
        assert c["multilabel"] == (task == "charades_like")
    assert read_manifest(root / "esc_like" / "train")["meta"]["modalities"] == ["audio"]
    assert len(read_classes(root / "charades_like")["classes"]) == len(vocab.CHARADES_LABELS) == 20


def test_same_seed_same_data_whatever_the_workers(roots):
    a, b = roots
    for sub in ["pretrain", *(f"{t}/{s}" for t in TASKS for s in SMALL.splits)]:
        assert (a / sub / "sizes.json").read_bytes() == (b / sub / "sizes.json").read_bytes()
    for t in sorted((a / "ks_like" / "train").glob("*.tar")):  # tar bytes too (fixed mtime, x264 1 thread)
        assert t.read_bytes() == (b / "ks_like" / "train" / t.name).read_bytes()
    cfg = data_config("tiny")
    job = ("pretrain", "", 3, 1, 7, render_params(cfg), SMALL.to_json())
    one, two = render_clip(job), render_clip(job)
    d1 = decode_clip(one[1], np.arange(64), 8, np.array([0]), 64000, 8000, duration=8.0)
    d2 = decode_clip(two[1], np.arange(64), 8, np.array([0]), 64000, 8000, duration=8.0)
    assert np.array_equal(d1.video, d2.video) and np.array_equal(d1.audio, d2.audio)
    other = render_clip(("pretrain", "", 3, 1, 8, render_params(cfg), SMALL.to_json()))
    assert other[1] != one[1]


def test_labels_balanced_and_charades_order():
    cfg = data_config("tiny")
    rp, sj = render_params(cfg), SMALL.to_json()
    labels = [render_clip(("ucf_like", "train", i, i % 8, 0, rp, sj))[2]["label"] for i in range(3)]
    assert labels == [0, 1, 2]
    for i in range(4):
        _, mp4, meta = render_clip(("charades_like", "train", i, None, 0, rp, sj))
        order = [e[0] for e in meta["events"]]
        want = sorted(k for k, (a, b) in enumerate(vocab.CHARADES_LABELS)
                      if a in order and b in order and order.index(a) < order.index(b))
        assert meta["labels"] == want and len(order) in (3, 4)


def test_loaders_read_the_benchmark(roots):
    cfg = data_config("tiny")
    cfg.num_workers = 0
    b = next(iter(make_pretrain_loader(cfg, roots[0] / "pretrain", batch_size=2, batches_per_epoch=1)))
    assert b["video"].shape == (2, 8, 3, 8, 32, 32) and b["audio"].shape == (2, 8, 1, 40, 32)
    b = next(iter(make_downstream_loader(cfg, roots[0] / "charades_like", "test", segments=8, train=False,
                                         batch_size=2)))
    assert b["labels"].shape == (2, 20) and b["video"].shape == (2, 1, 8, 3, 8, 32, 32)
    assert resolve_folder(roots[0] / "pretrain") == roots[0] / "pretrain"


def test_ensure_synthetic_concurrent_and_checked(tmp_path):
    cfg = data_config("tiny")
    tiny = dataclasses.replace(SMALL, pretrain_clips=2, splits={"train": 1}, tasks=("esc_like",))
    root = tmp_path / "bench"
    errors = []

    def call():
        try:
            ensure_synthetic(root, cfg, seed=0, workers=1, spec=tiny, progress=False)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and (root / RECORD).is_file()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    with pytest.raises(ValueError, match="different"):
        ensure_synthetic(root, cfg, seed=1, spec=tiny, progress=False)


def test_tiny_preset_matches_tiny_profile():
    """`python -m data.synthetic --scale tiny` must build the root the tiny profile expects."""
    prof = yaml.safe_load((Path(__file__).parents[1] / "experiments/profiles/tiny.yaml").read_text())["data"]
    cfg = data_config("tiny")
    assert prof["root"] == cfg.root and prof["segments"] == cfg.segments
    for k, v in prof["video"].items():
        assert tuple(v) == tuple(getattr(cfg.video, k)) if isinstance(v, list) else v == getattr(cfg.video, k)
    for k, v in prof["audio"].items():
        assert v == getattr(cfg.audio, k)
    assert cfg.resolved_synthetic_scale() == "tiny" and cfg.video.stored_short_side == 40
