"""Downstream metrics in percent, as the paper reports them: top-k accuracy and mAP (multi-label)."""
from __future__ import annotations

import torch


def topk_accuracy(scores: torch.Tensor, target: torch.Tensor, k: int = 1) -> float:
    """% of rows whose target is among the k highest scores (k clipped to the class count)."""
    k = min(k, scores.shape[1])
    hit = (scores.topk(k, dim=1).indices == target[:, None]).any(dim=1)
    return 100.0 * hit.float().mean().item()


def average_precision(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-class AP [C] (NaN for classes with no positive): AP = sum_k P@k * rel_k / #positives over
    the ranking by score (sklearn's step-wise definition; tied scores are ranked by sort order)."""
    order = scores.argsort(dim=0, descending=True)
    rel = labels.float().gather(0, order)  # [N, C] relevance in ranked order
    hits = rel.cumsum(0)
    ranks = torch.arange(1, rel.shape[0] + 1, device=rel.device, dtype=torch.float32)[:, None]
    npos = rel.sum(0)
    ap = (hits / ranks * rel).sum(0) / npos.clamp_min(1)
    return torch.where(npos > 0, ap, torch.full_like(ap, float("nan")))


def mean_average_precision(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """% mAP over classes with at least one positive (Charades' standard)."""
    ap = average_precision(scores, labels)
    return 100.0 * ap[~ap.isnan()].mean().item()
