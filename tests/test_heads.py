"""Downstream heads: every row on the stand-in and the real tiny model, cached features reproducing
the logits (linear evaluation), dropped modalities, losses and parameter groups."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from model.heads import (ROWS, DownstreamModel, classification_loss, downstream_loss, head_scores,
                         param_groups)
from tests.test_objectives import FakeAVBert, fake_batch

B, S, C = 2, 3, 5


def real_model():
    from model.build import build_model
    from tests.test_model import tiny

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    return build_model(tiny("mid", "part")), (torch.randn(B, S, 3, 4, 16, 16, generator=g),
                                              torch.randn(B, S, 1, 16, 16, generator=g))


def fake_model(fusion="mid"):
    torch.manual_seed(0)
    return FakeAVBert(fusion), fake_batch(b=B, s=S)


@pytest.mark.parametrize("make", [fake_model, real_model], ids=["fake", "real"])
@pytest.mark.parametrize("row", ROWS)
def test_rows_shapes_backward_and_cached_features(make, row):
    backbone, (video, audio) = make()
    dm = DownstreamModel(backbone, row, C, dropout=0.0, mel_bins=audio.shape[-2])  # *_hand: 2 x mel bins wide
    feats = dm.features(video, audio)
    per_head = dm.head_logits(feats)
    assert set(per_head) == ({"concat", "seq"} if row.endswith("bert") else {"concat"})
    assert all(lg.shape == (B, S, C) for lg in per_head.values())
    assert dm(video, audio).shape == (B, C)
    downstream_loss(per_head, torch.tensor([0, 3]), "cross_entropy").backward()
    assert all(p.grad is not None for h in dm.head_modules() for p in h.parameters())
    # linear evaluation: features computed once without gradients give the same head outputs
    dm.eval()
    with torch.no_grad():
        cached = {k: v.clone() for k, v in dm.features(video, audio).items()}
        assert torch.allclose(dm.logits(cached), dm(video, audio), atol=1e-5)
        assert torch.allclose(head_scores(dm.head_logits(cached), False).sum(1), torch.ones(B))


@pytest.mark.parametrize("fusion", ["early", "mid", "late"])
def test_bert_rows_on_one_modality_for_every_fusion(fusion):
    backbone, (video, audio) = fake_model(fusion)
    assert DownstreamModel(backbone, "v_bert", C)(video, None).shape == (B, C)
    assert DownstreamModel(backbone, "a_bert", C)(None, audio).shape == (B, C)


def test_m_bert_drops_the_terms_of_an_absent_modality():
    backbone, (video, audio) = fake_model()
    dm = DownstreamModel(backbone, "m_bert", C, dropout=0.0).eval()
    with torch.no_grad():
        feats = dm.features(video, None)
        assert set(feats) == {"cnn_visual", "seq_visual"}
        clip = dm.head_logits(feats)["concat"]
        dv = backbone.visual_dim
        expected = feats["cnn_visual"] @ dm.concat_head.fc.weight[:, :dv].T + dm.concat_head.fc.bias
        assert torch.allclose(clip, expected, atol=1e-6)
        seq = dm.head_logits(feats)["seq"]
        x = feats["seq_visual"]
        h = dm.seq_head.proj["visual"](torch.cat([x[:, :1].expand(-1, S, -1), x[:, 1:]], -1))
        assert torch.allclose(seq, dm.seq_head.fc(dm.seq_head.norm(h)), atol=1e-6)
    # an evaluation that only gives audio builds the audio terms only
    audio_only = DownstreamModel(backbone, "m_bert", C, modalities=["audio"])
    assert audio_only.modalities == ("audio",) and audio_only(None, audio).shape == (B, C)
    with pytest.raises(ValueError, match="v_cnn"):
        DownstreamModel(backbone, "v_cnn", C, modalities=["audio"])
    with pytest.raises(ValueError, match="needs one of"):
        dm.features(None, None)


@pytest.mark.parametrize("row", ["v_hand", "a_hand", "m_hand"])
def test_hand_rows_use_handcrafted_features_and_no_backbone(row):
    """The reference rows: a concat head on hand-crafted segment statistics (96 visual values, 2 x mel
    bins audio values), no transformer head, and no backbone parameter to train."""
    from model import handcrafted

    backbone, (video, audio) = real_model()
    dm = DownstreamModel(backbone, row, C, dropout=0.0, mel_bins=audio.shape[-2])
    assert dm.backbone_parameters() == [] and dm.seq_head is None
    feats = dm.features(video, audio)
    want = {"v": {"visual": 96}, "a": {"audio": 2 * audio.shape[-2]},
            "m": {"visual": 96, "audio": 2 * audio.shape[-2]}}[row[0]]
    assert {k: v.shape for k, v in feats.items()} == {f"cnn_{m}": (B, S, d) for m, d in want.items()}
    assert handcrafted.feature_dims(audio.shape[-2]) == {"visual": 96, "audio": 2 * audio.shape[-2]}
    logits = dm.head_logits(feats)
    assert set(logits) == {"concat"} and logits["concat"].shape == (B, S, C)
    assert dm(video, audio).shape == (B, C)
    # features do not depend on the backbone's weights
    with torch.no_grad():
        for p in backbone.parameters():
            p.add_(1.0)
    assert all(torch.equal(feats[k], v) for k, v in dm.features(video, audio).items())
    # fine-tuning a hand row trains the head only
    ids = {id(p) for g in param_groups(dm, 1e-4, 1e-3, 0.0) for p in g["params"]}
    assert ids == {id(p) for p in dm.head_parameters()}


def test_losses():
    logits = torch.tensor([[2.0, 0.0, 1.0], [0.5, 0.4, 0.0]])
    target = torch.tensor([0, 1])
    ce = classification_loss(logits, target, "cross_entropy")
    assert ce.item() == pytest.approx(F.cross_entropy(logits, target).item())
    # multi-margin (released ESC-50, margin 0.1): mean over rows of sum_{j != y} max(0, 0.1 - x_y + x_j) / C
    hand = (0.0 + (0.1 - 0.4 + 0.5) / 3) / 2  # only row 1, class 0 violates the margin
    assert classification_loss(logits, target, "multi_margin").item() == pytest.approx(hand)
    multi = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    sig = torch.sigmoid(logits)
    hand_bce = -(multi * sig.log() + (1 - multi) * (1 - sig).log()).mean()
    assert classification_loss(logits, multi, "bce").item() == pytest.approx(hand_bce.item(), rel=1e-6)
    with pytest.raises(ValueError, match="unknown loss"):
        classification_loss(logits, target, "hinge")
    # per-segment logits: the clip label is repeated over segments, one loss per head, summed
    seg = torch.randn(2, 4, 3)
    per_seg = sum(F.cross_entropy(seg[:, t], target) for t in range(4)) / 4
    both = downstream_loss({"concat": seg, "seq": seg}, target, "cross_entropy")
    assert both.item() == pytest.approx(2 * per_seg.item(), rel=1e-5)
    assert math.isfinite(downstream_loss({"concat": seg}, multi, "bce").item())


def test_param_groups_split_backbone_and_heads():
    backbone, _ = fake_model()
    dm = DownstreamModel(backbone, "v_cnn", C)
    groups = param_groups(dm, backbone_lr=1e-4, head_lr=1e-3, weight_decay=5e-6)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    head_ids = {id(p) for h in dm.head_modules() for p in h.parameters()}
    cnn_ids = {id(p) for p in backbone.visual_cnn.parameters()}
    assert set(ids) == head_ids | cnn_ids  # v_cnn never trains the audio CNN or the transformers
    for g in groups:
        assert g["lr"] == (1e-3 if id(g["params"][0]) in head_ids else 1e-4)
        assert g["weight_decay"] == (5e-6 if g["params"][0].ndim >= 2 else 0.0)
        assert all((p.ndim >= 2) == (g["weight_decay"] > 0) for p in g["params"])
    # m_bert fine-tuning covers the whole backbone; linear evaluation only the heads
    mb = DownstreamModel(backbone, "m_bert", C)
    ids = {id(p) for g in param_groups(mb, 1e-4, 1e-3, 0.0) for p in g["params"]}
    assert ids == {id(p) for p in mb.parameters()}
    lin = param_groups(mb, None, 1e-3, 0.0)
    assert {id(p) for g in lin for p in g["params"]} == {id(p) for h in mb.head_modules() for p in h.parameters()}
    # a_bert leaves the visual CNN out
    ab = DownstreamModel(backbone, "a_bert", C)
    ids = {id(p) for g in param_groups(ab, 1e-4, 1e-3, 0.0) for p in g["params"]}
    assert not ids & {id(p) for p in backbone.visual_cnn.parameters()}
