"""experiments/check_claim.py: one claim's seed rerun and compared with the quoted prediction interval
(the runner is replaced by a stand-in that returns metrics, so no training happens here)."""
from __future__ import annotations

import json
import math

import pytest

from experiments import check_claim
from tables.stats import t975

ROW = {"claim": "pretraining beats random init (audio-visual binding task)", "rq": "rq1_end_to_end",
       "run_a": "end_to_end", "run_b": "no_pretrain", "eval": "bind", "eval_b": "bind", "metric": "top1",
       "diff_mean": 21.9, "ci95_low": 14.1, "ci95_high": 29.7, "n_seeds": 5, "seeds": [0, 1, 2, 3, 4],
       "values_a": [53.8, 47.9, 51.1, 55.0, 39.3], "values_b": [28.5, 26.5, 28.3, 26.7, 27.6],
       "diffs": [25.3, 21.4, 22.8, 28.3, 11.7], "profile": "tiny"}
OTHER = {**ROW, "claim": "mid fusion > late fusion", "rq": "rq2_fusion", "run_a": "mid", "run_b": "late"}


@pytest.fixture
def claims(tmp_path):
    path = tmp_path / "claims.json"
    path.write_text(json.dumps([ROW, OTHER]))
    return path


def fake_runner(values: dict[str, float], calls: list):
    def run(argv, metrics):
        calls.append(argv)
        assert metrics.name == "metrics.json" and metrics.parent.name in " ".join(argv)  # the run's own folder
        return {"downstream": {"bind": {"top1": values[metrics.parent.name.split("_seed")[0]]}}}
    return run


def test_prediction_interval_is_one_new_seed_not_the_mean():
    d = ROW["diffs"]
    mean, sd = sum(d) / 5, (sum((x - sum(d) / 5) ** 2 for x in d) / 4) ** 0.5
    low, high = check_claim.prediction_interval(d)
    assert (low + high) / 2 == pytest.approx(mean)
    assert (high - low) / 2 == pytest.approx(t975(4) * sd * math.sqrt(1 + 1 / 5))
    assert high - mean > ROW["ci95_high"] - ROW["diff_mean"]  # wider than the CI of the mean
    with pytest.raises(ValueError, match="at least 2"):
        check_claim.prediction_interval([3.0])


def test_inside_the_interval_passes_and_reruns_both_arms_outside_results(claims, tmp_path, capsys):
    calls = []
    rc = check_claim.main(["--claim", "binding", "--seed", "1", "--claims", str(claims), "--out", str(tmp_path / "o")],
                          runner=fake_runner({"end_to_end": 49.0, "no_pretrain": 27.0}, calls))
    out = capsys.readouterr().out
    assert rc == 0, out
    assert len(calls) == 2
    assert ["seed=1", "name=end_to_end_seed1", f"output_root={tmp_path / 'o'}"] == calls[0][-3:]
    assert "experiments/rq1_end_to_end/configs/no_pretrain.yaml" in calls[1]
    assert "end_to_end 49.00 (quoted 47.90, +1.10)" in out and "A - B = +22.00" in out and "reproduces" in out


def test_outside_the_interval_fails(claims, tmp_path, capsys):
    rc = check_claim.main(["--claim", "1", "--claims", str(claims), "--out", str(tmp_path / "o")],
                          runner=fake_runner({"end_to_end": 27.0, "no_pretrain": 27.0}, []))
    assert rc == 1
    assert "OUTSIDE the interval" in capsys.readouterr().out


def test_bad_arguments_exit_2_before_any_run(claims, tmp_path, capsys):
    calls = []
    runner = fake_runner({}, calls)
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps([{"claim": "x"}]))
    for argv, msg in ((["--claim", "fusion >", "--claims", str(claims)], None),  # ok text, but dry-run below
                      (["--claim", "9", "--claims", str(claims)], "there are 2 claims"),
                      (["--claim", "e", "--claims", str(claims)], "matches 2 claims"),
                      (["--claim", "1", "--claims", str(tmp_path / "none.json")], "none.json"),
                      (["--claim", "1", "--claims", str(claims), "--seed", "-1"], "seeds are >= 0"),
                      (["--claim", "1", "--claims", str(claims), "--out", "results"], "quoted run folders"),
                      (["--claim", "1", "--claims", str(bad)], "is not a claims file")):
        if msg is None:
            assert check_claim.main([*argv, "--dry-run"], runner=runner) == 0
            assert "pass if A - B lies in" in capsys.readouterr().out
            continue
        assert check_claim.main(argv, runner=runner) == 2, argv
        assert msg in capsys.readouterr().err
    assert calls == []
