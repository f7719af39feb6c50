"""Correct Pair Prediction (CPP): is this audio track from the same clip as the video?

A fraction of the clips in a batch get another clip's audio (a derangement among the chosen clips,
so none keeps its own); a 2-layer MLP on [BOS_v output; BOS_a output] predicts same-video (BCE).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def shuffle_pairs(batch: int, fraction: float, device: torch.device | str,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(perm [B], is_pair [B]): row i gets the audio of clip perm[i]; round(fraction*B) rows mismatch."""
    perm = torch.arange(batch, device=device)
    is_pair = torch.ones(batch, dtype=torch.bool, device=device)
    k = min(batch, round(fraction * batch)) if batch >= 2 else 0
    if k == 0:
        return perm, is_pair
    chosen = torch.randperm(batch, device=device, generator=generator)[:k]
    if k >= 2:
        perm[chosen] = chosen.roll(1)  # cyclic shift: no chosen clip keeps its own audio
    else:
        offset = torch.randint(1, batch, (1,), device=device, generator=generator)
        perm[chosen] = (chosen + offset) % batch
    is_pair[chosen] = False
    return perm, is_pair


class CPPHead(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.GELU(), nn.LayerNorm(hidden), nn.Linear(hidden, 1))

    def forward(self, bos_v: torch.Tensor, bos_a: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([bos_v, bos_a], dim=-1)).squeeze(-1)

    def loss(self, bos_v, bos_a, is_pair) -> tuple[torch.Tensor, torch.Tensor]:
        logit = self(bos_v, bos_a).float()
        target = is_pair.float()
        return F.binary_cross_entropy_with_logits(logit, target), ((logit > 0) == is_pair).float().mean()
