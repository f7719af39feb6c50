"""Downstream metrics in percent, as the paper reports them: top-k accuracy and mAP (multi-label),
plus multi-view score aggregation. Pure torch (no sklearn in the environment)."""
from __future__ import annotations

import torch


def topk_accuracy(scores: torch.Tensor, target: torch.Tensor, k: int = 1) -> float:
    """scores [N,C], target [N] -> % of rows whose target is among the k highest scores
    (k clipped to the class count)."""
    k = min(k, scores.shape[1])
    hit = (scores.topk(k, dim=1).indices == target[:, None]).any(dim=1)
    return 100.0 * hit.float().mean().item()


def average_precision(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-class AP [C] (NaN for classes without a positive) with sklearn's average_precision_score
    definition: AP = sum_n (R_n - R_{n-1}) P_n over the distinct score thresholds, so tied scores
    enter together (the result does not depend on the order of ties)."""
    n = scores.shape[0]
    s, order = scores.float().sort(dim=0, descending=True)  # [N,C]
    rel = labels.float().gather(0, order)
    tp = rel.cumsum(0)
    idx = torch.arange(n, device=scores.device)[:, None].expand_as(s)
    last_of_tie = torch.ones_like(s, dtype=torch.bool)
    last_of_tie[:-1] = s[:-1] != s[1:]
    # each position takes the precision at the end of its tie group (reverse cumulative min of the
    # group-end indices), where every member of the group has been counted
    end = torch.where(last_of_tie, idx, torch.full_like(idx, n - 1)).flip(0).cummin(0).values.flip(0)
    precision_at_end = tp.gather(0, end) / (end + 1).float()
    npos = rel.sum(0)
    ap = (precision_at_end * rel).sum(0) / npos.clamp_min(1)
    return torch.where(npos > 0, ap, torch.full_like(ap, float("nan")))


def mean_average_precision(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """% mAP over the classes with at least one positive (Charades' standard)."""
    ap = average_precision(scores, labels)
    return 100.0 * ap[~ap.isnan()].mean().item()


def aggregate_views(scores: torch.Tensor) -> torch.Tensor:
    """[B,V,C] per-view probabilities -> [B,C] mean over views (released sums: same ranking)."""
    return scores.float().mean(dim=1)


def multiview_scores(logits: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """[B,V,C] per-view logits -> [B,C] mean over views of softmax (sigmoid when multi-label)."""
    probs = torch.sigmoid(logits.float()) if multilabel else torch.softmax(logits.float(), dim=-1)
    return aggregate_views(probs)
