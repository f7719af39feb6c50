"""Visual CNN: the released single-pathway 3D ResNet (ResNet-50 at paper scale, 31,672,128 params).

Released layout (PySlowFast with one pathway): stem conv 5x7x7, stride (2,2,2) + BN + ReLU + max-pool
1x3x3 stride (1,2,2); bottleneck stages res2..res5 with 3/4/6/3 blocks; the first 1x1 conv of every
block has the stage's temporal kernel (1,1,3,3), the middle conv is 1x3x3 and carries the spatial
stride (1,2,2,2); a 1x1x1 projection shortcut on each stage's first block. Output: global average
pool -> [N, 32 * width] (2048 at paper scale); with `spatial_bins` = k > 1 (ours, tiny profile) the
mean over time of k x k spatial cells -> [N, 32 * width * k * k].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .config import VisualCNNConfig


def _bn(c: int) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(c, eps=1e-5, momentum=0.1)


class Bottleneck3D(nn.Module):
    """1x1 (temporal kernel kt) -> 1x3x3 (spatial stride) -> 1x1, plus shortcut; ReLU after the sum."""

    def __init__(self, c_in: int, inner: int, c_out: int, kt: int, stride: int):
        super().__init__()
        self.conv_a = nn.Conv3d(c_in, inner, (kt, 1, 1), padding=(kt // 2, 0, 0), bias=False)
        self.bn_a = _bn(inner)
        self.conv_b = nn.Conv3d(inner, inner, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False)
        self.bn_b = _bn(inner)
        self.conv_c = nn.Conv3d(inner, c_out, 1, bias=False)
        self.bn_c = _bn(c_out)
        self.bn_c.is_final_bn = True  # zero-init target (released ZERO_INIT_FINAL_BN)
        self.shortcut = None
        if c_in != c_out or stride != 1:
            self.shortcut = nn.Sequential(
                nn.Conv3d(c_in, c_out, 1, stride=(1, stride, stride), bias=False), _bn(c_out))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn_a(self.conv_a(x)))
        y = self.relu(self.bn_b(self.conv_b(y)))
        y = self.bn_c(self.conv_c(y))
        return self.relu(y + (x if self.shortcut is None else self.shortcut(x)))


def make_stage(c_in: int, inner: int, c_out: int, blocks: int, kt: int, stride: int) -> nn.Sequential:
    return nn.Sequential(*[Bottleneck3D(c_in if i == 0 else c_out, inner, c_out, kt, stride if i == 0 else 1)
                           for i in range(blocks)])


class ResNet3D(nn.Module):
    """[N, 3, T, H, W] -> [N, 32 * width] pooled segment embedding."""

    def __init__(self, cfg: VisualCNNConfig, in_channels: int = 3):
        super().__init__()
        w = cfg.width
        k = cfg.stem_kernel
        self.stem = nn.Sequential(
            nn.Conv3d(in_channels, w, k, stride=cfg.stem_stride, padding=tuple(x // 2 for x in k), bias=False),
            _bn(w), nn.ReLU(inplace=True),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)))
        stages, c_in = [], w
        for i, (blocks, kt) in enumerate(zip(cfg.stage_blocks, cfg.temporal_kernels)):
            inner = w * 2**i
            stages.append(make_stage(c_in, inner, inner * 4, blocks, kt, 1 if i == 0 else 2))
            c_in = inner * 4
        self.stages = nn.ModuleList(stages)
        self.spatial_bins = cfg.spatial_bins
        self.out_dim = c_in * cfg.spatial_bins ** 2
        self.grad_checkpointing = False

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each stage's activations in backward (memory for compute)."""
        self.grad_checkpointing = enabled

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            if self.grad_checkpointing and self.training:
                x = checkpoint(stage, x, use_reentrant=False)
            else:
                x = stage(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.feature_map(x)
        if self.spatial_bins == 1:
            return x.mean(dim=(2, 3, 4))
        return F.adaptive_avg_pool3d(x, (1, self.spatial_bins, self.spatial_bins)).flatten(1)
