"""Masked Embedding Prediction (MEP): the transformer output o_t at a masked segment must pick the
true CNN embedding x_t out of {x_t} + negatives (InfoNCE, positive at index 0).

Score s(o, x) = g(o)^T W x / tau as on the poster (g: 2-layer MLP, W: bilinear map from the CNN
space). Ours where the paper is silent: optionally (default on) g(o) and W x are L2-normalised
before the dot product (cosine score: keeps tau meaningful at any width), and the masking rule below.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def masked_count(seq_len: int, ratio: float) -> int:
    """Masked segments per clip: max(1, round(ratio * S)) when ratio > 0, else 0 (ours)."""
    return min(seq_len, max(1, round(ratio * seq_len))) if ratio > 0 else 0


def mask_positions(batch: int, seq_len: int, ratio: float, generator: torch.Generator | None = None,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """BoolTensor [B,S] with exactly masked_count(S, ratio) random positions per clip.

    A fixed count (rather than Bernoulli per position) guarantees at least one MEP target per clip
    even for short clips (15 % of 8 segments) and keeps shapes static, so no host sync is needed.
    """
    m = masked_count(seq_len, ratio)
    mask = torch.zeros(batch, seq_len, dtype=torch.bool, device=device)
    if m:
        order = torch.rand(batch, seq_len, device=device, generator=generator).argsort(dim=1)[:, :m]
        mask.scatter_(1, order, True)
    return mask


def mask_to_positions(mask: torch.Tensor, per_clip: int | None = None) -> torch.Tensor:
    """[B,S] mask -> [P,2] (b, t) rows in (b, t) order. With `per_clip` (the fixed count of
    mask_positions) shapes are known in advance and no host sync happens; otherwise uses nonzero()."""
    if per_clip is None:
        return mask.nonzero()
    b, s = mask.shape
    t = torch.sort(mask.to(torch.int8), dim=1, descending=True, stable=True).indices[:, :per_clip]
    t = t.sort(dim=1).values
    rows = torch.arange(b, device=mask.device).repeat_interleave(per_clip)
    return torch.stack([rows, t.reshape(-1)], dim=1)


class MEPHead(nn.Module):
    """g (2-layer MLP on transformer outputs) and W (CNN embedding -> score space).

    `proj` lets several heads share one W (the objective shares W per target modality by default:
    see pretrain_objective)."""

    def __init__(self, hidden: int, target_dim: int, proj_dim: int | None = None, normalize: bool = True,
                 proj: nn.Linear | None = None):
        super().__init__()
        proj_dim = proj_dim or hidden
        self.g = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden), nn.Linear(hidden, proj_dim))
        self.w = proj if proj is not None else nn.Linear(target_dim, proj_dim, bias=False)
        if self.w.in_features != target_dim or self.w.out_features != proj_dim:
            raise ValueError(f"shared MEP projection is {self.w.in_features}->{self.w.out_features}, "
                             f"need {target_dim}->{proj_dim}")
        self.normalize = normalize

    def logits(self, outputs: torch.Tensor, targets: torch.Tensor, pos_flat: torch.Tensor,
               neg_flat: torch.Tensor, temperature: float) -> torch.Tensor:
        """outputs [P,H], targets [N,D] (all candidates) -> scores [P, 1+K], positive first.
        All N targets are projected once and gathered, instead of projecting P*(1+K) copies."""
        q = self.g(outputs).float()  # scores in float32 even under bf16 autocast (tau ~ 0.1 amplifies errors)
        keys = self.w(targets).float()
        if self.normalize:
            q, keys = F.normalize(q, dim=-1), F.normalize(keys, dim=-1)
        cand = torch.cat([pos_flat[:, None], neg_flat], dim=1)  # [P, 1+K]
        return torch.einsum("ph,pkh->pk", q, keys[cand]) / temperature

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, pos_flat: torch.Tensor,
             neg_flat: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
        """InfoNCE (cross-entropy with the positive at index 0) and top-1 accuracy, both scalars."""
        logits = self.logits(outputs, targets, pos_flat, neg_flat, temperature).float()
        zeros = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        return F.cross_entropy(logits, zeros), (logits.argmax(1) == 0).float().mean()
