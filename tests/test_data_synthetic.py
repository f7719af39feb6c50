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
from data.synthetic.generate import PAPER_SHARDS, RECORD, clips_per_shard, ensure_synthetic, generate, render_clip
from data.synthetic.spec import VERSION, data_config, preset, render_params
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
    job = ("pretrain", "train", 3, 1, 7, render_params(cfg), SMALL.to_json())
    one, two = render_clip(job), render_clip(("pretrain", "", *job[2:]))  # "" = the pretraining split
    assert one[0] == two[0] == "pretrain_train_000003"
    d1 = decode_clip(one[1], np.arange(64), 8, np.array([0]), 64000, 8000, duration=8.0)
    d2 = decode_clip(two[1], np.arange(64), 8, np.array([0]), 64000, 8000, duration=8.0)
    assert np.array_equal(d1.video, d2.video) and np.array_equal(d1.audio, d2.audio)
    other = render_clip(("pretrain", "train", 3, 1, 8, render_params(cfg), SMALL.to_json()))
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


def _samples(folder):
    """(sample json, mp4 bytes) of every clip in a shard folder, in sample-key order."""
    import json
    import tarfile

    out = {}
    for shard in sorted(folder.glob("*.tar")):
        with tarfile.open(shard) as t:
            for m in t.getmembers():
                key, ext = m.name.split(".", 1)
                out.setdefault(key, {})[ext] = t.extractfile(m).read()
    return [(json.loads(v["json"]), v["mp4"]) for _, v in sorted(out.items())]


def test_pretrain_ids_and_split_consistent(roots):
    """Pretraining clips belong to split "train" everywhere: ids, sample json, sizes.json, synthetic.json."""
    import json

    root = roots[0]
    man = read_manifest(root / "pretrain")
    assert [i for ids in man["ids"].values() for i in ids] == [f"pretrain_train_{i:06d}" for i in range(6)]
    assert man["meta"]["split"] == "train" and man["meta"]["version"] == VERSION
    metas = [m for m, _ in _samples(root / "pretrain")]
    assert len(metas) == 6 and all(m["split"] == "train" and "__" not in m["id"] for m in metas)
    assert json.loads((root / RECORD).read_text())["clips"]["pretrain"] == {"train": 6, "clean": 6}


def test_clean_pretraining_clips_are_nuisance_free_twins(roots):
    """pretrain_clean/ holds the same scenes as pretrain/ (same events, order and latent scripts),
    rendered without nuisances: ids pretrain_clean_*, split "clean", other bytes."""
    root = roots[0]
    noisy, clean = _samples(root / "pretrain"), _samples(root / "pretrain_clean")
    assert [m["id"] for m, _ in clean] == [f"pretrain_clean_{i:06d}" for i in range(6)]
    assert read_manifest(root / "pretrain_clean")["meta"]["split"] == "clean"
    for (mn, vn), (mc, vc) in zip(noisy, clean):
        assert mc["split"] == "clean" and mc["events"] == mn["events"] and mc["latent"] == mn["latent"]
        assert vc != vn


def test_root_of_an_older_generator_version_is_regenerated(tmp_path):
    """Files of an older generator (e.g. the old pretraining ids) are replaced, never mixed with new ones."""
    import json

    cfg = data_config("tiny")
    tiny = dataclasses.replace(SMALL, pretrain_clips=2, splits={}, tasks=())
    root = ensure_synthetic(tmp_path / "bench", cfg, seed=0, workers=1, spec=tiny, progress=False)
    rec = json.loads((root / RECORD).read_text())
    (root / RECORD).write_text(json.dumps({**rec, "version": VERSION - 1}))
    (root / "pretrain" / "from_old_generator").write_text("x")
    assert ensure_synthetic(root, cfg, seed=0, workers=1, spec=tiny, progress=False) == root
    assert json.loads((root / RECORD).read_text())["version"] == VERSION
    assert not (root / "pretrain" / "from_old_generator").exists()
    assert read_manifest(root / "pretrain")["ids"] == {"pretrain-000000.tar": ["pretrain_train_000000",
                                                                               "pretrain_train_000001"]}
    assert sorted(p.name for p in tmp_path.iterdir()) == [".bench.lock", "bench"]  # no .tmp-/.old- left
    (root / RECORD).write_text(json.dumps({**rec, "version": VERSION - 1, "seed": 5}))
    with pytest.raises(ValueError, match="different"):  # another request, not just an older generator
        ensure_synthetic(root, cfg, seed=0, workers=1, spec=tiny, progress=False)


def test_paper_preset_has_enough_shards_for_the_loader_slots():
    """~4.5 MB paper clips in 1 GB shards gave ~45 shards for 10,000 clips, fewer than 8 GPUs x 10 workers."""
    paper = preset("paper")
    assert PAPER_SHARDS >= 8 * 10
    for n in (paper.pretrain_clips, *paper.splits.values()):
        per = clips_per_shard(n, "paper")
        assert -(-n // per) >= min(n, PAPER_SHARDS) and per * 4.5e6 < 1e9  # the 1 GB cap never merges them
    assert -(-paper.pretrain_clips // clips_per_shard(paper.pretrain_clips, "paper")) >= 128
    assert clips_per_shard(320, "tiny") == 40 and clips_per_shard(6, "tiny", shards=3) == 2
    assert clips_per_shard(10_000, "paper", shard_clips=7) == 7


def test_cli_shards_option(tmp_path, capsys):
    from data.synthetic.__main__ import main

    out = tmp_path / "syn"
    assert main(["--out", str(out), "--scale", "tiny", "--workers", "1", "--pretrain-clips", "6",
                 "--split-clips", "1", "0", "0", "--shards", "3"]) == 0
    assert list(read_manifest(out / "pretrain")["shards"].values()) == [2, 2, 2]
    assert read_manifest(out / "ucf_like" / "train")["total"] == 1
