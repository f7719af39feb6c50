"""experiments.probes.learnability: the configured transformer stack trained on oracle segment
embeddings (no CNN, no data on disk); a few steps on the smoke profile, seconds on CPU."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from experiments.probes import learnability
from tests.test_data_synthetic import counts, even_counts


pytestmark = pytest.mark.usefixtures("restore_threads")  # the CLIs set the thread count


def test_cli_prints_heldout_cpp_and_mep_with_chance(capsys):
    assert learnability.main(["--profile", "smoke", "--steps", "3", "--heldout-clips", "16", "--threads", "1",
                              "--log-every", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split(":")[0] for ln in lines[:3]] == ["step 1", "step 2", "step 3"]
    assert re.fullmatch(r"mid fusion, part sharing, \S+ negatives, lr \S+ x transformer_lr_scale \S+, "
                        r"3 steps x 4 clips, [\d.]+ s", lines[-4]), lines[-4]
    streams = re.fullmatch(r"heldout MEP top-1 per stream: visual (\d\.\d{3}), audio (\d\.\d{3}), multi (\d\.\d{3})",
                           lines[-3])
    assert streams, lines[-3]
    cpp = re.fullmatch(r"heldout CPP accuracy (\d\.\d{3}) \(chance 0\.500\)", lines[-2])
    mep = re.fullmatch(r"heldout MEP top-1 (\d\.\d{3}) \(chance 0\.125, ([\d.]+)x\)", lines[-1])  # S = 8
    assert cpp and mep, lines[-2:]
    assert 0 <= float(cpp.group(1)) <= 1 and 0 <= float(mep.group(1)) <= 1
    assert float(mep.group(2)) == pytest.approx(float(mep.group(1)) / 0.125, abs=0.06)
    # the MEP line is the mean over the three streams (every stream scores the same masked positions)
    assert float(mep.group(1)) == pytest.approx(sum(float(x) for x in streams.groups()) / 3, abs=0.0015)


def test_by_pairing_prints_mep_on_own_and_on_swapped_audio(capsys):
    assert learnability.main(["--profile", "smoke", "--steps", "2", "--heldout-clips", "16", "--threads", "1",
                              "--by-pairing"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    for name, line in zip(("paired", "swapped"), lines[-5:-3]):
        assert re.fullmatch(rf"heldout MEP top-1 per stream, {name} audio: visual \d\.\d{{3}}, audio \d\.\d{{3}}, "
                            r"multi \d\.\d{3}", line), line
    from experiments.config import load_config

    cfg = load_config(learnability.DEFAULT_CONFIG, profile="smoke")
    res = learnability.run(cfg, steps=1, seed=0, heldout_clips=8, by_pairing=True)
    by = res["mep_top1_by_pairing"]
    assert set(by) == {"paired", "swapped"} and all(set(v) == set(res["mep_top1_streams"]) for v in by.values())
    assert all(0 <= x <= 1 for v in by.values() for x in v.values())
    assert cfg.pretrain.cpp.fraction == 0.5  # the run's config is left as it was



def test_batch_form_prints_mep_against_other_clips_and_the_no_learning_mean(capsys):
    assert learnability.main(["--profile", "smoke", "--steps", "2", "--heldout-clips", "16", "--threads", "1",
                              "--batch-form"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-4]
    m = re.fullmatch(r"heldout MEP top-1 against the other clips' masked segments \(batch 4, chance 0\.250\): "
                     r"(\d\.\d{3}) \([\d.]+x\); copying the clip's mean, no learning: (\d\.\d{3}) \([\d.]+x\)", line)
    assert m, line
    # the oracle's per-clip component alone puts the clip's own segment first well above chance
    from experiments.config import load_config

    cfg = load_config(learnability.DEFAULT_CONFIG, profile="smoke")
    oracle = learnability.Oracle({"visual": 16, "audio": 16}, seed=0, clip_scale=0.5, noise=0.5)
    sigs = torch.from_numpy(learnability.segment_signatures(64, cfg, seed=3))
    assert learnability.clip_mean_top1(oracle, sigs, 16, 0, 0.15, "batch") > 3 / 16
    assert learnability.clip_mean_top1(oracle, sigs, 16, 0, 0.15, "clip") < 1 / 8  # the mean holds the candidates


def test_cli_rejects_bad_counts(capsys):
    for bad in (["--heldout-clips", "0"], ["--threads", "0"]):
        with pytest.raises(SystemExit):
            learnability.main(["--profile", "smoke", "--steps", "3", *bad])
        assert "--threads must be >= 1" in capsys.readouterr().err


def test_oracle_timelines_are_the_pretraining_corpus():
    from experiments.config import load_config
    from data.synthetic.spec import preset

    cfg = load_config(learnability.DEFAULT_CONFIG, profile="smoke")
    sigs = learnability.segment_signatures(6, cfg, seed=0)
    k = preset("tiny").types_per_clip
    assert sigs.shape == (6, cfg.data.segments, 2) and (sigs[..., 0] == sigs[..., 1]).all()  # bound types
    for clip in sigs[..., 0]:
        assert counts(clip) == even_counts(cfg.data.segments, k)  # v9: 7 types, one of them twice
    assert np.array_equal(sigs, learnability.segment_signatures(6, cfg, seed=0))
    assert not np.array_equal(sigs, learnability.segment_signatures(6, cfg, seed=1))
    for clip in learnability.segment_signatures(6, cfg, seed=0, types_per_clip=4)[..., 0]:  # --types-per-clip
        assert counts(clip) == [cfg.data.segments // 4] * 4


def test_oracle_event_component_is_shared_by_both_modalities():
    """Without clip component and noise, x_m - E_m[sig] = z A_m with one z for both modalities: the z
    solved from the visual embedding equals the z solved from the audio one (and is 0 at event_scale 0)."""
    sigs = torch.randint(0, 8, (4, 8, 1)).expand(-1, -1, 2)
    for scale in (1.0, 0.0):
        o = learnability.Oracle({"visual": 24, "audio": 16}, seed=0, clip_scale=0.0, noise=0.0, event_scale=scale)
        ev, ea = o(sigs, torch.Generator().manual_seed(1))
        zs = [torch.linalg.lstsq(o.maps[m].T, (x - o.table[m][sigs[..., j]]).reshape(-1, x.shape[-1]).T).solution.T
              for j, (m, x) in enumerate((("visual", ev), ("audio", ea)))]
        assert torch.allclose(zs[0], zs[1], atol=1e-4)
        assert (float(zs[0].abs().max()) > 0.1) == (scale > 0)


def test_tiny_stack_learns_cpp_on_oracle_embeddings():
    """The tiny profile's stack (2 layers, no dropout, transformer LR 3e-4 after 100 warm-up steps) learns CPP from
    oracle embeddings: a shortened run (CPP alone, 200 steps of 16 clips) must leave chance well behind.
    The full check (`python -m experiments.probes.learnability`, 600 x 16, MEP included) is in the README."""
    from experiments.config import load_config

    torch.set_num_threads(2)
    cfg = load_config(learnability.DEFAULT_CONFIG, ["pretrain.mep.weight=0"], profile="tiny")
    res = learnability.run(cfg, steps=200, seed=0, heldout_clips=256)  # 0.816 measured (v8; v6 0.879), ~13 s
    assert res["cpp_acc"] >= 0.65, res


def test_tiny_defaults_learn_mep_and_cpp_together_on_oracle_embeddings():
    """The full tiny loss (MEP + CPP, the tiny profile's current-sequence negatives) on the v8 oracle: after
    200 of the 600 steps both objectives must have left chance behind at once (v6/v7 with CANS-similar:
    MEP learned while CPP stayed near chance)."""
    from experiments.config import load_config

    torch.set_num_threads(2)
    cfg = load_config(learnability.DEFAULT_CONFIG, profile="tiny")
    res = learnability.run(cfg, steps=200, seed=0, heldout_clips=256)  # v8: CPP 0.824, MEP 0.265 measured, ~15 s
    assert res["cpp_acc"] >= 0.65 and res["mep_top1"] >= 1.6 * res["mep_chance"], res
