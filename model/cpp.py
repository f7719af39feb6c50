"""Correct Pair Prediction (CPP): is this audio track from the same clip as the video?

Ours where the paper is silent: round(fraction * B) clips of the batch get another clip's audio
(a random cyclic shift among the chosen clips, i.e. a derangement, so none keeps its own), and a
2-layer MLP on [BOS_v output; BOS_a output] predicts "same video" with binary cross-entropy.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def shuffle_pairs(batch: int, fraction: float, generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(perm LongTensor[B], is_pair BoolTensor[B]): clip i gets the audio of clip perm[i]; exactly
    round(fraction * B) clips are mismatched (Python rounding; none when B < 2).

    With one chosen clip there is no derangement among the chosen, so it takes the audio of a
    random other clip (that audio then appears twice in the batch)."""
    perm = torch.arange(batch, device=device)
    is_pair = torch.ones(batch, dtype=torch.bool, device=device)
    k = min(batch, round(fraction * batch)) if batch >= 2 else 0
    if k == 0:
        return perm, is_pair
    gdev = generator.device if generator is not None else "cpu"  # draws live where the generator lives
    chosen = torch.randperm(batch, generator=generator, device=gdev)[:k].to(device)
    if k >= 2:
        perm[chosen] = chosen.roll(1)
    else:
        offset = torch.randint(1, batch, (1,), generator=generator, device=gdev).to(device)
        perm[chosen] = (chosen + offset) % batch
    is_pair[chosen] = False
    return perm, is_pair


class CPPHead(nn.Module):
    """2-layer MLP on the concatenated BOS outputs -> one logit (same video or not)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.GELU(), nn.LayerNorm(hidden), nn.Linear(hidden, 1))

    def forward(self, bos_v: torch.Tensor, bos_a: torch.Tensor) -> torch.Tensor:
        """[B,H], [B,H] -> logits [B]."""
        return self.mlp(torch.cat([bos_v, bos_a], dim=-1)).squeeze(-1)

    def loss(self, bos_v: torch.Tensor, bos_a: torch.Tensor, is_pair: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Binary cross-entropy (target 1 = same video) and accuracy (logit > 0 means 'pair')."""
        logit = self(bos_v, bos_a).float()
        return F.binary_cross_entropy_with_logits(logit, is_pair.float()), ((logit > 0) == is_pair).float().mean()
