"""Token embeddings around the transformers (never factored, never shared across modalities).

* `ModalityInput`: CNN embedding -> Linear -> LayerNorm (released visual_fc/visual_norm), optional
  replacement of masked positions by a learned mask vector (MEP), and the learned BOS prepended.
* `StreamEmbedding`: x + learned position embedding (+ modality/token-type embedding in the
  multimodal stage) -> LayerNorm -> Dropout, as the released (BERT) embedding modules.
"""
from __future__ import annotations

import torch
from torch import nn


class ModalityInput(nn.Module):
    def __init__(self, in_dim: int, hidden: int, ln_eps: float):
        super().__init__()
        self.proj = nn.Linear(in_dim, hidden)
        self.norm = nn.LayerNorm(hidden, eps=ln_eps)
        self.bos = nn.Parameter(torch.zeros(hidden))
        self.mask_token = nn.Parameter(torch.zeros(hidden))

    def forward(self, emb: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B,S,D] CNN embeddings (+ [B,S] bool mask) -> [B,S+1,H] tokens with BOS at index 0."""
        x = self.norm(self.proj(emb))
        if mask is not None:
            x = torch.where(mask.unsqueeze(-1), self.mask_token.to(x.dtype), x)
        bos = self.bos.to(x.dtype).expand(x.shape[0], 1, -1)
        return torch.cat([bos, x], dim=1)


class StreamEmbedding(nn.Module):
    def __init__(self, hidden: int, max_positions: int, ln_eps: float, dropout: float, num_types: int = 0):
        super().__init__()
        self.position = nn.Embedding(max_positions, hidden)
        self.token_type = nn.Embedding(num_types, hidden) if num_types else None
        self.norm = nn.LayerNorm(hidden, eps=ln_eps)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, types: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.position(positions)
        if self.token_type is not None and types is not None:
            x = x + self.token_type(types)
        return self.drop(self.norm(x))
