"""The training-step benchmark runs on CPU at a tiny size and writes a well-formed JSON (timings are
never asserted: they depend on the machine)."""
from __future__ import annotations

import json

from experiments import bench


def test_bench_writes_wellformed_json(tmp_path, capsys):
    rc = bench.main(["--profile", "smoke", "--sharing", "part,none", "--steps", "1", "--warmup", "0",
                     "--batch-size", "2", "--num-threads", "1", "--out-dir", str(tmp_path), "--name", "t",
                     "data.segments=2"])
    assert rc == 0
    report = json.loads((tmp_path / "t.json").read_text())
    assert report["device"] == "cpu" and report["command"].startswith("python -m experiments.bench")
    assert {"git", "versions", "host"} <= set(report["provenance"])
    rows = {r["sharing"]: r for r in report["rows"]}
    assert set(rows) == {"part", "none"}
    for r in rows.values():
        assert r["batch_clips"] == 2 and r["segments"] == 2
        for key in ("clips_per_s", "step_s", "cnn_forward_s", "transformer_objective_forward_s", "backward_s",
                    "optimizer_s", "peak_memory_mb", "param_mb", "adamw_state_mb"):
            assert r[key] > 0, key
        assert r["cnn_backward_s"] >= 0 and r["transformer_backward_s"] > 0
    # sharing really changes what is counted: part has far fewer transformer parameters than none
    assert rows["part"]["params"]["transformer"] < rows["none"]["params"]["transformer"] / 5
    assert "| part | mid | 2 |" in capsys.readouterr().out
