"""Shard writer/manifest and PyAV decoding of in-memory mp4s (typed errors, windows, alignment)."""
from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest

from data.decode import decode_clip, probe
from data.encode import encode_clip
from data.errors import CorruptClip, NoAudioStream, NoVideoStream
from data.shards import MANIFEST, ShardWriter, make_sample, read_manifest, shard_paths
from tests.fixtures.data_media import corrupt, make_clip, meta


def test_writer_rolls_shards_and_writes_manifest(tmp_path):
    clips = [(f"c.{i}", make_clip(1.0), meta(f"c.{i}", 1.0)) for i in range(5)]
    with ShardWriter(tmp_path, prefix="train", maxcount=2, meta={"modalities": ["visual", "audio"]}) as w:
        for cid, mp4, m in clips:
            w.write(make_sample(cid, mp4, m))
    man = read_manifest(tmp_path)
    assert man["complete"] and man["total"] == 5
    assert man["shards"] == {"train-000000.tar": 2, "train-000001.tar": 2, "train-000002.tar": 1}
    assert man["ids"]["train-000000.tar"] == ["c.0", "c.1"]
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))
    with tarfile.open(shard_paths(tmp_path, man)[0]) as t:
        names = t.getnames()
        assert names == ["c_0.json", "c_0.mp4", "c_1.json", "c_1.mp4"]  # dots out of keys
        assert json.loads(t.extractfile("c_0.json").read())["id"] == "c.0"


def test_writer_resume_keeps_finished_shards(tmp_path):
    w = ShardWriter(tmp_path, prefix="s", maxcount=2)
    for i in range(3):
        w.extra["next_input"] = i
        w.write(make_sample(f"c{i}", b"x", {"id": f"c{i}"}))
    # crash: shard 1 is still open (.tmp), manifest lists shard 0 only and is incomplete
    assert (tmp_path / "s-000001.tar.tmp").exists()
    with pytest.raises(RuntimeError, match="incomplete"):
        read_manifest(tmp_path)
    w2 = ShardWriter(tmp_path, prefix="s", maxcount=2, resume=True)
    assert w2.extra["next_input"] == 2 and w2.shards == {"s-000000.tar": 2}
    assert not (tmp_path / "s-000001.tar.tmp").exists()
    w2.write(make_sample("c2", b"x", {"id": "c2"}))
    w2.close()
    assert read_manifest(tmp_path)["ids"] == {"s-000000.tar": ["c0", "c1"], "s-000001.tar": ["c2"]}


def test_decode_windows_and_alignment():
    fps, rate = 8, 8000
    data = make_clip(6.0, fps, (48, 40), rate, onset=3.0)
    info = probe(data)
    assert info.has_video and info.has_audio and (info.width, info.height) == (48, 40)
    frames = np.array([[0, 1, 23, 24], [40, 41, 47, 47]])
    dec = decode_clip(data, frames, fps, np.array([2 * rate, 3 * rate, 5 * rate]), rate, rate, duration=6.0,
                      seek_threshold_s=1.0)  # forces seeks
    assert dec.video.shape == (2, 4, 40, 48, 3) and dec.video.dtype == np.uint8
    bright = dec.video.mean(axis=(2, 3, 4))
    assert (bright[0, :3] < 60).all() and bright[0, 3] > 180 and (bright[1] > 180).all()
    assert dec.audio.shape == (3, rate)
    assert np.abs(dec.audio[0]).max() < 0.05 and np.sqrt((dec.audio[1:] ** 2).mean(axis=1)).min() > 0.3
    full = decode_clip(data, frames, fps, np.array([2 * rate]), rate, rate, duration=6.0, seek_threshold_s=100.0)
    assert np.array_equal(full.video, dec.video)  # seeking and reading through agree


@pytest.mark.parametrize("threshold", [100.0, 0.5])  # one demux pass for both / the video seeks, audio re-reads
def test_audio_is_the_same_decoded_with_or_without_video(threshold):
    """Decoding video first must not change the audio: the rewind the audio pass used to make dropped the
    first 448 samples of an AAC track (zeros there instead of sound)."""
    rate = 8000
    data = make_clip(4.0, rate=rate, onset=0.0)  # sound from the first sample
    starts, frames = np.array([0, rate, 3 * rate]), np.array([[0, 1, 2], [20, 21, 30]])
    alone = decode_clip(data, audio_starts=starts, audio_length=rate, audio_rate=rate, duration=4.0,
                        seek_threshold_s=threshold).audio
    both = decode_clip(data, frames, 8, starts, rate, rate, duration=4.0, seek_threshold_s=threshold)
    assert np.abs(alone[0, :448]).max() > 0.1  # sound in the first 56 ms
    assert np.array_equal(both.audio, alone)
    assert np.array_equal(both.video, decode_clip(data, frames, 8, seek_threshold_s=threshold).video)


