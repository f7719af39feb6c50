"""Pretraining objectives and downstream heads/metrics: hand-computed cases, sampler distributions,
and a tiny end-to-end objective that learns."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from experiments.config.schema import CPPConfig, MEPConfig, NegativesConfig
from model.build import build_model
from model.cpp import CPPHead, shuffle_pairs
from model.heads import DownstreamModel, head_loss, head_scores
from model.mep import MEPHead, mask_positions
from model.metrics import average_precision, mean_average_precision, topk_accuracy
from model.negatives import candidate_probs, sample_negatives
from model.pretrain_objective import AVPretrainObjective
from tests.test_model import inputs, tiny


def test_infonce_matches_hand_computation():
    head = MEPHead(hidden=2, target_dim=2, normalize=False)
    with torch.no_grad():  # g = identity-ish is hard with an MLP: compare against the head's own g
        head.w.weight.copy_(torch.eye(2))
    outputs = torch.tensor([[1.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    q = head.g(outputs)
    s = torch.stack([q @ targets[0], q @ targets[1], q @ targets[2]], dim=1) / 0.5
    expected = -(s[0, 0] - torch.logsumexp(s[0], 0))
    loss, acc = head.loss(outputs, targets, torch.tensor([0]), torch.tensor([[1, 2]]), temperature=0.5)
    assert torch.allclose(loss, expected, atol=1e-6)
    assert acc.item() == float(s[0].argmax() == 0)


def test_cpp_bce_hand_case():
    head = CPPHead(hidden=2)
    bv, ba = torch.randn(3, 2), torch.randn(3, 2)
    is_pair = torch.tensor([True, False, True])
    logit = head(bv, ba)
    p = torch.sigmoid(logit)
    expected = -(torch.log(p[0]) + torch.log(1 - p[1]) + torch.log(p[2])) / 3
    loss, _ = head.loss(bv, ba, is_pair)
    assert torch.allclose(loss, expected, atol=1e-6)


@pytest.mark.parametrize("b,fraction", [(8, 0.5), (5, 0.5), (2, 0.5), (7, 1.0)])
def test_shuffle_pairs_mismatches_exactly_the_chosen_fraction(b, fraction):
    perm, is_pair = shuffle_pairs(b, fraction, "cpu", torch.Generator().manual_seed(0))
    k = round(fraction * b)
    assert (~is_pair).sum().item() == k
    assert torch.all(perm[~is_pair] != torch.arange(b)[~is_pair])
    assert torch.all(perm[is_pair] == torch.arange(b)[is_pair])


def test_mask_positions_static_count_and_consistency():
    mask, pos = mask_positions(4, 15, 0.15, "cpu", torch.Generator().manual_seed(0))
    assert mask.sum(1).tolist() == [2] * 4  # round(0.15 * 15) = 2 per clip
    assert torch.equal(mask[pos[:, 0], pos[:, 1]], torch.ones(len(pos), dtype=torch.bool))


def _toy_embeddings():
    torch.manual_seed(0)
    base = torch.randn(1, 1, 8)
    # candidates with graded similarity to segment (0, 0): emb_j = base + j * noise
    emb = base + torch.linspace(0, 3, 12).view(1, 12, 1) * torch.randn(1, 12, 8)
    return emb.view(2, 6, 8)


def test_cans_similar_favours_similar_and_dissimilar_the_reverse():
    emb = _toy_embeddings()
    pos = torch.tensor([[0, 0]])
    flat = F.normalize(emb.reshape(12, -1), dim=-1)
    cos = (flat[0] @ flat.T)
    order = cos[1:].argsort(descending=True) + 1  # candidates by decreasing similarity
    p_sim = candidate_probs(emb, pos, "cans_similar", temperature=0.2, sim_cap=1.1)[0]
    p_dis = candidate_probs(emb, pos, "cans_dissimilar", temperature=0.2, sim_cap=1.1)[0]
    assert p_sim[0] == 0 and p_dis[0] == 0
    assert torch.all(p_sim[order][:-1] >= p_sim[order][1:])  # monotone in similarity
    assert torch.all(p_dis[order][:-1] <= p_dis[order][1:])
    # empirical frequencies follow the distribution and never hit the positive
    g = torch.Generator().manual_seed(1)
    draws = torch.cat([sample_negatives(emb, pos, 1, "cans_similar", 0.2, 1.1, g) for _ in range(4000)]).flatten()
    freq = torch.bincount(draws, minlength=12).float() / draws.numel()
    assert freq[0] == 0
    assert torch.allclose(freq, p_sim, atol=0.03)


def test_sim_cap_excludes_near_duplicates():
    emb = torch.randn(1, 4, 8)
    emb[0, 1] = emb[0, 0] * 2.0  # cosine 1 with the positive
    p = candidate_probs(emb, torch.tensor([[0, 0]]), "cans_similar", 0.1, sim_cap=0.99)[0]
    assert p[1] == 0 and p[0] == 0 and math.isclose(p.sum().item(), 1.0, rel_tol=1e-5)


def test_current_sequence_and_minibatch_supports():
    emb = torch.randn(3, 5, 4)
    pos = torch.tensor([[1, 2], [2, 0]])
    seq = sample_negatives(emb, pos, 10, "current_sequence", generator=torch.Generator().manual_seed(0))
    assert torch.all(seq[0] // 5 == 1) and torch.all(seq[0] != 7)  # same clip, never the positive (1*5+2)
    assert torch.all(seq[1] // 5 == 2) and torch.all(seq[1] != 10)
    mb = candidate_probs(emb, pos, "current_minibatch")
    assert torch.allclose(mb[0][mb[0] > 0], torch.full((14,), 1 / 14))
    no_rep = sample_negatives(emb, pos, 6, "current_minibatch", generator=torch.Generator().manual_seed(0))
    assert all(len(set(r.tolist())) == 6 for r in no_rep)  # without replacement when possible


def test_topk_and_map():
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    target = torch.tensor([1, 1, 0])
    assert topk_accuracy(scores, target, 1) == pytest.approx(100 / 3)
    assert topk_accuracy(scores, target, 2) == pytest.approx(200 / 3)
    labels = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0]])
    s = torch.tensor([[0.9, 0.1], [0.8, 0.7], [0.3, 0.2], [0.1, 0.9]])
    # class 0 ranking: rows 0 (rel), 1, 2 (rel), 3 -> AP = (1/1 + 2/3) / 2; class 1: rows 3, 1 (rel), 2 (rel), 0
    ap = average_precision(s, labels)
    assert ap[0].item() == pytest.approx((1 + 2 / 3) / 2)
    assert ap[1].item() == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert mean_average_precision(s, labels) == pytest.approx(100 * (ap[0] + ap[1]).item() / 2)


def test_map_matches_brute_force():
    torch.manual_seed(0)
    s, y = torch.rand(30, 5), (torch.rand(30, 5) > 0.6).long()
    for c in range(5):
        order = s[:, c].argsort(descending=True)
        rel = y[order, c].float()
        precisions = [rel[: k + 1].mean() for k in range(30) if rel[k] == 1]
        assert average_precision(s, y)[c].item() == pytest.approx(torch.stack(precisions).mean().item(), abs=1e-6)


@pytest.mark.parametrize("row", ["v_cnn", "a_cnn", "m_cnn", "v_bert", "a_bert", "m_bert"])
def test_downstream_rows(row):
    video, audio = inputs()
    dm = DownstreamModel(build_model(tiny()), row, num_classes=5, modalities=("visual", "audio"), dropout=0.0)
    logits = dm(video, audio)
    assert len(logits) == (2 if row.endswith("bert") else 1) and all(lg.shape == (2, 5) for lg in logits)
    loss = head_loss(logits, torch.tensor([0, 3]), "cross_entropy")
    loss.backward()
    assert torch.allclose(head_scores(logits, False).sum(1), torch.full((2,), float(len(logits))))
    # cached features reproduce the logits (linear evaluation path)
    dm.eval()
    with torch.no_grad():
        feats = dm.features(video, audio)
        assert all(torch.allclose(a, b) for a, b in zip(dm.head_logits(feats), dm(video, audio)))


def test_m_bert_with_one_modality_dropped():
    video, audio = inputs()
    dm = DownstreamModel(build_model(tiny()), "m_bert", 4, modalities=("audio",), dropout=0.0)
    assert dm.modalities == ("audio",)
    assert dm(None, audio)[0].shape == (2, 4)
    with pytest.raises(ValueError, match="v_cnn"):
        DownstreamModel(build_model(tiny()), "v_cnn", 4, modalities=("audio",))


@pytest.mark.parametrize("fusion", ["early", "mid", "late"])
def test_objective_runs_for_every_fusion(fusion):
    model = build_model(tiny(fusion, "part"))
    obj = AVPretrainObjective(model, MEPConfig(), CPPConfig(), NegativesConfig(num=4))
    video, audio = inputs(b=4, s=6)
    out = obj(model, video, audio)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and out["mep"] > 0 and out["cpp"] > 0


def test_tiny_objective_lowers_both_losses():
    torch.manual_seed(0)
    model = build_model(tiny("mid", "part"))
    obj = AVPretrainObjective(model, MEPConfig(), CPPConfig(), NegativesConfig(num=4, sampler="current_minibatch"))
    params = list(model.parameters()) + list(obj.parameters())
    opt = torch.optim.AdamW(params, lr=3e-3)
    video, audio = inputs(b=6, s=6)
    # structured toy clips: segment content shared across modalities makes both tasks learnable
    code = torch.randn(6, 6, 1, 1, 1, 1)
    video = video * 0.1 + code
    audio = audio * 0.1 + code[..., 0]
    hist = []
    for step in range(40):
        torch.manual_seed(step)
        out = obj(model, video, audio)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        hist.append((out["mep"].item(), out["cpp"].item()))
    first = [sum(h[i] for h in hist[:5]) / 5 for i in range(2)]
    last = [sum(h[i] for h in hist[-5:]) / 5 for i in range(2)]
    assert last[0] < 0.8 * first[0], (first, last)
    assert last[1] < 0.8 * first[1], (first, last)
