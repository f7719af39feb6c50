"""data.decode_cache: a clip decoded once gives, from the cache, exactly what decoding gives (every mode,
whole loaders with workers), any change of bytes, plan or settings misses, and a broken or unwritable
cache costs a decode, never a wrong or lost batch."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from data import samples as samples_mod
from data.decode_cache import DecodeCache
from data.pipeline import make_downstream_loader, make_pretrain_loader
from data.samples import SampleSpec, process_sample
from data.shards import make_sample
from tests.fixtures.data_media import make_clip, meta, tiny_cfg, write_folder, write_task

MODES = [SampleSpec(mode="pretrain", segments=4),
         SampleSpec(mode="train", segments=4, multilabel=False, num_classes=2),
         SampleSpec(mode="eval", segments=4, multilabel=False, num_classes=2, temporal_views=2, spatial_crops=3)]


def _sample(i: int = 0, duration: float = 6.0) -> dict:
    return make_sample(f"c{i}", make_clip(duration, onset=0.5 + 0.1 * i), meta(f"c{i}", duration, label=i % 2))


def _entries(root) -> list:
    return sorted(p for p in root.rglob("*.npz"))


def _equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k


@pytest.mark.parametrize("spec", MODES, ids=lambda s: s.mode)
def test_a_cached_clip_is_what_decoding_gives_and_is_not_decoded_again(tmp_path, monkeypatch, spec):
    off = tiny_cfg(4)
    on = dataclasses.replace(off, decode_cache=str(tmp_path / "cache"))
    sample = _sample(duration=4.0)  # 4 segments of 1 s: one pretraining plan whatever the seed
    want = process_sample(sample, off, spec, np.random.SeedSequence(7))
    first = process_sample(sample, on, spec, np.random.SeedSequence(7))  # decodes and stores
    assert len(_entries(tmp_path / "cache")) == 1
    _equal(want, first)
    want_8 = process_sample(sample, off, spec, np.random.SeedSequence(8))

    def no_decode(*a, **k):
        raise AssertionError("decoded although the cache holds the clip")

    monkeypatch.setattr(samples_mod, "decode_clip", no_decode)
    _equal(want, process_sample(sample, on, spec, np.random.SeedSequence(7)))
    if spec.mode != "train":  # another seed has the same plan here (train jitters its segments): a hit
        _equal(want_8, process_sample(sample, on, spec, np.random.SeedSequence(8)))


def test_the_key_changes_with_bytes_plan_and_settings():
    data, frames, starts = b"mp4", np.arange(8).reshape(1, 1, 8), np.array([[0]])
    base = DecodeCache.key(data, 8.0, 8000, arrays=(frames, starts))
    assert base == DecodeCache.key(data, 8.0, 8000, arrays=(frames.copy(), starts.copy()))
    assert len({base, DecodeCache.key(b"mp5", 8.0, 8000, arrays=(frames, starts)),
                DecodeCache.key(data, 8.0, 16000, arrays=(frames, starts)),
                DecodeCache.key(data, 8.0, 8000, arrays=(frames + 1, starts)),
                DecodeCache.key(data, 8.0, 8000, arrays=(frames.reshape(1, 2, 4), starts)),
                DecodeCache.key(data, 8.0, 8000, arrays=(frames.astype(np.int32), starts))}) == 6


def test_other_decode_settings_get_their_own_entries(tmp_path):
    root = tmp_path / "cache"
    cfg = tiny_cfg(4)
    sample = _sample()
    spec = MODES[0]
    for c in (cfg, dataclasses.replace(cfg, audio=dataclasses.replace(cfg.audio, mel_bins=20))):
        want = process_sample(sample, c, spec, np.random.SeedSequence(1))
        _equal(want, process_sample(sample, dataclasses.replace(c, decode_cache=str(root)), spec, np.random.SeedSequence(1)))
    assert len(_entries(root)) == 2
    # the augmentation settings are not part of the key: same entry
    masks = dataclasses.replace(cfg.audio, freq_mask_rate=0.2)
    process_sample(sample, dataclasses.replace(cfg, audio=masks, decode_cache=str(root)), spec, np.random.SeedSequence(1))
    assert len(_entries(root)) == 2


def test_a_broken_entry_is_decoded_again_and_rewritten(tmp_path):
    cfg = tiny_cfg(4)
    on = dataclasses.replace(cfg, decode_cache=str(tmp_path / "cache"))
    sample, spec = _sample(), MODES[0]
    want = process_sample(sample, cfg, spec, np.random.SeedSequence(3))
    process_sample(sample, on, spec, np.random.SeedSequence(3))
    (entry,) = _entries(tmp_path / "cache")
    good = entry.read_bytes()
    entry.write_bytes(good[: len(good) // 3])  # as a crash or a full disk could leave it
    _equal(want, process_sample(sample, on, spec, np.random.SeedSequence(3)))
    assert entry.read_bytes() == good


def test_a_full_disk_warns_and_decodes(tmp_path, monkeypatch):
    """A cache that cannot be written (full disk, read-only folder) warns once and stops trying."""
    cache = DecodeCache(tmp_path / "full")

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("common.fsutil.tempfile.mkstemp", full)
    with pytest.warns(UserWarning, match="No space left"):
        cache.store("ab" * 20, {"video": np.zeros(3, np.uint8)})
    assert not cache.writable and not _entries(tmp_path)
    cache.store("cd" * 20, {"video": np.zeros(3, np.uint8)})  # no second warning, no attempt


@pytest.mark.parametrize("workers", [0, 2])
def test_whole_loaders_give_the_same_batches_from_the_cache(tmp_path, workers):
    clips = [(f"c{i}", make_clip(5.0, onset=0.3 + 0.2 * i), meta(f"c{i}", 5.0, label=i % 2)) for i in range(6)]
    write_folder(tmp_path / "pre", clips, maxcount=3)
    write_task(tmp_path / "task", {"test": clips}, ["a", "b"])
    cache = str(tmp_path / "cache")

    def batches(cfg):
        pre = make_pretrain_loader(cfg, tmp_path / "pre", batch_size=2, batches_per_epoch=3, num_workers=workers,
                                   shuffle_buffer=2, seed=5)
        test = make_downstream_loader(cfg, tmp_path / "task", "test", segments=4, train=False, batch_size=4,
                                      spatial_crops=3, num_workers=workers)
        return list(pre) + list(test)

    want = batches(tiny_cfg(4))
    cold = batches(dataclasses.replace(tiny_cfg(4), decode_cache=cache))
    stored = _entries(tmp_path / "cache")
    warm = batches(dataclasses.replace(tiny_cfg(4), decode_cache=cache))
    assert len(stored) >= 6 and _entries(tmp_path / "cache") == stored  # the warm pass only read
    for got in (cold, warm):
        assert len(got) == len(want)
        for a, b in zip(want, got):
            _equal(a, b)
