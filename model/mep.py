"""Masked Embedding Prediction (MEP): at a masked position t the transformer output o_t must pick
the true CNN embedding x_t out of {x_t} + negatives (InfoNCE).

Score I(x, o) = exp(g(o)^T W x / tau) as in the paper (g: 2-layer MLP, W: bilinear map from the
CNN space to the hidden size). Ours where the paper is silent: g(o) and W x are L2-normalised
before the dot product (cosine score; keeps tau meaningful and training stable), one head per
(stream, target modality), and exactly max(1, round(ratio * S)) masked positions per clip so shapes
stay static (no host syncs).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def mask_positions(batch: int, seq_len: int, ratio: float, device: torch.device | str,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random masked segments per clip: (bool mask [B,S], positions [P,2] as (b, t), P = B * m)."""
    m = max(1, round(ratio * seq_len)) if ratio > 0 else 0
    order = torch.rand(batch, seq_len, device=device, generator=generator).argsort(dim=1)[:, :m]  # [B, m]
    mask = torch.zeros(batch, seq_len, dtype=torch.bool, device=device)
    mask.scatter_(1, order, True)
    rows = torch.arange(batch, device=device).repeat_interleave(m)
    return mask, torch.stack([rows, order.reshape(-1)], dim=1)


class MEPHead(nn.Module):
    def __init__(self, hidden: int, target_dim: int, normalize: bool = True):
        super().__init__()
        self.g = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden), nn.Linear(hidden, hidden))
        self.w = nn.Linear(target_dim, hidden, bias=False)
        self.normalize = normalize

    def logits(self, outputs: torch.Tensor, targets: torch.Tensor, pos_flat: torch.Tensor,
               neg_flat: torch.Tensor, temperature: float) -> torch.Tensor:
        """outputs [P,H] at masked positions, targets [N,D] all candidates -> [P, 1+K], positive first."""
        q = self.g(outputs)
        keys = self.w(targets)
        if self.normalize:
            q, keys = F.normalize(q, dim=-1), F.normalize(keys, dim=-1)
        cand = torch.cat([pos_flat[:, None], neg_flat], dim=1)
        return torch.einsum("ph,pkh->pk", q, keys[cand]) / temperature

    def loss(self, outputs, targets, pos_flat, neg_flat, temperature) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.logits(outputs, targets, pos_flat, neg_flat, temperature).float()
        zeros = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        return F.cross_entropy(logits, zeros), (logits.argmax(1) == 0).float().mean()
