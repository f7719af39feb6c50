"""WebDataset loaders: batch layout, A/V alignment, skipped samples, rank/worker splits, resume."""
from __future__ import annotations

import json

import pytest
import torch

from data import skipped
from data.pipeline import make_downstream_loader, make_pretrain_loader, report_skipped, skipped_summary
from data.shards import read_manifest
from tests.fixtures.data_media import corrupt, make_clip, meta, tiny_cfg, write_folder, write_task


@pytest.fixture(scope="module")
def clips():
    return {d: make_clip(d) for d in (4.0, 6.0)}


def _samples(clips, n, prefix="c", duration=4.0, **kw):
    return [(f"{prefix}{i:03d}", clips[duration], meta(f"{prefix}{i:03d}", duration, **kw)) for i in range(n)]


def test_pretrain_batch_layout(tmp_path, clips):
    write_folder(tmp_path / "pre", _samples(clips, 6, duration=6.0), maxcount=2)
    loader = make_pretrain_loader(tiny_cfg(4), tmp_path / "pre", batch_size=3, batches_per_epoch=3)
    batches = list(loader)
    assert len(batches) == len(loader) == 3
    b = batches[0]
    assert set(b) == {"video", "audio", "key"}
    # workers deliver uint8 frames (data.normalize_video "step"); model_inputs gives what the model takes
    assert b["video"].shape == (3, 4, 8, 32, 32, 3) and b["video"].dtype == torch.uint8
    assert b["audio"].shape == (3, 4, 1, 40, 32) and b["audio"].dtype == torch.float32
    assert len(b["key"]) == 3 and all(isinstance(k, str) for k in b["key"])
    video, audio = loader.model_inputs(b)
    assert video.shape == (3, 4, 3, 8, 32, 32) and video.dtype == torch.float32 and video.is_contiguous()
    assert audio is b["audio"]


@pytest.mark.parametrize("train", [True, False])
def test_normalize_in_step_or_worker_gives_the_same_model_inputs(tmp_path, clips, train):
    """data.normalize_video only moves where the float conversion happens: equal inputs, bit for bit."""
    write_task(tmp_path / "t", {"train": _samples(clips, 4, label=0)}, ["a"])
    got = {}
    for where in ("step", "worker"):
        cfg = tiny_cfg(2)
        cfg.normalize_video = where
        loader = make_downstream_loader(cfg, tmp_path / "t", "train", segments=2, train=train, batch_size=4,
                                        seed=3, spatial_crops=1 if train else 3)
        b = next(iter(loader))
        assert b["video"].dtype == (torch.uint8 if where == "step" else torch.float32)
        got[where] = loader.model_inputs(b)[0]
    assert got["step"].dtype == torch.float32 and torch.equal(got["step"], got["worker"])


def test_segment_frames_and_mel_agree_in_time(tmp_path):
    """Brightness and a tone switch on at 1.5 s: segment 1 (1-2 s) must switch half way in both."""
    data = make_clip(4.0, onset=1.5)
    write_task(tmp_path / "t", {"test": [("a", data, meta("a", 4.0, label=0))]}, ["x"])
    cfg = tiny_cfg(4)
    cfg.video.mean, cfg.video.std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    loader = make_downstream_loader(cfg, tmp_path / "t", "test", segments=4, train=False, batch_size=1)
    video, audio = loader.model_inputs(next(iter(loader)))
    v, a = video[0, 0], audio[0, 0]  # [S,3,T,H,W], [S,1,F,Tm]
    light = v.mean(dim=(1, 3, 4))  # [S, T]
    loud = a[:, 0].max(dim=1).values  # [S, Tm]: the tone's mel bin
    assert (light[0] < 0.2).all() and (light[2:] > 0.8).all() and (loud[0] < -8).all() and (loud[2:] > -6).all()
    frame_on = int((light[1] > 0.5).float().argmax())  # first bright frame of segment 1
    mel_on = int((loud[1] > 0.5 * (loud[0].mean() + loud[2].mean())).float().argmax())
    assert frame_on == 4  # 1.5 s = frame 4 of the 8 in segment 1
    assert abs(mel_on / 32 - frame_on / 8) <= 2 / 32  # same instant in the spectrogram (+- 2 hops)


