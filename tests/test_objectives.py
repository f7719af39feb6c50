"""Pretraining objectives: InfoNCE and BCE against hand computation, CPP shuffling, MEP masking, the
combined objective for every fusion / stream choice on a tiny stand-in model implementing the model
contract, and both losses going down on the real tiny AVBERT."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from experiments.config.schema import CPPConfig, MEPConfig, NegativesConfig
from model.cpp import CPPHead, shuffle_pairs
from model.mep import MEPHead, mask_positions, mask_to_positions, masked_count
from model.pretrain_objective import AVPretrainObjective

VIDEO, AUDIO = (3, 2, 4, 4), (1, 4, 4)  # per-segment input shapes of the stand-in model


class FakeOutput:
    """ContextOutput stand-in (same fields and top_* properties)."""

    def __init__(self, **kw):
        self.visual = self.audio = self.multi_visual = self.multi_audio = None
        self.__dict__.update(kw)

    @property
    def top_visual(self):
        return self.multi_visual if self.multi_visual is not None else self.visual

    @property
    def top_audio(self):
        return self.multi_audio if self.multi_audio is not None else self.audio


class FakeAVBert(nn.Module):
    """Tiny model with the AVBert contract: linear 'CNNs', one transformer layer per stream."""

    def __init__(self, fusion: str = "mid", dv: int = 12, da: int = 10, hidden: int = 16):
        super().__init__()
        self.fusion, self.visual_dim, self.audio_dim, self.hidden = fusion, dv, da, hidden
        self.visual_cnn = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(VIDEO), dv))
        self.audio_cnn = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(AUDIO), da))
        self.inp = nn.ModuleDict({"visual": nn.Linear(dv, hidden), "audio": nn.Linear(da, hidden)})
        self.bos = nn.ParameterDict({m: nn.Parameter(torch.randn(hidden)) for m in ("visual", "audio")})
        self.mask_token = nn.ParameterDict({m: nn.Parameter(torch.randn(hidden)) for m in ("visual", "audio")})
        self.pos = nn.Parameter(0.1 * torch.randn(2, 32, hidden))
        layer = lambda: nn.TransformerEncoderLayer(hidden, 2, 32, dropout=0.0, batch_first=True)  # noqa: E731
        self.tf = nn.ModuleDict({r: layer() for r in ("visual", "audio", "multi")})

    def encode_visual(self, video):
        return self.visual_cnn(video)

    def encode_audio(self, spec):
        return self.audio_cnn(spec)

    def contextualize(self, ev, ea, visual_mask=None, audio_mask=None):
        xs = {}
        for i, (m, e, mask) in enumerate((("visual", ev, visual_mask), ("audio", ea, audio_mask))):
            if e is None:
                continue
            x = self.inp[m](e)
            if mask is not None:
                x = torch.where(mask[..., None], self.mask_token[m], x)
            x = torch.cat([self.bos[m].expand(x.shape[0], 1, -1), x], 1)
            xs[m] = x + self.pos[i, : x.shape[1]]
        out = FakeOutput()
        if self.fusion in ("mid", "late"):
            for m, x in xs.items():
                setattr(out, m, self.tf[m](x))
        if self.fusion in ("early", "mid"):
            src = {m: getattr(out, m) if self.fusion == "mid" else x for m, x in xs.items()}
            y = self.tf["multi"](torch.cat(list(src.values()), 1))
            for m, part in zip(src, torch.split(y, [v.shape[1] for v in src.values()], 1)):
                setattr(out, f"multi_{m}", part)
        return out


def fake_batch(b=4, s=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, s, *VIDEO, generator=g), torch.randn(b, s, *AUDIO, generator=g)


# ------------------------------------------------------------------------------------------ MEP
def _identity_head(normalize: bool) -> MEPHead:
    head = MEPHead(hidden=2, target_dim=2, normalize=normalize)
    head.g = nn.Identity()
    with torch.no_grad():
        head.w.weight.copy_(torch.eye(2))
    return head


def test_infonce_matches_hand_computation():
    outputs = torch.tensor([[1.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    loss, acc = _identity_head(False).loss(outputs, targets, torch.tensor([0]), torch.tensor([[1, 2]]), 0.5)
    # scores o.x / tau = [2, 0, -2]; -log softmax[0] = log(1 + e^-2 + e^-4)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-2) + math.exp(-4)), abs=1e-6)
    assert acc.item() == 1.0
    # cosine form: scaling the targets changes nothing; a wrong positive gives accuracy 0
    loss_n, _ = _identity_head(True).loss(outputs, 3 * targets, torch.tensor([0]), torch.tensor([[1, 2]]), 0.5)
    assert loss_n.item() == pytest.approx(loss.item(), abs=1e-6)
    _, acc_bad = _identity_head(True).loss(outputs, targets, torch.tensor([2]), torch.tensor([[0, 1]]), 0.5)
    assert acc_bad.item() == 0.0


def test_infonce_gathers_each_rows_candidates():
    torch.manual_seed(0)
    head = MEPHead(hidden=8, target_dim=5)
    o, x = torch.randn(3, 8), torch.randn(10, 5)
    pos, neg = torch.tensor([0, 4, 9]), torch.tensor([[1, 2], [3, 3], [0, 8]])
    logits = head.logits(o, x, pos, neg, 0.2)
    q = nn.functional.normalize(head.g(o), dim=-1)
    k = nn.functional.normalize(head.w(x), dim=-1)
    for p in range(3):
        cand = [pos[p].item()] + neg[p].tolist()
        assert torch.allclose(logits[p], (k[cand] @ q[p]) / 0.2, atol=1e-5)


def test_mask_positions_fixed_count_and_positions():
    g = torch.Generator().manual_seed(0)
    mask = mask_positions(4, 15, 0.15, g)
    assert mask.sum(1).tolist() == [2] * 4  # round(0.15 * 15) = 2
    assert mask_positions(3, 5, 0.01, g).sum(1).tolist() == [1] * 3  # at least one per clip
    assert not mask_positions(3, 5, 0.0, g).any()
    assert masked_count(8, 1.0) == 8
    pos = mask_to_positions(mask, masked_count(15, 0.15))
    assert torch.equal(pos, mask.nonzero())


# ------------------------------------------------------------------------------------------ CPP
def test_cpp_bce_hand_case():
    head = CPPHead(hidden=2)
    lin = nn.Linear(4, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
        lin.bias.zero_()
    head.mlp = lin  # logit = first coordinate of bos_v
    bos_v = torch.tensor([[2.0, 0.0], [-1.0, 0.0], [0.0, 0.0]])
    is_pair = torch.tensor([True, False, True])
    loss, acc = head.loss(bos_v, torch.zeros(3, 2), is_pair)
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1)) + math.log(2)) / 3
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert acc.item() == pytest.approx(2 / 3)


@pytest.mark.parametrize("b,fraction", [(8, 0.5), (5, 0.5), (2, 0.5), (7, 1.0), (4, 0.25), (6, 0.0), (1, 0.5)])
def test_shuffle_pairs_mismatches_exactly_the_chosen_fraction(b, fraction):
    for seed in range(20):
        perm, is_pair = shuffle_pairs(b, fraction, torch.Generator().manual_seed(seed))
        k = round(fraction * b) if b >= 2 else 0
        ar = torch.arange(b)
        assert (~is_pair).sum().item() == k
        assert torch.equal(perm != ar, ~is_pair)  # mismatched exactly where flagged
        if k >= 2:
            assert sorted(perm.tolist()) == ar.tolist()  # a permutation: every audio used once


# ------------------------------------------------------------------------------------ objective
def _objective(model, streams=("visual", "audio", "multi"), sampler="current_minibatch", **kw):
    mep = MEPConfig(streams=list(streams), mask_ratio=0.3)
    return AVPretrainObjective(model, mep, CPPConfig(), NegativesConfig(num=4, sampler=sampler), **kw)


@pytest.mark.parametrize("fusion", ["early", "mid", "late"])
@pytest.mark.parametrize("sharing", ["none", "proj", "head"])
def test_objective_every_fusion_and_head_sharing(fusion, sharing):
    torch.manual_seed(0)
    model = FakeAVBert(fusion)
    obj = _objective(model, head_sharing=sharing)
    out = obj(model, *fake_batch(), generator=torch.Generator().manual_seed(0))
    expected = {"early": {"multi"}, "mid": {"visual", "audio", "multi"}, "late": {"visual", "audio"}}[fusion]
    assert {k.removeprefix("mep_") for k in out if k.startswith("mep_") and "acc" not in k} == expected
    assert torch.isfinite(out["loss"]) and out["mep"] > 0 and out["cpp"] > 0
    streams = [out[f"mep_{s}"] for s in expected]
    assert out["loss"].item() == pytest.approx((sum(streams) / len(streams) + out["cpp"]).item(), rel=1e-5)
    out["loss"].backward()
    assert all(p.grad is not None for p in obj.parameters())  # every head is used
    if sharing == "proj" and fusion != "late":
        assert obj.mep_heads["multi_visual"].w is obj.proj["visual"]


def test_objective_single_stream_and_weights():
    model = FakeAVBert("mid")
    obj = _objective(model, streams=["multi"])
    out = obj(model, *fake_batch())
    assert "mep_visual" not in out and "mep_multi" in out
    with pytest.raises(ValueError, match="no stream"):
        _objective(FakeAVBert("late"), streams=["multi"])
    mep_only = AVPretrainObjective(model, MEPConfig(streams=["visual"]), CPPConfig(weight=0.0), NegativesConfig(num=3))
    out = mep_only(model, *fake_batch())
    assert mep_only.cpp_head is None and out["cpp"] == 0 and out["loss"].item() == pytest.approx(out["mep"].item())


class SpyModel(FakeAVBert):
    def contextualize(self, ev, ea, visual_mask=None, audio_mask=None):
        self.seen = (ev.detach(), ea.detach(), visual_mask, audio_mask)
        return super().contextualize(ev, ea, visual_mask, audio_mask)


def test_objective_permutes_audio_before_the_transformers():
    model = SpyModel("mid")
    obj = _objective(model)
    video, audio = fake_batch(b=6)
    obj(model, video, audio, generator=torch.Generator().manual_seed(3))
    perm, is_pair = shuffle_pairs(6, 0.5, torch.Generator().manual_seed(3))
    ea = model.encode_audio(audio.flatten(0, 1)).view(6, 6, -1).detach()
    ev, ea_seen, vmask, amask = model.seen
    assert not is_pair.all() and torch.allclose(ea_seen, ea[perm])
    assert vmask.sum(1).tolist() == [2] * 6 and amask.sum(1).tolist() == [2] * 6  # round(0.3 * 6)


def test_objective_with_frozen_cnns():
    model = FakeAVBert("mid")
    for p in list(model.visual_cnn.parameters()) + list(model.audio_cnn.parameters()):
        p.requires_grad_(False)
    obj = _objective(model, sampler="cans_similar")
    out = obj(model, *fake_batch())
    out["loss"].backward()
    assert obj.proj["visual"].weight.grad is not None and model.visual_cnn[1].weight.grad is None


def test_heldout_scores_mep_against_the_clips_other_segments():
    """heldout=True (the held-out MEP top-1): the negatives are every other segment of the clip (S-1,
    chance 1/S) whatever the configured sampler and count; masks and CPP pairs still come from the
    generator, so the same seed gives the same numbers."""
    torch.manual_seed(0)
    model = FakeAVBert("mid")
    video, audio = fake_batch(b=4, s=6)
    seen = []
    outs = {}
    for sampler, num in (("current_minibatch", 4), ("cans_similar", 2), ("current_sequence", 3)):
        torch.manual_seed(1)  # same heads
        obj = AVPretrainObjective(model, MEPConfig(mask_ratio=0.3), CPPConfig(), NegativesConfig(num=num, sampler=sampler))
        for h, head in obj.mep_heads.items():
            real = head.loss
            head.loss = lambda o, cand, pos_flat, neg, t, real=real: (seen.append(neg), real(o, cand, pos_flat, neg, t))[1]
        with torch.no_grad():
            outs[sampler] = obj(model, video, audio, generator=torch.Generator().manual_seed(5), heldout=True)
    ref = outs["current_minibatch"]
    for out in outs.values():
        for k in ("mep", "mep_acc", "cpp", "cpp_acc"):
            assert torch.equal(out[k], ref[k]), k
    assert seen and all(n.shape[1] == 5 for n in seen)  # S - 1 candidates, whatever num says
    for neg in seen:  # each row: the 5 other segments of one clip
        clip = neg // 6
        assert (clip == clip[:, :1]).all()
        assert all(len(set(r)) == 5 for r in (neg % 6).tolist())
    torch.manual_seed(1)
    plain = AVPretrainObjective(model, MEPConfig(mask_ratio=0.3), CPPConfig(), NegativesConfig(num=4))
    with torch.no_grad():
        out = plain(model, video, audio, generator=torch.Generator().manual_seed(5))
    assert torch.equal(out["cpp"], ref["cpp"]) and not torch.equal(out["mep"], ref["mep"])  # only MEP changes



def test_heldout_batch_form_scores_mep_against_the_other_clips_positives():
    """heldout="batch": each masked segment against the masked segments of the other clips (B-1 with one
    per clip); True means "clip"; an unknown form is refused before any work."""
    torch.manual_seed(0)
    model = FakeAVBert("mid")
    video, audio = fake_batch(b=4, s=6)
    obj = AVPretrainObjective(model, MEPConfig(mask_ratio=0.1), CPPConfig(), NegativesConfig())
    seen = []
    for head in obj.mep_heads.values():
        real = head.loss
        head.loss = lambda o, cand, pos_flat, neg, t, real=real: (seen.append((pos_flat, neg)), real(o, cand, pos_flat, neg, t))[1]
    with torch.no_grad():
        out = obj(model, video, audio, generator=torch.Generator().manual_seed(5), heldout="batch")
        same = [obj(model, video, audio, generator=torch.Generator().manual_seed(5), heldout=h)["mep_acc"]
                for h in (True, "clip")]
    assert 0 <= float(out["mep_acc"]) <= 1 and torch.equal(same[0], same[1])
    pos_flat, neg = seen[0]
    assert neg.shape == (4, 3) and sorted((neg // 6)[0].tolist()) == [1, 2, 3]
    assert set(neg[0].tolist()) == set(pos_flat[1:].tolist())
    with pytest.raises(ValueError, match="held-out MEP form"):
        obj(model, video, audio, heldout="minibatch")


def test_cpp_unmasked_pass_scores_cpp_on_unmasked_inputs_and_leaves_mep_alone():
    """cpp.unmasked_pass: CPP as an objective without MEP (so without masks) computes it, on the same
    pairs; MEP as the default computes it; the default's CPP sees the masked inputs, so it differs."""
    model = FakeAVBert("mid")
    video, audio = fake_batch(b=6, s=5)
    mep = MEPConfig(mask_ratio=0.4)
    objs = {}
    for name, mep_cfg, cpp_cfg in (("default", mep, CPPConfig()), ("unmasked", mep, CPPConfig(unmasked_pass=True)),
                                   ("no_mep", MEPConfig(weight=0.0), CPPConfig())):
        torch.manual_seed(1)
        objs[name] = AVPretrainObjective(model, mep_cfg, cpp_cfg, NegativesConfig(num=3, sampler="current_minibatch"))
    objs["no_mep"].cpp_head.load_state_dict(objs["unmasked"].cpp_head.state_dict())
    with torch.no_grad():
        out = {k: o(model, video, audio, generator=torch.Generator().manual_seed(2)) for k, o in objs.items()}
    assert torch.allclose(out["unmasked"]["cpp"], out["no_mep"]["cpp"])
    assert torch.equal(out["unmasked"]["mep"], out["default"]["mep"])
    assert not torch.allclose(out["unmasked"]["cpp"], out["default"]["cpp"])
    total = out["unmasked"]["mep"] + out["unmasked"]["cpp"]
    assert torch.allclose(out["unmasked"]["loss"], total)


