"""Downstream metrics: top-k, mAP (hand cases, ties, a brute-force sklearn-definition reference) and
multi-view aggregation."""
from __future__ import annotations

import pytest
import torch

from model.metrics import aggregate_views, average_precision, mean_average_precision, multiview_scores, topk_accuracy


def brute_force_ap(scores: list[float], labels: list[int]) -> float:
    """sklearn's average_precision_score, spelled out: sum over distinct thresholds (high to low) of
    (recall gain) * precision, where a threshold counts every sample scoring at least that much."""
    npos = sum(labels)
    ap, prev_recall = 0.0, 0.0
    for thr in sorted(set(scores), reverse=True):
        chosen = [y for s, y in zip(scores, labels) if s >= thr]
        recall = sum(chosen) / npos
        ap += (recall - prev_recall) * sum(chosen) / len(chosen)
        prev_recall = recall
    return ap


def test_topk_accuracy():
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    target = torch.tensor([1, 1, 0])
    assert topk_accuracy(scores, target, 1) == pytest.approx(100 / 3)
    assert topk_accuracy(scores, target, 2) == pytest.approx(200 / 3)
    assert topk_accuracy(scores, target, 5) == pytest.approx(100.0)  # k clipped to the class count


def test_map_hand_case():
    labels = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    s = torch.tensor([[0.9, 0.1, 0.3], [0.8, 0.7, 0.2], [0.3, 0.2, 0.1], [0.1, 0.9, 0.0]])
    # class 0 ranking: rows 0 (pos), 1, 2 (pos), 3 -> AP = (1/1 + 2/3) / 2
    # class 1 ranking: rows 3, 1 (pos), 2 (pos), 0 -> AP = (1/2 + 2/3) / 2; class 2: no positive
    ap = average_precision(s, labels)
    assert ap[0].item() == pytest.approx((1 + 2 / 3) / 2)
    assert ap[1].item() == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert torch.isnan(ap[2])
    assert mean_average_precision(s, labels) == pytest.approx(100 * ((1 + 2 / 3) / 2 + (1 / 2 + 2 / 3) / 2) / 2)


def test_map_ties_enter_together():
    # a positive and a negative tied at the top: precision 1/2 at the first threshold, whatever the order
    s = torch.tensor([[0.5], [0.5], [0.1]])
    for labels in (torch.tensor([[1], [0], [1]]), torch.tensor([[0], [1], [1]])):
        assert average_precision(s, labels)[0].item() == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)


def test_map_matches_brute_force_reference():
    g = torch.Generator().manual_seed(0)
    s = torch.randint(0, 6, (40, 7), generator=g).float() / 5  # coarse scores: many ties
    y = (torch.rand(40, 7, generator=g) > 0.6).long()
    y[:, 6] = 0  # a class without positives is left out of the mean
    ap = average_precision(s, y)
    for c in range(6):
        assert ap[c].item() == pytest.approx(brute_force_ap(s[:, c].tolist(), y[:, c].tolist()), abs=1e-6)
    assert mean_average_precision(s, y) == pytest.approx(100 * ap[:6].mean().item(), abs=1e-4)


def test_multiview_aggregation():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 2.0], [1.0, 0.0]]])  # one video, three views
    soft = torch.softmax(logits, dim=-1).mean(dim=1)
    assert torch.allclose(multiview_scores(logits, multilabel=False), soft)
    assert torch.allclose(multiview_scores(logits, multilabel=True), torch.sigmoid(logits).mean(dim=1))
    assert torch.allclose(aggregate_views(torch.softmax(logits, -1)), soft)
    assert soft.sum().item() == pytest.approx(1.0)
