"""Model: shapes for every fusion x sharing, exact paper-scale parameter counts, real weight tying,
orthogonality under optimisation, one-modality inputs, and the released-checkpoint converter."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from model.build import build_model
from model.config import AudioCNNConfig, AVBertConfig, TransformerConfig, VisualCNNConfig
from model.convert_released import convert_state_dict, load_released
from model.low_rank import FactorLinear
from model.params import count_params

FUSIONS = ("early", "mid", "late")
SHARINGS = ("none", "cross_layer", "all", "part", "multi2")
B, S = 2, 4


def tiny(fusion="mid", sharing="part", arch="resnet3d") -> AVBertConfig:
    return AVBertConfig(
        fusion=fusion, sharing=sharing,
        visual_cnn=VisualCNNConfig(arch=arch, stage_blocks=(1, 1, 1, 1), width=4, stem_kernel=(3, 5, 5), stem_stride=(1, 2, 2)),
        audio_cnn=AudioCNNConfig(stage_blocks=(1, 1, 1, 1), width=4, stem_kernel=5),
        transformer=TransformerConfig(hidden=32, heads=4, ffn=64, layers=3, rank=8, max_positions=8))


def inputs(b=B, s=S):
    torch.manual_seed(0)
    return torch.randn(b, s, 3, 8, 32, 32), torch.randn(b, s, 1, 40, 32)


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("sharing", SHARINGS)
def test_forward_backward_shapes(fusion, sharing):
    model = build_model(tiny(fusion, sharing))
    video, audio = inputs()
    out = model(video, audio)
    assert out.visual_emb.shape == (B, S, model.visual_dim) and out.audio_emb.shape == (B, S, model.audio_dim)
    for name in ("visual", "audio", "multi_visual", "multi_audio"):
        t = getattr(out, name)
        expected = (name.startswith("multi") and fusion != "late") or (not name.startswith("multi") and fusion != "early")
        assert (t is not None) == expected, name
        if t is not None:
            assert t.shape == (B, S + 1, 32)
    (out.top_visual.sum() + out.top_audio.sum()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert sum(g is not None for g in grads) > 0.9 * len(grads)


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("missing", ("visual", "audio"))
def test_one_modality_forward(fusion, missing):
    model = build_model(tiny(fusion, "part"))
    video, audio = inputs()
    out = model(None if missing == "visual" else video, None if missing == "audio" else audio)
    present = "audio" if missing == "visual" else "visual"
    assert getattr(out, f"top_{missing}") is None
    assert getattr(out, f"top_{present}").shape == (B, S + 1, 32)


def test_slowfast_backbone():
    model = build_model(tiny(arch="slowfast"))
    video, audio = inputs()
    out = model(video, audio)
    assert out.visual_emb.shape[-1] == model.visual_dim == 4 * 32 + (4 // 8 or 1) * 32


def test_masked_positions_use_mask_vector_and_never_bos():
    model = build_model(tiny()).eval()
    emb = torch.randn(B, S, model.visual_dim)
    mask = torch.zeros(B, S, dtype=torch.bool)
    mask[0, 1] = True
    tokens = model.visual_input(emb, mask)
    assert torch.allclose(tokens[0, 2], model.visual_input.mask_token)  # position t=1 -> index 2 (BOS first)
    assert torch.allclose(tokens[:, 0], model.visual_input.bos.expand(B, -1))
    assert not torch.allclose(tokens[1, 2], model.visual_input.mask_token)



def test_pooling_bins_widen_the_embeddings():
    """audio_cnn.freq_bins = k keeps k frequency bands (out_dim x k), visual_cnn.spatial_bins = k keeps
    k x k spatial cells (out_dim x k^2); 1 is the released global pool."""
    base = tiny()
    wide = dataclasses.replace(base, visual_cnn=dataclasses.replace(base.visual_cnn, spatial_bins=2),
                               audio_cnn=dataclasses.replace(base.audio_cnn, freq_bins=3))
    m1, m2 = build_model(base), build_model(wide)
    assert (m2.visual_dim, m2.audio_dim) == (4 * m1.visual_dim, 3 * m1.audio_dim)
    assert (m2.visual_input.proj.in_features, m2.audio_input.proj.in_features) == (m2.visual_dim, m2.audio_dim)
    video, audio = inputs()
    with torch.no_grad():
        assert m2.encode_visual(video.flatten(0, 1)).shape == (B * S, m2.visual_dim)
        assert m2.encode_audio(audio.flatten(0, 1)).shape == (B * S, m2.audio_dim)
    out = m2(video, audio)
    assert out.visual_emb.shape == (B, S, m2.visual_dim) and out.audio_emb.shape == (B, S, m2.audio_dim)
    assert out.top_visual.shape == out.top_audio.shape == (B, S + 1, 32)
    # k = 1 is exactly the global mean
    with torch.no_grad():
        fm = m1.visual_cnn.feature_map(video.flatten(0, 1))
        assert torch.allclose(m1.visual_cnn(video.flatten(0, 1)), fm.mean(dim=(2, 3, 4)))
    with pytest.raises(ValueError, match="freq_bins"):
        AudioCNNConfig(freq_bins=0)
    with pytest.raises(ValueError, match="spatial_bins"):
        VisualCNNConfig(spatial_bins=0)
    with pytest.raises(ValueError, match="spatial_bins"):
        VisualCNNConfig(arch="slowfast", spatial_bins=2)


def test_standard_init_turns_zero_init_final_bn_off():
    from model.config import standard_init

    cfg = tiny()
    std = standard_init(cfg)
    assert cfg.zero_init_final_bn and not std.zero_init_final_bn
    assert dataclasses.replace(std, zero_init_final_bn=True) == cfg  # nothing else changes
    final = lambda m: [b.weight for b in m.modules() if getattr(b, "is_final_bn", False)]  # noqa: E731
    assert final(build_model(cfg)) and all(torch.all(w == 0) for w in final(build_model(cfg)))
    assert all(torch.all(w == 1) for w in final(build_model(std)))


def test_position_init_std_sets_the_embedding_std():
    cfg = dataclasses.replace(tiny(), transformer=dataclasses.replace(tiny().transformer, hidden=64, max_positions=64))
    emb = lambda m: torch.cat([p.flatten() for n, p in m.named_parameters()  # noqa: E731
                               if n.startswith("stream_embed.") and (".position." in n or ".token_type." in n)])
    torch.manual_seed(0)
    default = emb(build_model(cfg)).std().item()
    torch.manual_seed(0)
    wide = emb(build_model(dataclasses.replace(cfg, position_init_std=0.5))).std().item()
    assert default == pytest.approx(cfg.init_std, rel=0.1)  # 0 = init_std
    assert wide == pytest.approx(0.5, rel=0.1)


def test_embedding_norm_standardises_what_the_transformers_and_mep_read():
    """embedding_norm="batch" (ours, tiny profile): every pooled CNN feature has mean 0 / std 1 over the
    batch in training, running statistics in eval; "none" (released) leaves the CNN output as it is and
    adds no parameters or buffers."""
    cfg = tiny()
    torch.manual_seed(0)
    plain = build_model(cfg)
    torch.manual_seed(0)
    normed = build_model(dataclasses.replace(cfg, embedding_norm="batch"))
    assert sum(p.numel() for p in normed.parameters()) == sum(p.numel() for p in plain.parameters())
    video = torch.randn(12, 3, 4, 32, 32)
    raw = plain.encode_visual(video)
    assert raw.mean(0).abs().max() > 0.01  # pooled post-ReLU features share a common offset
    z = normed.train().encode_visual(video)
    torch.testing.assert_close(z.mean(0), torch.zeros(z.shape[1]), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(0, unbiased=False), torch.ones(z.shape[1]), atol=1e-2, rtol=0)
    assert normed.audio_emb_norm.running_mean.abs().sum() == 0  # audio untouched by a visual batch
    normed.eval()
    assert not torch.allclose(normed.encode_visual(video), z)  # eval: running statistics


PAPER = {"none": 127_581_696, "cross_layer": 21_263_616, "all": 7_087_872, "part": 3_843_840, "multi2": 42_527_232}


@pytest.mark.parametrize("sharing", list(PAPER))
def test_paper_scale_transformer_params(sharing):
    counts = count_params(build_model(AVBertConfig(sharing=sharing), device="meta"))
    assert counts["transformer"] == PAPER[sharing]
    assert counts["visual_cnn"] == 31_672_128 and counts["audio_cnn"] == 5_839_840


def test_all_and_part_use_one_stack_object_with_accumulated_grads():
    for sharing in ("all", "part"):
        model = build_model(tiny("mid", sharing))
        assert len(model.stacks) == 1
        assert model.transformer("visual") is model.transformer("audio") is model.transformer("multi")
    model = build_model(tiny("mid", "part")).eval()
    shared_u = model.transformer("visual").layers[0].q.up.weight
    ev, ea = torch.randn(B, S, model.visual_dim), torch.randn(B, S, model.audio_dim)

    def grad_of(select):
        model.zero_grad()
        out = model.contextualize(ev, ea)
        select(out).sum().backward()
        return shared_u.grad.clone()

    g_v = grad_of(lambda o: o.visual)
    g_a = grad_of(lambda o: o.audio)
    g_all = grad_of(lambda o: o.visual.sum() + o.audio.sum())
    assert g_v.abs().sum() > 0 and g_a.abs().sum() > 0
    assert torch.allclose(g_all, g_v + g_a, atol=1e-5)
    # cross-layer sharing: the one layer object is applied at every depth
    stack = model.transformer("visual")
    assert len(stack.layers) == 1 and stack.depth == 3


def test_no_sharing_has_distinct_layers_and_stacks():
    model = build_model(tiny("mid", "none"))
    assert len(model.stacks) == 3 and all(len(s.layers) == 3 for s in model.stacks)
    assert model.stacks[0].layers[0].q.weight.data_ptr() != model.stacks[1].layers[0].q.weight.data_ptr()


def test_rotation_stays_orthogonal_under_adamw():
    torch.manual_seed(0)
    layer = FactorLinear(3, 16, 8, 12)
    opt = torch.optim.AdamW(layer.parameters(), lr=0.5)
    for step in range(20):
        x = torch.randn(32, 16)
        loss = sum(layer(x, g).pow(2).sum() * (g + 1) for g in range(3))
        opt.zero_grad()
        loss.backward()
        opt.step()
    for g in range(3):
        r = layer.rotation(g)
        assert torch.allclose(r @ r.T, torch.eye(8), atol=1e-5)
        assert not torch.allclose(r, torch.eye(8), atol=1e-2)  # it did move


def test_factor_linear_is_scale_invariant():
    layer = FactorLinear(2, 16, 8, 12)
    x = torch.randn(5, 16)
    assert torch.allclose(layer(x, 1), layer(7.5 * x, 1), atol=1e-5)


def test_max_positions_error_is_clear():
    model = build_model(tiny())
    with pytest.raises(ValueError, match="max_positions"):
        model.contextualize(torch.randn(1, 9, model.visual_dim), None)


FIXTURE = Path(__file__).parent / "fixtures" / "released_avbert_state_dict.json"


def released_like_state_dict(seed=0) -> dict:
    """Random tensors under the released AVBert's key names and shapes (KS config)."""
    keys = json.loads(FIXTURE.read_text())["keys"]
    g = torch.Generator().manual_seed(seed)
    src = {}
    for k, shape in keys.items():
        if k.startswith(("single_visual_transformer", "single_audio_transformer", "multi_transformer")):
            src[k] = src["transformer." + k.split(".", 1)[1]]  # the released module registers one object 4 times
        elif k.endswith(".base"):
            src[k] = torch.eye(shape[0])
        elif not shape:
            src[k] = torch.tensor(3)
        else:
            src[k] = torch.randn(*shape, generator=g)
    return src


