"""Builder: validated AVBertConfig -> AVBert module (the only place models are constructed)."""
from __future__ import annotations

import torch

from .avbert import AVBert
from .config import AVBertConfig


def build_model(cfg: AVBertConfig, device: torch.device | str | None = None) -> AVBert:
    """Build on `device` (use "meta" to count parameters at paper scale without allocating them)."""
    if device is None:
        return AVBert(cfg)
    with torch.device(device):
        return AVBert(cfg)
