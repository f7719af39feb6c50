"""BERT-style post-LN encoder layer and the stack that applies it `depth` times.

    a = LN1(x + Drop(O(MHA(x))));   y = LN2(a + Drop(W2 gelu(W1 a)))

Every one of the six dense maps (q, k, v, o, ffn_in, ffn_out) is either a plain `Dense` or a
`FactorLinear` (low-rank "part" sharing); each map takes the modality group so the same layer object
can serve the visual, audio and multimodal roles. Attention runs through
`F.scaled_dot_product_attention` (flash / memory-efficient kernels on GPU).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import TransformerConfig
from .low_rank import Dense, FactorLinear


def make_map(d_in: int, d_out: int, groups: int | None, rank: int) -> nn.Module:
    """Dense map, or a low-rank FactorLinear with `groups` private parts when groups is given."""
    return Dense(d_in, d_out) if groups is None else FactorLinear(groups, d_in, rank, d_out)


class EncoderLayer(nn.Module):
    def __init__(self, cfg: TransformerConfig, low_rank_groups: int | None = None):
        super().__init__()
        h, g, r = cfg.hidden, low_rank_groups, cfg.rank
        self.heads = cfg.heads
        self.attn_dropout = cfg.attn_dropout
        self.q, self.k, self.v, self.o = (make_map(h, h, g, r) for _ in range(4))
        self.ffn_in = make_map(h, cfg.ffn, g, r)
        self.ffn_out = make_map(cfg.ffn, h, g, r)
        self.ln_attn = nn.LayerNorm(h, eps=cfg.ln_eps)
        self.ln_ffn = nn.LayerNorm(h, eps=cfg.ln_eps)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, group: int = 0) -> torch.Tensor:
        b, n, h = x.shape
        split = lambda t: t.view(b, n, self.heads, h // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q(x, group)), split(self.k(x, group)), split(self.v(x, group))
        ctx = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_dropout if self.training else 0.0)
        ctx = ctx.transpose(1, 2).reshape(b, n, h)
        a = self.ln_attn(x + self.drop(self.o(ctx, group)))
        return self.ln_ffn(a + self.drop(self.ffn_out(F.gelu(self.ffn_in(a, group)), group)))


class TransformerStack(nn.Module):
    """`depth` layer applications over `len(layers)` distinct layers (1 = ALBERT cross-layer sharing)."""

    def __init__(self, cfg: TransformerConfig, depth: int, distinct: int, low_rank_groups: int | None = None):
        super().__init__()
        if depth % distinct:
            raise ValueError(f"depth {depth} is not a multiple of {distinct} distinct layers")
        self.depth = depth
        self.layers = nn.ModuleList(EncoderLayer(cfg, low_rank_groups) for _ in range(distinct))

    def forward(self, x: torch.Tensor, group: int = 0) -> torch.Tensor:
        per = self.depth // len(self.layers)
        for i in range(self.depth):
            x = self.layers[i // per](x, group)
        return x