def reference_factor_linear(x, down, a, up_w, up_b):
    """The released FactorLinear math, written independently: U(normalize(V x) @ expm(skew(A))) + b."""
    z = x @ down.T
    z = z / z.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    s = torch.triu(a, 1)
    return z @ torch.linalg.matrix_exp(s - s.T) @ up_w.T + up_b


def test_converter_round_trip_released_layout():
    src = released_like_state_dict()
    model = build_model(AVBertConfig())
    rep = load_released(model, {"state_dict": {"avbert." + k: v for k, v in src.items()}})
    assert rep.ok and not rep.missing_target
    assert set(rep.pretraining_only) == {"visual_input.mask_token", "audio_input.mask_token"}
    assert len(rep.duplicates) > 0
    sd = model.state_dict()
    assert torch.equal(sd["visual_cnn.stem.0.weight"], src["visual_conv.s1.pathway0_stem.conv.weight"])
    assert torch.equal(sd["audio_cnn.stages.0.0.conv_b.3.weight"], src["audio_conv.s2.res0.branch2.b2.weight"])
    assert torch.equal(sd["visual_input.bos"], src["summary_encoding.bos_embeddings.weight"][0])
    assert torch.equal(sd["audio_input.bos"], src["summary_encoding.bos_embeddings.weight"][1])
    # every released tensor landed somewhere: compare value multisets
    pre = "transformer.encoder.albert_layer_groups.0.albert_layers.0.attention.factor_query."
    q = model.transformer("audio").layers[0].q
    x = torch.randn(3, 768)
    ref = reference_factor_linear(x, src[pre + "ms1_linear.weight"], src[pre + "orthogonal_ms1_linear.A"],
                                  src[pre + "s_linear.weight"], src[pre + "s_linear.bias"])
    assert torch.allclose(q(x, 1), ref, atol=1e-4)
    # round trip: converted weights re-exported under the released names give back the source
    ours, rep2 = convert_state_dict(src, model)
    assert all(torch.equal(ours[k], sd[k]) for k in ours)


def test_converter_reports_unknown_keys_by_name():
    src = released_like_state_dict()
    src["other_head.projection.weight"] = torch.zeros(3, 3)
    src["visual_conv.s1.pathway0_stem.conv.weight"] = torch.zeros(1, 2, 3)
    model = build_model(AVBertConfig())
    _, rep = convert_state_dict(src, model)
    assert "other_head.projection.weight" in rep.unused_source
    assert any("pathway0_stem.conv.weight" in p for p in rep.problems)
    with pytest.raises(ValueError, match="other_head"):
        load_released(model, src)


def test_activation_checkpointing_matches():
    model = build_model(dataclasses.replace(tiny(), zero_init_final_bn=False))
    video, audio = inputs()
    model.train()
    torch.manual_seed(1)
    ref = model.encode_visual(video.flatten(0, 1))
    model.visual_cnn.set_grad_checkpointing(True)
    torch.manual_seed(1)
    assert torch.allclose(model.encode_visual(video.flatten(0, 1)), ref, atol=1e-5)