def test_broken_samples_skipped_and_counted(tmp_path, clips):
    good = _samples(clips, 6, label=0)
    bad = [("bad0", corrupt(clips[4.0]), meta("bad0", 4.0, label=0)),
           ("noaud", make_clip(4.0, audio=False), meta("noaud", 4.0, audio=False, label=0)),
           ("noaud2", make_clip(4.0, audio=False), meta("noaud2", 4.0, label=0)),  # json lies; the decoder notices
           ("short", make_clip(0.5), meta("short", 0.5, label=0))]
    samples = good[:3] + bad + good[3:]
    folder = tmp_path / "pre"
    write_folder(folder, samples, maxcount=3)
    from data.shards import ShardWriter  # a sample whose json is unreadable
    with ShardWriter(tmp_path / "extra", maxcount=9) as w:
        w.write({"__key__": "x", "mp4": clips[4.0], "json": b"{not json"})
    skipped.reset()
    loader = make_downstream_loader(tiny_cfg(4, workers=2), _task(tmp_path, folder), "test", segments=2,
                                    train=False, batch_size=4, modalities=["visual", "audio"])
    keys = [k for b in loader for k in b["key"]]
    assert sorted(keys) == sorted(s[0] for s in good)
    counts = report_skipped()
    assert counts == {"corrupt": 1, "no_audio": 2, "too_short": 1}
    assert skipped_summary() == counts and report_skipped() == {}
    loader2 = make_downstream_loader(tiny_cfg(4), _task(tmp_path, tmp_path / "extra"), "test", segments=2,
                                     train=False, batch_size=4)
    assert list(loader2) == []
    assert report_skipped() == {"bad_metadata": 1}


