"""SlowFast-R50 (Feichtenhofer et al. 2019): the visual backbone the poster names (V-CNN rows).

The released code ships only a single-pathway 3D ResNet; this is the second backbone choice.
Slow pathway: every `alpha`-th frame, `width` channels, temporal kernels 1,1,3,3 in res2..res5.
Fast pathway: every frame, `width / beta_inv` channels, temporal kernel 3 everywhere. After the stem
and res2..res4 a time-strided conv (kernel `fusion_kernel` x 1 x 1, stride alpha) fuses fast into
slow by concatenation. Output: [pooled slow ; pooled fast] = 32*width + 32*width/beta_inv dims.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .config import VisualCNNConfig
from .visual_cnn import _bn, make_stage


def _stem(c_in: int, c_out: int, kt: int, stride_hw: int, k_hw: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(c_in, c_out, (kt, k_hw, k_hw), stride=(1, stride_hw, stride_hw), padding=(kt // 2, k_hw // 2, k_hw // 2), bias=False),
        _bn(c_out), nn.ReLU(inplace=True), nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)))


class Lateral(nn.Module):
    """Fast -> slow fusion: time-strided conv doubling the fast channels, concatenated to slow."""

    def __init__(self, c_fast: int, kernel: int, alpha: int):
        super().__init__()
        self.conv = nn.Conv3d(c_fast, 2 * c_fast, (kernel, 1, 1), stride=(alpha, 1, 1), padding=(kernel // 2, 0, 0), bias=False)
        self.bn = _bn(2 * c_fast)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, slow: torch.Tensor, fast: torch.Tensor) -> torch.Tensor:
        f = self.relu(self.bn(self.conv(fast)))
        if f.shape[2] != slow.shape[2]:
            raise ValueError(f"SlowFast: {fast.shape[2]} fast frames do not map onto {slow.shape[2]} slow frames; "
                             "frames per segment must be a multiple of slowfast_alpha")
        return torch.cat([slow, f], dim=1)


class SlowFast(nn.Module):
    def __init__(self, cfg: VisualCNNConfig, in_channels: int = 3):
        super().__init__()
        w, beta, self.alpha = cfg.width, cfg.slowfast_beta_inv, cfg.slowfast_alpha
        wf = max(1, w // beta)
        k_hw, s_hw = cfg.stem_kernel[1], cfg.stem_stride[1]
        self.slow_stem = _stem(in_channels, w, 1, s_hw, k_hw)
        self.fast_stem = _stem(in_channels, wf, 5, s_hw, k_hw)
        self.laterals = nn.ModuleList()
        slow_stages, fast_stages = [], []
        cs, cf = w, wf
        slow_kt = tuple(cfg.temporal_kernels)
        for i, blocks in enumerate(cfg.stage_blocks):
            self.laterals.append(Lateral(cf, cfg.slowfast_fusion_kernel, self.alpha))
            stride = 1 if i == 0 else 2
            slow_stages.append(make_stage(cs + 2 * cf, w * 2**i, w * 2**i * 4, blocks, slow_kt[i], stride))
            fast_stages.append(make_stage(cf, wf * 2**i, wf * 2**i * 4, blocks, 3, stride))
            cs, cf = w * 2**i * 4, wf * 2**i * 4
        self.slow_stages, self.fast_stages = nn.ModuleList(slow_stages), nn.ModuleList(fast_stages)
        self.out_dim = cs + cf
        self.grad_checkpointing = False

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        self.grad_checkpointing = enabled

    def _stage(self, stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return checkpoint(stage, x, use_reentrant=False) if self.grad_checkpointing and self.training else stage(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        slow = self.slow_stem(x[:, :, :: self.alpha])
        fast = self.fast_stem(x)
        for lateral, s_stage, f_stage in zip(self.laterals, self.slow_stages, self.fast_stages):
            slow = lateral(slow, fast)
            slow, fast = self._stage(s_stage, slow), self._stage(f_stage, fast)
        return torch.cat([slow.mean(dim=(2, 3, 4)), fast.mean(dim=(2, 3, 4))], dim=1)
