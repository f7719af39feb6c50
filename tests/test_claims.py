"""Claim verdicts (tables/make_claims.py) on fabricated run folders in tmp_path: the paired difference
and its t-based CI against a hand computation, every verdict rule of both claim kinds, missing arms
with their commands, the JSON keys, and the command line's errors and warnings."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from common.paths import CODE_ROOT
from tables import claims_spec, make_claims
from tables.claims import verdict
from tables.results_io import ConfigMismatch
from tables.stats import mean_ci, t975
from tests.test_tables import ev, write_run

# config each arm needs to match its Table 1 row (the claims refuse runs the tables would refuse)
CONFIG = {"mid": {"model": {"fusion": "mid"}}, "late": {"model": {"fusion": "late"}},
          "early": {"model": {"fusion": "early"}}, "part": {}, "none": {"model": {"sharing": "none"}},
          "cross_layer": {"model": {"sharing": "cross_layer"}}, "end_to_end": {},
          "no_pretrain": {"pretrain": {"enabled": False}},
          "cans_similar": {}, "current_minibatch": {"pretrain": {"negatives": {"sampler": "current_minibatch"}}}}
KEYS = {"claim", "diff_mean", "ci95_low", "ci95_high", "n_seeds", "n_test", "verdict", "rq", "run_a", "run_b",
        "eval", "metric", "margin", "values_a", "values_b", "seeds", "rule", "note", "commands"}


def arm(root, rq, run, values, eval_name="av", metric="top1", num_test=64, **kw):
    """One run folder per seed (`run`, `run_seed1`, ...) with eval `eval_name` = values[seed]."""
    for seed, v in enumerate(values):
        if v is None:
            continue
        e = ev(top1=v if metric == "top1" else None, top5=v if metric == "top1" else None,
               mAP=v if metric == "mAP" else None)
        e["num_test"] = num_test
        write_run(root, rq, run if seed == 0 else f"{run}_seed{seed}", {eval_name: e}, seed=seed,
                  config=CONFIG[run], **kw)


def claims(tmp_path, capsys, *extra) -> tuple[dict[str, dict], str]:
    out = tmp_path / "out"
    assert make_claims.main(["--results", str(tmp_path / "results"), "--out", str(out), *extra]) == 0
    rows = json.loads((out / "claims.json").read_text())
    assert (out / "claims.md").is_file()
    return {r["claim"]: r for r in rows}, capsys.readouterr()


MID_LATE = "mid fusion > late fusion"
PART = "part sharing within 3 points of no sharing"


def test_t_quantiles_and_mean_ci():
    assert (t975(1), t975(2), t975(30), t975(31), t975(1000)) == (12.706, 4.303, 2.042, 1.96, 1.96)
    m = mean_ci([1.0, 2.0, 3.0])
    assert (m.n, m.mean, m.std) == (3, 2.0, 1.0)
    assert m.half == pytest.approx(4.303 / math.sqrt(3)) and m.low == pytest.approx(2 - 4.303 / math.sqrt(3))
    assert mean_ci([5.0]).half is None and mean_ci([]).mean is None


def test_paired_difference_and_ci_by_hand(tmp_path, capsys):
    res = tmp_path / "results"
    arm(res, "rq2_fusion", "mid", [51.0, 62.0, 43.0, 99.0], num_test=64)  # seed 3 has no late partner
    arm(res, "rq2_fusion", "late", [50.0, 60.0, 40.0], num_test=60)
    rows, cap = claims(tmp_path, capsys)
    r = rows[MID_LATE]
    assert KEYS <= set(r)
    # paired over seeds 0..2: diffs 1, 2, 3 -> mean 2, half-width t(0.975, 2) * 1 / sqrt(3)
    assert (r["seeds"], r["values_a"], r["values_b"], r["diffs"]) == ([0, 1, 2], [51, 62, 43], [50, 60, 40],
                                                                      [1, 2, 3])
    half = 4.303 / math.sqrt(3)
    assert r["diff_mean"] == 2.0 and r["ci95_half"] == pytest.approx(half, abs=1e-4)
    assert (r["ci95_low"], r["ci95_high"]) == (pytest.approx(2 - half, abs=1e-4), pytest.approx(2 + half, abs=1e-4))
    assert (r["n_seeds"], r["n_test"], r["verdict"]) == (3, 60, "inconclusive")
    assert "seeds [3] have only one arm" in r["note"]
    md = (tmp_path / "out" / "claims.md").read_text()
    assert "| +2.00 [-0.48, +4.48] | 3 | 60 | inconclusive |" in md and "Verdict rules" in md
    assert "inconclusive" in cap.out and "missing: mid fusion > early fusion" in cap.out


@pytest.mark.parametrize("claim, rq, a, b, va, vb, want", [
    (MID_LATE, "rq2_fusion", "mid", "late", [52, 63, 44], [50, 60, 40], "reproduced"),  # diffs 2,3,4
    (MID_LATE, "rq2_fusion", "mid", "late", [48, 57, 36], [50, 60, 40], "contradicted"),  # -2,-3,-4
    (MID_LATE, "rq2_fusion", "mid", "late", [51, 62, 43], [50, 60, 40], "inconclusive"),  # 1,2,3
    (PART, "rq3_sharing", "part", "none", [50, 61, 42], [50, 60, 40], "reproduced"),  # 0,1,2: low -1.48 > -3
    (PART, "rq3_sharing", "part", "none", [45, 54, 33], [50, 60, 40], "contradicted"),  # -5,-6,-7: high -3.52
    (PART, "rq3_sharing", "part", "none", [49, 58, 37], [50, 60, 40], "inconclusive"),  # -1,-2,-3: low -4.48
])
def test_verdict_rules(tmp_path, capsys, claim, rq, a, b, va, vb, want):
    arm(tmp_path / "results", rq, a, va)
    arm(tmp_path / "results", rq, b, vb)
    rows, _ = claims(tmp_path, capsys)
    assert rows[claim]["verdict"] == want, rows[claim]


def test_verdict_thresholds_are_strict():
    assert verdict(0.0, 1.0, 0.0) == "inconclusive" and verdict(-1.0, 0.0, 0.0) == "inconclusive"
    assert verdict(-2.9, 1.0, -3.0) == "reproduced" and verdict(-5.0, -3.1, -3.0) == "contradicted"
    assert verdict(None, None, 0.0) == "inconclusive"


def test_one_seed_is_inconclusive_without_ci_and_map_metric(tmp_path, capsys):
    res = tmp_path / "results"
    arm(res, "rq1_end_to_end", "end_to_end", [30.0, 32.0], eval_name="order", metric="mAP")
    arm(res, "rq1_end_to_end", "no_pretrain", [20.0], eval_name="order", metric="mAP")
    rows, _ = claims(tmp_path, capsys)
    r = rows["pretraining beats random init (temporal order task)"]
    assert (r["metric"], r["diff_mean"], r["n_seeds"], r["verdict"]) == ("mAP", 10.0, 1, "inconclusive")
    assert r["ci95_low"] is None and r["ci95_high"] is None
    assert "no confidence interval from fewer than 2" in r["note"]
    assert "--only end_to_end,no_pretrain --seeds 0,1,2" in r["note"]
    # the same runs hold no `bind` eval: that claim is missing, with why
    bind = rows["pretraining beats random init (audio-visual binding task)"]
    assert bind["verdict"] == "missing" and "no eval 'bind' with a top1 value" in bind["note"]


def test_missing_and_unfinished_arms_give_commands(tmp_path, capsys):
    res = tmp_path / "results"
    arm(res, "rq3_sharing", "part", [60.0, 61.0])
    arm(res, "rq4_negatives", "cans_similar", [60.0, 61.0])
    write_run(res, "rq4_negatives", "current_minibatch", {}, config=CONFIG["current_minibatch"], metrics=False)
    rows, cap = claims(tmp_path, capsys)
    r = rows[PART]
    assert (r["verdict"], r["diff_mean"], r["ci95_low"], r["n_seeds"]) == ("missing", None, None, 0)
    assert r["commands"] == ["python experiments/rq3_sharing/launch.py --profile tiny --only none"]
    assert "rq3_sharing/none: no run folder" in r["note"]
    neg = rows["CANS-similar > current-minibatch negatives"]
    assert neg["verdict"] == "missing" and "not finished" in neg["note"]
    assert neg["commands"] == ["python experiments/rq4_negatives/launch.py --profile tiny --only current_minibatch"]
    md = (tmp_path / "out" / "claims.md").read_text()
    assert "- `python experiments/rq3_sharing/launch.py --profile tiny --only none`" in md
    assert "missing: part sharing within 3 points of no sharing: `python experiments/rq3_sharing/" in cap.out
    assert "warning" not in cap.err


def test_every_claim_present_and_spec_checked():
    assert len(claims_spec.CLAIMS) == 12 and len({c.claim for c in claims_spec.CLAIMS}) == 12  # 5 task types + few-label binding, 6 ablation claims
    claims_spec.check(claims_spec.CLAIMS)
    with pytest.raises(ValueError, match="kind must be"):
        claims_spec.check([claims_spec.ClaimSpec("x", "rq2_fusion", "mid", "late", "av", kind="less")])


def test_no_runs_warns_and_writes_all_missing(tmp_path, capsys):
    (tmp_path / "results").mkdir()
    rows, cap = claims(tmp_path, capsys)
    assert len(rows) == len(claims_spec.CLAIMS) and {r["verdict"] for r in rows.values()} == {"missing"}
    assert "warning: no runs of the claims" in cap.err


def test_other_profiles_and_mismatched_configs(tmp_path, capsys):
    res = tmp_path / "results"
    arm(res, "rq2_fusion", "mid", [52.0, 63.0, 44.0], profile="paper")
    arm(res, "rq2_fusion", "late", [50.0, 60.0, 40.0], profile="paper")
    rows, _ = claims(tmp_path, capsys)
    assert rows[MID_LATE]["verdict"] == "missing"
    assert "left out runs of other profiles (paper: 6)" in (tmp_path / "out" / "claims.md").read_text()
    rows, _ = claims(tmp_path, capsys, "--profile", "paper")
    assert (rows[MID_LATE]["verdict"], rows[MID_LATE]["profile"]) == ("reproduced", "paper")
    write_run(res, "rq2_fusion", "early", {"av": ev(top1=1.0, top5=2.0)}, config={"model": {"fusion": "mid"}})
    with pytest.raises(ConfigMismatch, match=r"early/config\.yaml.*model\.fusion = 'mid', expected 'early'"):
        make_claims.main(["--results", str(res), "--out", str(tmp_path / "out")])


def test_nonexistent_results_is_an_error(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert make_claims.main(["--results", str(missing), "--out", str(tmp_path / "out")]) == 2
    assert f"error: --results {missing} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    proc = subprocess.run([sys.executable, "tables/make_claims.py", "--results", str(missing)], cwd=CODE_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
