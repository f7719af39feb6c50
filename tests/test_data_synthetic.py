"""Synthetic benchmark: layout, determinism across worker counts, labels, concurrent ensure, the
version-5 event grid (pretraining and bind_like timelines), the held-out pretraining split and the
size presets."""
from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

from data.pipeline import make_downstream_loader, make_pretrain_loader, resolve_folder
from data.shards import read_classes, read_manifest
from data.synthetic import vocab
from data.synthetic.generate import PAPER_SHARDS, RECORD, clips_per_shard, ensure_synthetic, generate, render_clip
from data.synthetic.scenes import sample_scene
from data.synthetic.spec import VERSION, data_config, preset, render_params
from data.decode import decode_clip

SMALL = dataclasses.replace(preset("tiny"), pretrain_clips=6, pretrain_val_clips=3,
                            splits={"train": 8, "val": 2, "test": 2})
TASKS = ("ucf_like", "esc_like", "ks_like", "bind_like", "charades_like")


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("syn")
    cfg = data_config("tiny")
    return generate(base / "a", cfg, SMALL, seed=7, workers=1, progress=False), \
        generate(base / "b", cfg, SMALL, seed=7, workers=2, progress=False, shard_clips=40)


def test_layout(roots):
    root = roots[0]
    assert read_manifest(root / "pretrain")["total"] == 6
    assert read_manifest(root / "pretrain_val")["total"] == 3
    assert not (root / "pretrain_clean").exists()  # version 4's nuisance-free twins are gone
    assert tuple(SMALL.tasks) == TASKS
    for task in TASKS:
        for split, n in SMALL.splits.items():
            assert read_manifest(root / task / split)["total"] == n
        c = read_classes(root / task)
        assert c["multilabel"] == (task == "charades_like")
    assert read_manifest(root / "esc_like" / "train")["meta"]["modalities"] == ["audio"]
    assert len(read_classes(root / "charades_like")["classes"]) == len(vocab.CHARADES_LABELS) == 20
    assert read_classes(root / "bind_like")["classes"] == list(vocab.BIND_NAMES)
    assert len(vocab.BIND_NAMES) == len(vocab.BIND_MAPS) == 4


def test_same_seed_same_data_whatever_the_workers(roots):
    a, b = roots
    for sub in ["pretrain", "pretrain_val", *(f"{t}/{s}" for t in TASKS for s in SMALL.splits)]:
        assert (a / sub / "sizes.json").read_bytes() == (b / sub / "sizes.json").read_bytes()
    for t in sorted((a / "ks_like" / "train").glob("*.tar")):  # tar bytes too (fixed mtime, x264 1 thread)
        assert t.read_bytes() == (b / "ks_like" / "train" / t.name).read_bytes()
    cfg = data_config("tiny")
    job = ("pretrain", "train", 3, None, 7, render_params(cfg), SMALL.to_json())
    one, two = render_clip(job), render_clip(job)
    assert one[0] == two[0] == "pretrain_train_000003"
    d1 = decode_clip(one[1], np.arange(64), 8, np.array([0]), 64000, 8000, duration=8.0)
    d2 = decode_clip(two[1], np.arange(64), 8, np.array([0]), 64000, 8000, duration=8.0)
    assert np.array_equal(d1.video, d2.video) and np.array_equal(d1.audio, d2.audio)
    assert one[2] == next(m for m, _ in _samples(a / "pretrain") if m["id"] == one[0])  # as generated
    other = render_clip(("pretrain", "train", 3, None, 8, render_params(cfg), SMALL.to_json()))
    assert other[1] != one[1]