@pytest.mark.parametrize("threshold", [100.0, 0.5])
def test_benchmark_clips_audio_is_the_same_decoded_with_or_without_video(tmp_path, threshold):
    """The same on the synthetic benchmark's clips, whose AAC tracks did lose their first 448 samples to a
    rewind (the fixture clips above did not)."""
    from data.bench_loader import make_clips, raw_samples
    from data.synthetic.spec import data_config

    rate, fps = 8000, 8
    folder = make_clips(data_config("tiny"), "tiny", 4, tmp_path, 0, 1)
    starts, frames = np.array([0, rate, 5 * rate]), np.array([[0, 1, 2], [40, 41, 50]])  # seeks at 0.5
    sounding = 0
    for s in raw_samples(folder):
        alone = decode_clip(s["mp4"], audio_starts=starts, audio_length=rate, audio_rate=rate, duration=8.0,
                            seek_threshold_s=threshold).audio
        both = decode_clip(s["mp4"], frames, fps, starts, rate, rate, duration=8.0, seek_threshold_s=threshold)
        assert np.array_equal(both.audio, alone)
        sounding += bool(np.abs(alone[0, :448]).max() > 0)
    assert sounding >= 1  # some clip has sound in its first 448 samples, so a loss would show


def test_audio_past_duration_is_zero_not_aac_padding():
    data = make_clip(2.0, onset=0.0)
    out = decode_clip(data, audio_starts=np.array([8000]), audio_length=8000, audio_rate=8000, duration=1.5).audio
    assert np.abs(out[0, :4000]).max() > 0.3 and np.abs(out[0, 4000:]).max() == 0.0


def test_typed_errors():
    good = make_clip(1.0)
    with pytest.raises(CorruptClip):
        decode_clip(corrupt(good), np.arange(4), 8, np.array([0]), 800, 8000)
    with pytest.raises(CorruptClip):
        probe(b"")
    with pytest.raises(NoAudioStream):
        decode_clip(make_clip(1.0, audio=False), None, 8, np.array([0]), 800, 8000)
    with pytest.raises(NoVideoStream):
        decode_clip(make_clip(1.0, video=False), np.arange(4), 8)


def test_odd_frame_size_round_trip():
    frames = np.random.default_rng(0).integers(0, 255, (8, 31, 45, 3), dtype=np.uint8)
    data = encode_clip(frames, None, 8, None)
    dec = decode_clip(data, np.arange(8), 8)
    assert dec.video.shape == (8, 31, 45, 3)
    assert np.abs(dec.video.astype(float) - frames).mean() < 40  # lossy, but the same picture


def test_manifest_missing_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match=MANIFEST):
        read_manifest(tmp_path)


def _pyav_rgb(data: bytes) -> np.ndarray:
    """Reference: every frame through PyAV's own per-frame conversion (what decode did before)."""
    import io

    import av

    with av.open(io.BytesIO(data)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])


@pytest.mark.parametrize("size", [(45, 31), (64, 48)])
def test_decoded_frames_bit_identical_to_pyav(size):
    """The reused scaler (one swscale context per clip) must not change a single pixel."""
    w, h = size
    frames = np.random.default_rng(1).integers(0, 255, (16, h, w, 3), dtype=np.uint8)
    data = encode_clip(frames, None, 8, None)
    ref = _pyav_rgb(data)
    assert ref.shape == (16, h, w, 3)
    idx = np.array([[0, 3, 3, 7], [15, 9, 12, 20]])  # repeats, out of order, past the end (last frame)
    for threshold in (100.0, 0.5):  # read through / seek between the windows
        dec = decode_clip(data, idx, 8, seek_threshold_s=threshold)
        assert np.array_equal(dec.video, ref[np.minimum(idx, 15)])


class _CountingReformatter:
    """Stands in for av's VideoReformatter: counts instances and conversions, converts for real."""

    made = 0
    calls = 0

    def __init__(self):
        from av.video.reformatter import VideoReformatter

        type(self).made += 1
        self._real = VideoReformatter()

    def reformat(self, frame, *args, **kwargs):
        type(self).calls += 1
        return self._real.reformat(frame, *args, **kwargs)


def test_decode_reuses_one_scaler_per_clip(monkeypatch):
    """A new swscale context per frame dominated decode time: one reformatter per clip."""
    import data.decode

    monkeypatch.setattr(data.decode, "VideoReformatter", _CountingReformatter)
    monkeypatch.setattr(_CountingReformatter, "made", 0)
    monkeypatch.setattr(_CountingReformatter, "calls", 0)
    data = make_clip(4.0, onset=1.0)
    dec = decode_clip(data, np.arange(32).reshape(4, 8), 8, seek_threshold_s=100.0)
    assert dec.video.shape == (4, 8, 40, 40, 3)
    assert _CountingReformatter.made == 1 and _CountingReformatter.calls == 32
