"""data.bench_prepare at a tiny size: it generates sources, runs the real prepare CLI, compares presets and
writes a well-formed JSON. Timings are only checked to be positive, never against thresholds."""
from __future__ import annotations

import json

import pytest

from data import bench_prepare


def test_texture_is_smooth_and_in_range():
    import numpy as np

    t = bench_prepare._texture(np.random.default_rng(0), 32, 48)
    assert t.shape == (32, 48, 3) and t.min() >= 0 and t.max() <= 255
    assert np.abs(np.diff(t, axis=1)).mean() < 0.5 * np.abs(t - t.mean()).mean()  # smoothed, not white noise


def test_bench_prepare_writes_report(tmp_path, capsys):
    out = tmp_path / "prepare.json"
    assert bench_prepare.main(["--sources", "1", "--presets", "ultrafast", "--cache", str(tmp_path / "c"),
                               "--out", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["cli"]["clips"] == 1 and rep["cli"]["skipped"] == 0
    assert rep["cli"]["s_per_clip"] > 0 and rep["cli"]["mb_per_clip"] > 0
    assert set(rep["presets"]) == {"ultrafast"} and rep["presets"]["ultrafast"]["psnr_db_vs_lossless"] > 25
    est = rep["kinetics700"]
    assert est["clips"] == 650_000 and est["core_hours"] > 0 and est["storage_tb"] > 0
    assert est["wall_hours_64_cores"] == pytest.approx(est["core_hours"] / 64, rel=0.01)
    assert "| ultrafast |" in capsys.readouterr().out