def test_labels_balanced_and_charades_order():
    cfg = data_config("tiny")
    rp, sj = render_params(cfg), SMALL.to_json()
    labels = [render_clip(("ucf_like", "train", i, i % 8, 0, rp, sj))[2]["label"] for i in range(3)]
    assert labels == [0, 1, 2]
    from data.synthetic.generate import _labels

    for task, c in (("ucf_like", 8), ("bind_like", 4)):  # a balanced, seeded order
        ys = _labels(task, "train", 4 * c, 0, SMALL)
        assert sorted(ys) == sorted(list(range(c)) * 4) and ys == _labels(task, "train", 4 * c, 0, SMALL)
    assert _labels("pretrain", "train", 3, 0, SMALL) == [None] * 3  # no latent scripts any more
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
    assert b["video"].shape == (2, 8, 8, 32, 32, 3) and b["audio"].shape == (2, 8, 1, 40, 32)
    b = next(iter(make_downstream_loader(cfg, roots[0] / "charades_like", "test", segments=8, train=False,
                                         batch_size=2)))
    assert b["labels"].shape == (2, 20) and b["video"].shape == (2, 1, 8, 8, 32, 32, 3)
    assert resolve_folder(roots[0] / "pretrain") == roots[0] / "pretrain"


def test_ensure_synthetic_concurrent_and_checked(tmp_path):
    cfg = data_config("tiny")
    tiny = dataclasses.replace(SMALL, pretrain_clips=2, pretrain_val_clips=0, splits={"train": 1}, tasks=("esc_like",))
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
    assert json.loads((root / RECORD).read_text())["clips"]["pretrain"] == {"train": 6, "val": 3}


def test_pretrain_val_is_a_held_out_split(roots):
    """pretrain_val/ holds other pretraining clips (split "val", ids pretrain_val_*, events drawn from their
    own RNG stream), in the pretraining layout the pretraining loader reads."""
    root = roots[0]
    man = read_manifest(root / "pretrain_val")
    assert man["meta"]["split"] == "val" and man["meta"]["task"] == "pretrain" and man["meta"]["version"] == VERSION
    ids = [i for v in man["ids"].values() for i in v]
    assert ids == [f"pretrain_val_{i:06d}" for i in range(3)]
    train, val = _samples(root / "pretrain"), _samples(root / "pretrain_val")
    assert [m["id"] for m, _ in val] == ids and all(m["split"] == "val" and "latent" not in m for m, _ in val)
    assert not {m["id"] for m, _ in train} & set(ids)
    for (mt, vt), (mv, vv) in zip(train, val):  # same index, another clip
        assert mt["events"] != mv["events"] and vt != vv
    cfg = data_config("tiny")
    cfg.num_workers = 0
    b = next(iter(make_pretrain_loader(cfg, root / "pretrain_val", batch_size=3, batches_per_epoch=1)))
    assert b["video"].shape == (3, 8, 8, 32, 32, 3)


def _grid_ok(events, spec, seg_s=1.0, segments=8):
    """Events [etype, vis, aud, t0, t1] (json) sit one per segment, inside it, within the onset jitter."""
    assert len(events) == segments
    j = spec.onset_jitter * seg_s + 1e-3  # json rounds times to ms
    for k, (_, _, _, t0, t1) in enumerate(events):
        assert k * seg_s - 1e-3 <= t0 <= k * seg_s + j and (k + 1) * seg_s - j <= t1 <= (k + 1) * seg_s + 1e-3
        assert t1 - t0 >= (1 - 2 * spec.onset_jitter) * seg_s - 2e-3


def counts(values):
    return sorted(np.unique(values, return_counts=True)[1].tolist())


