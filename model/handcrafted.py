"""Hand-crafted segment features: the reference row that tells where learned features stand.

Visual: the frames average-pooled to a 4 x 4 grid, then the mean and std over time of each cell and
colour channel (4 * 4 * 3 * 2 = 96 values). Audio: the mean and std over time of every log-mel bin
(2 * F values). No parameters; a linear head on them is the `*_hand` rows (EvalConfig.model).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

GRID = 4


def visual_features(x: torch.Tensor) -> torch.Tensor:
    """[N, 3, T, H, W] -> [N, 96]."""
    n, c, t = x.shape[:3]
    cells = F.adaptive_avg_pool3d(x.float(), (t, GRID, GRID)).reshape(n, c, t, GRID * GRID)
    return torch.cat([cells.mean(2), cells.std(2, unbiased=False)], dim=1).flatten(1)


def audio_features(x: torch.Tensor) -> torch.Tensor:
    """[N, 1, F, T] -> [N, 2F]."""
    x = x.float().flatten(1, 2)
    return torch.cat([x.mean(-1), x.std(-1, unbiased=False)], dim=1)


def feature_dims(mel_bins: int) -> dict[str, int]:
    return {"visual": 3 * GRID * GRID * 2, "audio": 2 * mel_bins}
