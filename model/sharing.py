"""Which transformer object serves which role (visual / audio / multimodal) under each sharing scheme.

| scheme      | stacks                              | layers per stack           | maps              |
|-------------|-------------------------------------|----------------------------|-------------------|
| none        | one per role                        | `layers` distinct          | dense             |
| multi2      | one per role                        | 2 distinct                 | dense             |
| cross_layer | one per role                        | 1, applied `layers` times  | dense             |
| all         | one for every role                  | 1, applied `layers` times  | dense             |
| part (ours) | one for every role                  | 1, applied `layers` times  | low-rank, 1 group per role |

Roles depend on the fusion: early = [multi], mid = [visual, audio, multi], late = [visual, audio].
"""
from __future__ import annotations

from torch import nn

from .config import AVBertConfig
from .transformer import TransformerStack

ROLES = {"early": ("multi",), "mid": ("visual", "audio", "multi"), "late": ("visual", "audio")}


def build_stacks(cfg: AVBertConfig) -> tuple[nn.ModuleList, dict[str, int], dict[str, int]]:
    """Returns (unique stacks, role -> stack index, role -> low-rank group index)."""
    roles = ROLES[cfg.fusion]
    t, depth = cfg.transformer, cfg.num_layers
    group = {r: i for i, r in enumerate(roles)}
    if cfg.sharing in ("none", "multi2", "cross_layer"):
        distinct = 1 if cfg.sharing == "cross_layer" else depth
        stacks = nn.ModuleList(TransformerStack(t, depth, distinct) for _ in roles)
        return stacks, {r: i for i, r in enumerate(roles)}, {r: 0 for r in roles}
    low_rank_groups = len(roles) if cfg.sharing == "part" else None
    stacks = nn.ModuleList([TransformerStack(t, depth, 1, low_rank_groups)])
    return stacks, {r: 0 for r in roles}, group if cfg.sharing == "part" else {r: 0 for r in roles}