def even_counts(n: int, k: int) -> list[int]:
    """How often each of k types shows on n segments when spread as evenly as n allows (sorted)."""
    return sorted(n // k + (i < n % k) for i in range(k))


def test_pretraining_events_are_on_the_segment_grid(roots):
    """Every pretraining clip (train and val): one bound event type (v_i with a_i) per segment;
    types_per_clip distinct types, each on S / k segments as evenly as S allows (version 9's k = 7: one
    type twice, six once)."""
    k = SMALL.types_per_clip
    for folder in ("pretrain", "pretrain_val"):
        for meta, _ in _samples(roots[0] / folder):
            ev = meta["events"]
            _grid_ok(ev, SMALL)
            types = [e[0] for e in ev]
            assert all(0 <= t < 8 and e[1] == e[2] == t for t, e in zip(types, ev))  # bound: v_i with a_i
            assert len(set(types)) == k and counts(types) == even_counts(8, k)
            assert "label" not in meta and "latent" not in meta


@pytest.mark.parametrize("k", [8, 7, 4, 2])
def test_pretraining_scenes_show_each_chosen_type_equally_often(k):
    """Straight from the scene sampler: with types_per_clip = 8 every clip shows each of the 8 bound
    types exactly once per 8 segments, in a random order; with fewer (version 9's default is 7), k of them
    S / k times each, as evenly as S allows."""
    spec = dataclasses.replace(SMALL, types_per_clip=k)
    orders = set()
    for i in range(40):
        scene = sample_scene("pretrain", None, 8.0, 1.0, np.random.default_rng([3, i]), spec)
        ev = [[e.etype, e.vis, e.aud, e.t0, e.t1] for e in scene.events]
        _grid_ok(ev, spec)
        types = [e[0] for e in ev]
        assert len(set(types)) == k and counts(types) == even_counts(8, k)
        if k == 8:
            assert sorted(types) == list(range(8))
        orders.add(tuple(types))
    assert len(orders) > 30  # random orders (and sets), not a fixed script


@pytest.mark.parametrize("coupled", [True, False])
def test_event_latent_couples_what_is_seen_with_what_is_heard(coupled):
    """v6: one latent per event sets size + brightness and loudness + pitch. Coupled, loudness is an exact
    increasing function of size and pitch of brightness; uncoupled (the control), they are independent
    draws with the same marginals."""
    spec = dataclasses.replace(SMALL, event_coupling=coupled)
    ev = [e for i in range(60) for e in sample_scene("pretrain", None, 8.0, 1.0, np.random.default_rng([5, i]), spec).events]
    size, bright = np.array([e.size for e in ev]), np.array([e.bright for e in ev])
    gain_db, pitch = 20 * np.log10([e.gain for e in ev]), np.array([e.pitch for e in ev])
    lo, hi = spec.event_size
    assert lo <= size.min() and size.max() <= hi and spec.event_loudness_db[0] <= gain_db.min() <= gain_db.max() <= 0
    assert np.abs(pitch - 1).max() <= spec.event_pitch
    r_size, r_bright = np.corrcoef(size, gain_db)[0, 1], np.corrcoef(bright, pitch)[0, 1]
    if coupled:
        assert r_size > 0.999 and r_bright > 0.999
    else:
        assert abs(r_size) < 0.15 and abs(r_bright) < 0.15  # 480 events: |r| of independent draws ~0.05


def test_bind_like_clips_bind_by_the_class_map(roots):
    """bind_like: the class decides which sound goes with which shape (aud = BIND_MAPS[label][vis]); both
    unimodal marginals are the same for every class."""
    assert vocab.BIND_MAPS[0] == tuple(range(8))  # class 0: the pretraining binding
    for m in vocab.BIND_MAPS:
        assert sorted(m) == list(range(8))  # a permutation: the audio marginal follows the visual one
    assert all(any(m[v] != v for v in range(8)) for m in vocab.BIND_MAPS[1:])
    k = SMALL.types_per_clip
    n = 0
    for split in SMALL.splits:
        for meta, _ in _samples(roots[0] / "bind_like" / split):
            ev, label = meta["events"], meta["label"]
            _grid_ok(ev, SMALL)
            vis, aud = [e[1] for e in ev], [e[2] for e in ev]
            assert all(e[0] == -1 for e in ev) and all(a == vocab.BIND_MAPS[label][v] for v, a in zip(vis, aud))
            assert len(set(vis)) == len(set(aud)) == k and counts(vis) == counts(aud) == even_counts(8, k)
            n += 1
    assert n == sum(SMALL.splits.values())
    # with all 8 types per clip, each visual and each audio signature appears exactly once
    spec = dataclasses.replace(SMALL, types_per_clip=8)
    for label in range(len(vocab.BIND_MAPS)):
        for i in range(5):
            scene = sample_scene("bind_like", label, 8.0, 1.0, np.random.default_rng([label, i]), spec)
            vis, aud = [e.vis for e in scene.events], [e.aud for e in scene.events]
            assert sorted(vis) == sorted(aud) == list(range(8)) and scene.label == label
            assert aud == [vocab.BIND_MAPS[label][v] for v in vis]


def test_smoke_and_tiny_presets():
    """smoke: the tiny renders with a few clips (the test suite's profile); tiny: 1,000 test clips per
    task and a pretraining set >= 10x the labelled training split."""
    smoke, tiny, paper = preset("smoke"), preset("tiny"), preset("paper")
    assert smoke.pretrain_clips + smoke.pretrain_val_clips + len(smoke.tasks) * sum(smoke.splits.values()) <= 300
    assert smoke.tasks == tiny.tasks and 0 < smoke.pretrain_val_clips <= smoke.pretrain_clips
    assert all(smoke.splits[s] >= 1 for s in ("train", "val", "test"))
    assert tiny.splits["test"] >= 1000 and tiny.pretrain_clips >= 10 * tiny.splits["train"]
    assert (tiny.pretrain_clips, tiny.splits) == (2048, {"train": 128, "val": 200, "test": 1000})
    assert tiny.pretrain_val_clips > 0 and paper.pretrain_val_clips > 0
    assert "bind_like" in tiny.tasks and "bind_like" in paper.tasks
    with pytest.raises(ValueError, match="smoke"):
        preset("huge")
    sc, tc = data_config("smoke"), data_config("tiny")
    assert sc.root == "data/cache/synthetic/smoke" and tc.root == "data/cache/synthetic/tiny"
    assert sc.resolved_synthetic_scale() == "smoke" and render_params(sc) == render_params(tc)
    assert clips_per_shard(50, "smoke") == clips_per_shard(50, "tiny") == 40
    # the smoke profile's data section is what `python -m data.synthetic --scale smoke` builds
    from experiments.config import load_config

    cfg = load_config("experiments/rq3_sharing/configs/part.yaml", profile="smoke")
    assert cfg.data.root == sc.root and cfg.data.resolved_synthetic_scale() == "smoke"
    assert render_params(cfg.data) == render_params(sc) and cfg.data.segments == sc.segments
    assert cfg.pretrain.heldout_dataset == "pretrain_val"
    assert {d.task for d in cfg.downstream} == {"ks_like", "bind_like"}


def test_root_of_an_older_generator_version_is_regenerated(tmp_path):
    """Files of an older generator (e.g. the old pretraining ids) are replaced, never mixed with new ones."""
    import json

    cfg = data_config("tiny")
    tiny = dataclasses.replace(SMALL, pretrain_clips=2, pretrain_val_clips=1, splits={}, tasks=())
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
    # smoke: the tiny renders with 8 held-out pretraining clips (tiny's 256 would take minutes)
    assert main(["--out", str(out), "--scale", "smoke", "--workers", "1", "--pretrain-clips", "6",
                 "--split-clips", "1", "0", "0", "--shards", "3"]) == 0
    assert list(read_manifest(out / "pretrain")["shards"].values()) == [2, 2, 2]
    assert read_manifest(out / "pretrain_val")["total"] == preset("smoke").pretrain_val_clips
    assert len(read_manifest(out / "pretrain_val")["shards"]) >= 3
    assert read_manifest(out / "ucf_like" / "train")["total"] == 1
    assert read_manifest(out / "bind_like" / "train")["total"] == 1


def test_cli_corpus_knobs_reach_the_spec_and_bad_values_fail(tmp_path, capsys):
    """--types-per-clip, --background and --event-size land in synthetic.json's spec and in the scenes; values out of
    range fail before anything is written."""
    from data.synthetic.__main__ import main

    for bad in (["--types-per-clip", "9"], ["--types-per-clip", "0"], ["--background", "0.6", "0.4"],
                ["--background", "-0.1", "0.5"], ["--event-size", "0.2", "0.35"], ["--event-size", "0", "0.2"]):
        with pytest.raises(SystemExit) as e:
            main(["--out", str(tmp_path / "bad"), "--scale", "smoke", *bad])
        assert e.value.code == 2 and bad[0] in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    out = tmp_path / "syn"
    assert main(["--out", str(out), "--scale", "smoke", "--workers", "1", "--pretrain-clips", "2",
                 "--split-clips", "0", "0", "0", "--types-per-clip", "4", "--background", "0.3", "0.4", "--event-size", "0.24", "0.3"]) == 0
    spec = json.loads((out / RECORD).read_text())["spec"]
    assert spec["types_per_clip"] == 4 and spec["background"] == [0.3, 0.4] and spec["event_size"] == [0.24, 0.3]
    narrow = dataclasses.replace(SMALL, background=(0.3, 0.4))
    bgs = [sample_scene("pretrain", None, 8.0, 1.0, np.random.default_rng(i), narrow).bg for i in range(20)]
    cols = np.concatenate([np.stack([b["a"], b["b"]]) for b in bgs])
    assert cols.min() >= 0.3 and cols.max() <= 0.4


def test_tasks_on_demand_give_the_bytes_of_a_whole_root(roots, tmp_path):
    """A root grown task by task (what runs ask for) holds the same files as one generated whole; a task
    folder left by a crash before the record listed it is replaced; an unknown task is refused."""
    cfg = data_config("tiny")
    root = tmp_path / "grown"
    ensure_synthetic(root, cfg, seed=7, workers=1, spec=SMALL, progress=False, tasks=["pretrain"])
    assert set(json.loads((root / RECORD).read_text())["clips"]) == {"pretrain"}
    assert sorted(p.name for p in root.iterdir()) == ["pretrain", "pretrain_val", RECORD]
    (root / "esc_like").mkdir()
    (root / "esc_like" / "from_a_crash").write_text("x")
    ensure_synthetic(root, cfg, seed=7, workers=1, spec=SMALL, progress=False, tasks=["esc_like", "pretrain"])
    assert not (root / "esc_like" / "from_a_crash").exists()
    ensure_synthetic(root, cfg, seed=7, workers=1, spec=SMALL, progress=False)  # the rest
    whole = roots[0]
    rec, rec_whole = (json.loads((r / RECORD).read_text()) for r in (root, whole))
    assert rec["clips"] == rec_whole["clips"] and rec["spec"] == rec_whole["spec"]
    files = sorted(p.relative_to(whole) for p in whole.rglob("*") if p.is_file() and p.name != RECORD)
    assert files == sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file() and p.name != RECORD)
    assert all((whole / f).read_bytes() == (root / f).read_bytes() for f in files)
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    with pytest.raises(ValueError, match="no task"):
        ensure_synthetic(root, cfg, seed=7, workers=1, spec=SMALL, progress=False, tasks=["kinetics_sounds"])


def test_every_tiny_run_reads_only_tasks_the_benchmark_has():
    """Runs ask ensure_synthetic for the tasks they read (experiments/stages.py); every RQ config's must exist."""
    from data.synthetic.generate import all_tasks
    from experiments.config import load_config

    configs = [p for p in Path(__file__).parents[1].glob("experiments/rq*/configs/*.yaml") if not p.name.startswith("_")]
    assert len(configs) >= 19
    for profile in ("tiny", "smoke"):
        for path in configs:
            cfg = load_config(path, [], profile)
            if profile in cfg.profiles:
                assert set(cfg.synthetic_tasks) <= set(all_tasks(preset(profile))), (path, cfg.synthetic_tasks)