@pytest.mark.parametrize("workers", [0, 2])
def test_truncated_shard_counts_its_cut_sample_once(tmp_path, clips, workers):
    """A shard cut short inside a sample's mp4: the samples before it load, the cut one is skipped and
    counted once as corrupt, and the shard's read error once per pass, with one slot or with two slots
    that share the shard (splitting by sample). webdataset reports one truncation twice and every
    sharing slot saw it: 3 and 5 counts before (issue 13, item 7)."""
    import os
    import tarfile

    folder = tmp_path / "pre"
    write_folder(folder, _samples(clips, 4, label=0), maxcount=9)  # one shard
    shard = next(folder.glob("*.tar"))
    with tarfile.open(shard) as t:
        members = t.getmembers()
    cut = next(m for m in members if m.name.startswith("c002") and m.name.endswith(".mp4"))
    os.truncate(shard, cut.offset_data + cut.size // 2)
    skipped.reset()
    loader = make_downstream_loader(tiny_cfg(4, workers=workers), _task(tmp_path, folder), "test", segments=2,
                                    train=False, batch_size=4, modalities=["visual", "audio"])
    keys = sorted(k for b in loader for k in b["key"])
    assert keys == ["c000", "c001"]
    assert report_skipped() == {"corrupt": 1, "read_error": 1}


def _task(tmp_path, folder):
    """Make `folder` the test split of a one-class task."""
    task = tmp_path / f"task_{folder.name}"
    task.mkdir(exist_ok=True)
    (task / "test").symlink_to(folder)
    (task / "classes.json").write_text(json.dumps({"classes": ["x"], "multilabel": False}))
    return task


def test_ranks_and_workers_disjoint_equal_counts(tmp_path, clips):
    write_folder(tmp_path / "pre", _samples(clips, 16), maxcount=2)  # 8 shards for 2 ranks x 2 workers
    man = read_manifest(tmp_path / "pre")
    shard_of = {i: s for s, ids in man["ids"].items() for i in ids}
    seen = []
    for rank in range(2):
        loader = make_pretrain_loader(tiny_cfg(2, workers=2), tmp_path / "pre", batch_size=2, batches_per_epoch=5,
                                      rank=rank, world_size=2, seed=3, epoch=1)
        batches = list(loader)
        assert len(batches) == 5
        seen.append({shard_of[k] for b in batches for k in b["key"]})
    assert not seen[0] & seen[1]


def test_fewer_shards_than_slots_still_disjoint(tmp_path, clips):
    write_folder(tmp_path / "pre", _samples(clips, 8), maxcount=8)  # 1 shard, 4 slots: split by sample
    keys = []
    for rank in range(2):
        loader = make_pretrain_loader(tiny_cfg(2, workers=2), tmp_path / "pre", batch_size=1, batches_per_epoch=4,
                                      rank=rank, world_size=2, shuffle_buffer=0)
        keys.append([k for b in loader for k in b["key"]])
    assert len(keys[0]) == len(keys[1]) == 4 and not set(keys[0]) & set(keys[1])


@pytest.mark.parametrize("workers", [0, 2])
def test_skip_batches_resumes_identically(tmp_path, clips, workers):
    write_folder(tmp_path / "pre", _samples(clips, 10), maxcount=3)
    kw = dict(batch_size=2, batches_per_epoch=7, seed=5, epoch=2, num_workers=workers)
    full = list(make_pretrain_loader(tiny_cfg(2), tmp_path / "pre", **kw))
    rest = list(make_pretrain_loader(tiny_cfg(2), tmp_path / "pre", skip_batches=3, **kw))
    assert len(full) == 7 and len(rest) == 4
    for a, b in zip(full[3:], rest):
        assert a["key"] == b["key"]
        torch.testing.assert_close(a["video"], b["video"])
        torch.testing.assert_close(a["audio"], b["audio"])
    other = list(make_pretrain_loader(tiny_cfg(2), tmp_path / "pre", **{**kw, "epoch": 3}))
    assert [b["key"] for b in other] != [b["key"] for b in full]  # the epoch reseeds the order


def test_eval_loader_each_sample_once_with_views(tmp_path, clips):
    samples = [(f"c{i}", clips[6.0], meta(f"c{i}", 6.0, labels=[i % 3, 4])) for i in range(7)]
    write_task(tmp_path / "t", {"test": samples}, ["a", "b", "c", "d", "e"], multilabel=True, maxcount=2)
    keys = []
    for rank in range(2):
        loader = make_downstream_loader(tiny_cfg(workers=2), tmp_path / "t", "test", segments=3, train=False,
                                        batch_size=2, temporal_views=2, spatial_crops=3, rank=rank, world_size=2)
        for b in loader:
            assert b["video"].shape[1:] == (6, 3, 8, 32, 32, 3) and b["audio"].shape[1:] == (6, 3, 1, 40, 32)
            assert loader.model_inputs(b)[0].shape[1:] == (6, 3, 3, 8, 32, 32)
            assert b["labels"].dtype == torch.float32 and b["labels"].shape[1] == 5
            assert b["labels"].sum(dim=1).tolist() == [2.0] * len(b["key"])
            keys += b["key"]
    assert sorted(keys) == sorted(s[0] for s in samples)


def test_downstream_train_single_label_and_audio_only(tmp_path, clips):
    av = [(f"c{i}", clips[4.0], meta(f"c{i}", 4.0, label=i % 2)) for i in range(6)]
    write_task(tmp_path / "t", {"train": av}, ["a", "b"])
    loader = make_downstream_loader(tiny_cfg(), tmp_path / "t", "train", segments=1, train=True, batch_size=4)
    assert len(loader) == 2
    b = next(iter(loader))
    assert b["label"].dtype == torch.int64 and b["video"].shape == (4, 1, 8, 32, 32, 3)
    aud = [(f"a{i}", make_clip(4.0, video=False), meta(f"a{i}", 4.0, video=False, label=i % 2)) for i in range(4)]
    write_task(tmp_path / "esc", {"train": aud}, ["a", "b"], modalities=("audio",))
    b = next(iter(make_downstream_loader(tiny_cfg(), tmp_path / "esc", "train", segments=2, train=True, batch_size=2)))
    assert "video" not in b and b["audio"].shape == (2, 2, 1, 40, 32)


def test_out_of_range_single_label_is_bad_metadata(tmp_path, clips):
    """label >= num_classes (or negative, or not an integer) is skipped as bad metadata, never fed to the loss."""
    from data.errors import BadMetadata
    from data.samples import SampleSpec, process_sample
    from data.shards import make_sample

    spec = SampleSpec(mode="eval", segments=1, multilabel=False, num_classes=2)
    for bad in (2, 7, -1, "1", 1.5, True, None):
        sample = make_sample("x", clips[4.0], meta("x", 4.0, label=bad))
        with pytest.raises(BadMetadata):
            process_sample(sample, tiny_cfg(), spec, check=True)
    assert process_sample(make_sample("x", clips[4.0], meta("x", 4.0, label=1)), tiny_cfg(), spec)["label"] == 1
    multi = SampleSpec(mode="eval", segments=1, multilabel=True, num_classes=3)
    for bad in ([0, 3], [-1], "01", [0.5], 2):
        with pytest.raises(BadMetadata):
            process_sample(make_sample("x", clips[4.0], meta("x", 4.0, labels=bad)), tiny_cfg(), multi, check=True)
    samples = [(f"c{i}", clips[4.0], meta(f"c{i}", 4.0, label=i % 2)) for i in range(4)]
    samples += [("big", clips[4.0], meta("big", 4.0, label=2)), ("neg", clips[4.0], meta("neg", 4.0, label=-1))]
    write_task(tmp_path / "t", {"test": samples}, ["a", "b"])
    skipped.reset()
    keys = [k for b in make_downstream_loader(tiny_cfg(), tmp_path / "t", "test", segments=1, train=False,
                                              batch_size=4) for k in b["key"]]
    assert sorted(keys) == ["c0", "c1", "c2", "c3"]
    assert report_skipped() == {"bad_metadata": 2}


@pytest.mark.parametrize("error", [ValueError("boom"), "clip"])
def test_endless_unusable_samples_end_in_the_same_clear_error(tmp_path, clips, monkeypatch, error):
    """A training stream where every sample fails stops with the RuntimeError that names the skip counts,
    whether the samples raise ClipErrors or something unexpected (which is counted as corrupt)."""
    import data.pipeline
    from data.errors import CorruptClip

    def broken(*args, **kwargs):
        raise CorruptClip("bad") if error == "clip" else error

    write_folder(tmp_path / "pre", _samples(clips, 3), maxcount=2)
    monkeypatch.setattr(data.pipeline, "process_sample", broken)
    loader = make_pretrain_loader(tiny_cfg(2), tmp_path / "pre", batch_size=1, batches_per_epoch=2, num_workers=0)
    with pytest.raises(RuntimeError, match=r"consecutive unusable samples .*'corrupt': \d+") as info:
        list(loader)
    if error != "clip":
        assert info.value.__cause__ is error  # the last sample's own error stays attached
