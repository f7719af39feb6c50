"""Optimizer groups and schedule: the CNN / rest learning-rate split and the warm-up + cosine shape."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from experiments.config.schema import OptimConfig
from experiments.optim import build_optimizer, build_scheduler, cnn_split_groups


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.visual_cnn = nn.Conv1d(2, 3, 1)
        self.transformer = nn.Linear(3, 3)
        self.tied = self.transformer  # a second name for the same parameters


def _lrs(opt):
    return sorted((round(g["lr"], 9), g["weight_decay"], sum(p.numel() for p in g["params"])) for g in opt.param_groups)


def test_cnn_split_scales_only_the_non_cnn_parameters():
    m = _Toy()
    cfg = OptimConfig(lr=1e-3, weight_decay=0.01, transformer_lr_scale=0.1, warmup_steps=2)
    opt = build_optimizer(cnn_split_groups(m.named_parameters(), cfg, ("visual_cnn.",)), cfg, torch.device("cpu"))
    # (lr, decay, numel): transformer weight/bias at 1e-4, CNN weight/bias at 1e-3; tied params once
    assert _lrs(opt) == [(1e-4, 0.0, 3), (1e-4, 0.01, 9), (1e-3, 0.0, 3), (1e-3, 0.01, 6)]
    sched = build_scheduler(opt, cfg, total_steps=10)
    first = {g["initial_lr"]: g["lr"] for g in opt.param_groups}
    assert first == pytest.approx({1e-3: 0.5e-3, 1e-4: 0.5e-4})  # warm-up multiplies every group alike
    for _ in range(10):
        opt.step()
        sched.step()
    assert all(g["lr"] == pytest.approx(0.0, abs=1e-12) for g in opt.param_groups)


@pytest.mark.parametrize("override", ["pretrain.optim.transformer_lr_scale=0", "pretrain.optim.lr=-1e-3",
                                      "pretrain.optim.accum_steps=0"])
def test_nonsense_optimizer_values_fail_at_load(override):
    from experiments.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="pretrain.optim"):
        load_config("experiments/rq3_sharing/configs/part.yaml", [override], profile="tiny")


def test_scale_one_is_one_learning_rate():
    cfg = OptimConfig(lr=3e-4)
    groups = cnn_split_groups(_Toy().named_parameters(), cfg, ("visual_cnn.",))
    assert {g["lr"] for g in groups} == {3e-4}