def _train(model, obj, video, audio, steps, lr):
    opt = torch.optim.Adam(list(model.parameters()) + list(obj.parameters()), lr=lr)
    hist = []
    for _ in range(steps):
        out = obj(model, video, audio, generator=torch.Generator().manual_seed(0))  # fixed masks/pairs/negatives
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        hist.append((out["mep"].item(), out["cpp"].item()))
    return hist


def test_both_losses_go_down_on_the_stand_in_model():
    torch.manual_seed(0)
    model = FakeAVBert("mid")
    obj = _objective(model, sampler="cans_similar")
    hist = _train(model, obj, *fake_batch(b=8, s=6), steps=30, lr=3e-3)
    assert hist[-1][0] < 0.7 * hist[0][0] and hist[-1][1] < 0.7 * hist[0][1], hist


def test_both_losses_go_down_on_the_real_tiny_model():
    from model.build import build_model
    from tests.test_model import tiny

    torch.manual_seed(0)
    model = build_model(tiny("mid", "part"))
    obj = AVPretrainObjective(model, MEPConfig(mask_ratio=0.3), CPPConfig(),
                              NegativesConfig(num=4, sampler="cans_similar"))
    g = torch.Generator().manual_seed(0)
    video, audio = torch.randn(8, 6, 3, 4, 16, 16, generator=g), torch.randn(8, 6, 1, 16, 16, generator=g)
    hist = _train(model, obj, video, audio, steps=30, lr=2e-3)
    first, last = hist[0], [sum(h[i] for h in hist[-3:]) / 3 for i in range(2)]
    assert last[0] < 0.8 * first[0] and last[1] < 0.8 * first[1], hist
