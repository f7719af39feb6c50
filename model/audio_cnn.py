"""Audio CNN: the released 2D ResNet on log-mel spectrograms (ResNet-50 at width 32: 5,839,840 params).

Input [N, 1, F, T] (paper: 1 x 80 mel bins x 128 frames). Stem: separable k x 1 then 1 x k conv
(frequency then time), stride 1, no pooling. Stages res2..res5 (3/4/6/3 bottlenecks, inner width
w, 2w, 4w, 8w, output 4x) each downsample by 2 on both axes in their first block; the first
`separable_stages` stages factor the middle 3x3 into 3x1 + 1x3 (cheaper on the large early maps).
Output: global average pool -> [N, 32 * width] (1024 at paper scale); with `freq_bins` = k > 1 (ours,
tiny profile) the mean over time of k frequency bands -> [N, 32 * width * k].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .config import AudioCNNConfig


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)


class Bottleneck2D(nn.Module):
    def __init__(self, c_in: int, inner: int, c_out: int, stride: int, separable: bool):
        super().__init__()
        self.conv_a = nn.Conv2d(c_in, inner, 1, bias=False)
        self.bn_a = _bn(inner)
        if separable:  # 3x1 over frequency (stride there), then 1x3 over time
            self.conv_b = nn.Sequential(
                nn.Conv2d(inner, inner, (3, 1), stride=(stride, 1), padding=(1, 0), bias=False), _bn(inner),
                nn.ReLU(inplace=True),
                nn.Conv2d(inner, inner, (1, 3), stride=(1, stride), padding=(0, 1), bias=False))
        else:
            self.conv_b = nn.Conv2d(inner, inner, 3, stride=stride, padding=1, bias=False)
        self.bn_b = _bn(inner)
        self.conv_c = nn.Conv2d(inner, c_out, 1, bias=False)
        self.bn_c = _bn(c_out)
        self.bn_c.is_final_bn = True
        self.shortcut = None
        if c_in != c_out or stride != 1:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), _bn(c_out))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn_a(self.conv_a(x)))
        y = self.relu(self.bn_b(self.conv_b(y)))
        y = self.bn_c(self.conv_c(y))
        return self.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class AudioResNet(nn.Module):
    """[N, 1, F, T] log-mel -> [N, 32 * width] pooled segment embedding."""

    def __init__(self, cfg: AudioCNNConfig, in_channels: int = 1):
        super().__init__()
        w, k = cfg.width, cfg.stem_kernel
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, w, (k, 1), padding=(k // 2, 0), bias=False), _bn(w), nn.ReLU(inplace=True),
            nn.Conv2d(w, w, (1, k), padding=(0, k // 2), bias=False), _bn(w), nn.ReLU(inplace=True))
        stages, c_in = [], w
        for i, blocks in enumerate(cfg.stage_blocks):
            inner = w * 2**i
            sep = i < cfg.separable_stages
            stages.append(nn.Sequential(*[
                Bottleneck2D(c_in if j == 0 else inner * 4, inner, inner * 4, 2 if j == 0 else 1, sep)
                for j in range(blocks)]))
            c_in = inner * 4
        self.stages = nn.ModuleList(stages)
        self.freq_bins = cfg.freq_bins
        self.out_dim = c_in * cfg.freq_bins
        self.grad_checkpointing = False

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        self.grad_checkpointing = enabled

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 1, F, T] -> the last stage's map [N, 32 * width, F/16, T/16] (released res5 output)."""
        x = self.stem(x)
        for stage in self.stages:
            x = checkpoint(stage, x, use_reentrant=False) if self.grad_checkpointing and self.training else stage(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.feature_map(x)
        if self.freq_bins == 1:
            return x.mean(dim=(2, 3))
        return F.adaptive_avg_pool2d(x, (self.freq_bins, 1)).flatten(1)
