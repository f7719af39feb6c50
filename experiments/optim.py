"""Optimizer and learning-rate schedule: AdamW, linear warm-up, then cosine/linear decay or constant."""
from __future__ import annotations

import math
from typing import Iterable

import torch

from experiments.config.schema import OptimConfig


def decay_groups(named_params: Iterable[tuple[str, torch.nn.Parameter]], weight_decay: float, lr: float | None = None) -> list[dict]:
    """No weight decay on biases, norms and 1-d tokens (BOS/mask vectors), as in BERT."""
    decay, no_decay = [], []
    seen = set()
    for _, p in named_params:
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if lr is not None:
        for g in groups:
            g["lr"] = lr
    return [g for g in groups if g["params"]]


def cnn_split_groups(named_params: Iterable[tuple[str, torch.nn.Parameter]], cfg: OptimConfig,
                     cnn_prefixes: tuple[str, ...]) -> list[dict]:
    """Decay groups for the CNNs at cfg.lr and for the rest at cfg.lr * cfg.transformer_lr_scale."""
    named = list(named_params)
    is_cnn = lambda n: n.startswith(cnn_prefixes)
    groups = decay_groups([(n, p) for n, p in named if is_cnn(n)], cfg.weight_decay, cfg.lr)
    return groups + decay_groups([(n, p) for n, p in named if not is_cnn(n)], cfg.weight_decay,
                                 cfg.lr * cfg.transformer_lr_scale)


def build_optimizer(groups: list[dict], cfg: OptimConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW; the fused CUDA kernel on GPU (one launch for all parameters), foreach on CPU."""
    fused = device.type == "cuda"
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                             weight_decay=cfg.weight_decay, fused=fused or None, foreach=None if fused else True)


def lr_lambda(total_steps: int, warmup_steps: int, schedule: str):
    """Multiplier of the base LR at a step: linear warm-up from 0, then the chosen decay to 0."""
    def f(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return f


def build_scheduler(opt: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(total_steps, cfg.warmup_steps, cfg.schedule))


def optimizer_step(loss, module, opt, sched, grad_clip: float) -> None:
    """One plain update (the probes' loops; pretrain.py adds accumulation and DDP around the same steps):
    backward, clip the gradient norm of `module` when grad_clip > 0, step the optimizer and the schedule."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(module.parameters(), grad_clip)
    opt.step()
    sched.step()
