"""data.bench_loader at a tiny size: it runs, writes a well-formed JSON, and reuses its clips.
Timings are only checked to be positive, never against thresholds."""
from __future__ import annotations

import json

import pytest

from data import bench_loader


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and x > 0


def test_bench_loader_writes_report(tmp_path, capsys):
    out, cache = tmp_path / "loader.json", tmp_path / "cache"
    argv = ["--profile", "tiny", "--clips", "3", "--workers", "0,1", "--repeats", "2", "--batch-size", "1",
            "--gen-workers", "1", "--cache", str(cache), "--out", str(out)]
    assert bench_loader.main(argv) == 0
    rep = json.loads(out.read_text())
    assert {"profile", "command", "date", "device", "versions", "git", "data", "settings", "loader", "pyav_raw",
            "pyav_raw_reused_scaler", "per_clip_ms"} <= set(rep)
    assert rep["profile"] == "tiny" and rep["command"].startswith("python -m data.bench_loader --profile tiny")
    assert rep["device"]["cpu_count"] >= 1
    assert all(rep["versions"][k] for k in ("torch", "av", "webdataset"))
    assert rep["data"]["clips"] == 3 and rep["data"]["segments"] == 8
    assert rep["settings"]["batches"] == 3 and rep["settings"]["repeats"] == 2

    assert [row["workers"] for row in rep["loader"]] == [0, 1]
    for row in rep["loader"]:
        assert row["clips"] == 3 and row["skipped"] == {} and row["repeats"] == 2
        assert len(row["clips_per_s_each"]) == 2 and all(map(_positive, row["clips_per_s_each"]))
        assert min(row["clips_per_s_each"]) <= row["clips_per_s"] <= max(row["clips_per_s_each"])
        for k in ("first_batch_s", "wall_s", "clips_per_s", "segments_per_s", "clips_per_s_per_worker",
                  "clips_per_s_after_first_batch", "per_worker_vs_pyav_reused_scaler"):
            assert _positive(row[k]), k
    assert "two_vs_one_worker" not in rep  # needs workers 1 and 2
    assert rep["pyav_raw_reused_scaler"]["repeats"] == 2
    for key in ("pyav_raw", "pyav_raw_reused_scaler"):
        raw = rep[key]
        assert raw["clips"] == 3 and raw["video_frames"] == 3 * 8 * 8  # 3 clips x 8 s x 8 fps
        assert raw["audio_samples"] >= 3 * 8 * 8000  # AAC pads the end
        assert _positive(raw["clips_per_s"]) and _positive(raw["frames_per_s"])
    assert set(rep["per_clip_ms"]) == {"process_sample", "decode_video", "decode_audio", "video_transform",
                                       "audio_transform", "normalize_video_step"}
    assert rep["data"]["nuisance"] is None and rep["data"]["normalize_video"] == "step"
    assert all(_positive(v) for v in rep["per_clip_ms"].values())
    assert "| make_pretrain_loader | 1 |" in capsys.readouterr().out

    # second run reuses the generated clips (same folder, nothing regenerated)
    record = next(cache.glob("tiny/clips3/synthetic.json"))
    mtime = record.stat().st_mtime_ns
    again = [a if a != "0,1" else "1,2" for a in argv[:-2]]
    assert bench_loader.main([*again, "--out", str(tmp_path / "again.json")]) == 0
    assert record.stat().st_mtime_ns == mtime
    with pytest.raises(SystemExit):
        bench_loader.main([*argv, "--repeats", "0"])
    again_rep = json.loads((tmp_path / "again.json").read_text())
    assert again_rep["data"]["folder"] == rep["data"]["folder"]
    assert _positive(again_rep["two_vs_one_worker"])
