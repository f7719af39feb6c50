"""experiments.probes.learnability: the configured transformer stack trained on oracle segment
embeddings (no CNN, no data on disk); a few steps on the smoke profile, seconds on CPU."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from experiments.probes import learnability


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_cli_prints_heldout_cpp_and_mep_with_chance(capsys):
    assert learnability.main(["--profile", "smoke", "--steps", "3", "--heldout-clips", "16", "--threads", "1",
                              "--log-every", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split(":")[0] for ln in lines[:3]] == ["step 1", "step 2", "step 3"]
    assert re.fullmatch(r"mid fusion, part sharing, \S+ negatives, lr \S+ x transformer_lr_scale \S+, "
                        r"3 steps x 4 clips, [\d.]+ s", lines[-3]), lines[-3]
    cpp = re.fullmatch(r"heldout CPP accuracy (\d\.\d{3}) \(chance 0\.500\)", lines[-2])
    mep = re.fullmatch(r"heldout MEP top-1 (\d\.\d{3}) \(chance 0\.125, ([\d.]+)x\)", lines[-1])  # S = 8
    assert cpp and mep, lines[-2:]
    assert 0 <= float(cpp.group(1)) <= 1 and 0 <= float(mep.group(1)) <= 1
    assert float(mep.group(2)) == pytest.approx(float(mep.group(1)) / 0.125, abs=0.06)


def test_cli_rejects_bad_counts():
    with pytest.raises(SystemExit):
        learnability.main(["--profile", "smoke", "--steps", "3", "--heldout-clips", "0"])


def test_oracle_timelines_are_the_pretraining_corpus():
    from experiments.config import load_config
    from data.synthetic.spec import preset

    cfg = load_config(learnability.DEFAULT_CONFIG, profile="smoke")
    sigs = learnability.segment_signatures(6, cfg, seed=0)
    k = preset("tiny").types_per_clip
    assert sigs.shape == (6, cfg.data.segments, 2) and (sigs[..., 0] == sigs[..., 1]).all()  # bound types
    for clip in sigs[..., 0]:
        assert sorted(np.unique(clip, return_counts=True)[1].tolist()) == [cfg.data.segments // k] * k
    assert np.array_equal(sigs, learnability.segment_signatures(6, cfg, seed=0))
    assert not np.array_equal(sigs, learnability.segment_signatures(6, cfg, seed=1))


def test_tiny_stack_learns_cpp_on_oracle_embeddings():
    """The tiny profile's stack (2 layers, transformer LR 3e-4 after 100 warm-up steps) learns CPP from
    oracle embeddings: a shortened run (CPP alone, 200 steps of 16 clips) must leave chance well behind.
    The full check (`python -m experiments.probes.learnability`, 600 x 16, MEP included) is in the README."""
    from experiments.config import load_config

    torch.set_num_threads(2)
    cfg = load_config(learnability.DEFAULT_CONFIG, ["pretrain.mep.weight=0"], profile="tiny")
    res = learnability.run(cfg, steps=200, seed=0, heldout_clips=256)  # 0.79 measured, ~17 s
    assert res["cpp_acc"] >= 0.65, res
