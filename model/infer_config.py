"""Read an AVBertConfig off a released (PySlowFast-named) state dict: every size its tensors fix.

Why: a released checkpoint of another size than the paper's (a small model, a fixture, a variant)
must convert without guessing, and a mismatch must be reported by key, not crash in load_state_dict.
What the tensors cannot say comes from the caller: fusion, sharing, attention heads, and how often a
cross-layer-shared layer is applied (`layers`; released: 6). Stem strides, LayerNorm eps and the pooling
are the released ones (our defaults).
"""
from __future__ import annotations

import re
from dataclasses import fields, is_dataclass

import torch

from .config import AudioCNNConfig, AVBertConfig, TransformerConfig, VisualCNNConfig


def _tensor(src: dict[str, torch.Tensor], key: str, what: str) -> torch.Tensor:
    if key not in src:
        raise ValueError(f"{what}: key {key!r} is missing")
    return src[key]


def _blocks(src: dict, pattern: str) -> tuple[int, ...]:
    """Bottleneck blocks per stage s2..s5, counted from the block indices present."""
    out = []
    for s in range(2, 6):
        idx = {int(m[1]) for k in src if (m := re.match(pattern.format(s=s), k))}
        if not idx:
            break
        out.append(max(idx) + 1)
    return tuple(out)


def _first(src: dict, suffix_re: str) -> torch.Tensor | None:
    for k, v in src.items():
        if re.search(suffix_re, k):
            return v
    return None


def default_heads(hidden: int) -> tuple[int, bool]:
    """(attention heads, whether that is the released rule): the released head size 64 (768 -> 12 heads)
    where it divides `hidden`, else the largest count <= 12 that divides it (a guess: pass --heads)."""
    if hidden % 64 == 0:
        return hidden // 64, True
    return max(h for h in range(1, 13) if hidden % h == 0), False


def infer_config(src: dict[str, torch.Tensor], fusion: str = "mid", sharing: str = "part", heads: int | None = None,
                 layers: int = 6) -> tuple[AVBertConfig, dict]:
    """src: an unwrapped released state dict (convert_released.unwrap_checkpoint). Returns the config
    and the sizes read (for the report). Raises ValueError naming the key a size needs. heads None:
    `default_heads` (sizes["heads_guessed"] says when that is not the released rule)."""
    stem = _tensor(src, "visual_conv.s1.pathway0_stem.conv.weight", "visual CNN width")
    v_blocks = _blocks(src, r"visual_conv\.s{s}\.pathway0_res(\d+)\.")
    if len(v_blocks) != 4:
        raise ValueError(f"visual CNN: expected stages s2..s5 under visual_conv.sN.pathway0_resJ, found {len(v_blocks)}")
    kt = tuple(int(_tensor(src, f"visual_conv.s{s}.pathway0_res0.branch2.a.weight", "visual temporal kernels").shape[2])
               for s in range(2, 6))
    a_stem = _tensor(src, "audio_conv.s1.stem.conv1.weight", "audio CNN width")
    a_blocks = _blocks(src, r"audio_conv\.s{s}\.res(\d+)\.")
    if len(a_blocks) != 4:
        raise ValueError(f"audio CNN: expected stages s2..s5 under audio_conv.sN.resJ, found {len(a_blocks)}")
    separable = sum(f"audio_conv.s{s}.res0.branch2.b1.weight" in src for s in range(2, 6))
    hidden = int(_tensor(src, "visual_fc.weight", "transformer hidden size").shape[0])
    positions = int(_tensor(src, "single_visual_embeddings.position_embeddings.weight"
                            if "single_visual_embeddings.position_embeddings.weight" in src
                            else "multi_embeddings.position_embeddings.weight", "position table").shape[0])
    ffn_w = _first(src, r"(factor_ffn\.s_linear|\.ffn|intermediate\.dense)\.weight$")
    if ffn_w is None:
        raise ValueError("FFN size: no factor_ffn.s_linear / ffn / intermediate.dense weight")
    rank_w = _first(src, r"\.ms0_linear\.weight$")
    if sharing == "part" and rank_w is None:
        raise ValueError("sharing 'part' needs the low-rank factors (attention.factor_query.ms0_linear.weight)")
    guessed = False
    if heads is None:
        heads, released_rule = default_heads(hidden)
        guessed = not released_rule
    elif heads < 1 or hidden % heads:
        raise ValueError(f"--heads {heads} does not divide the hidden size {hidden} read from visual_fc.weight")
    depth = {int(m[1]) for k in src if (m := re.search(r"encoder\.layer\.(\d+)\.", k))}
    n_layers = max(depth) + 1 if depth else layers  # BERT layers are counted; a shared layer's depth is a flag
    cfg = AVBertConfig(
        fusion=fusion, sharing=sharing,
        visual_cnn=VisualCNNConfig(stage_blocks=v_blocks, width=int(stem.shape[0]), stem_kernel=tuple(stem.shape[2:]),
                                   temporal_kernels=kt),
        audio_cnn=AudioCNNConfig(stage_blocks=a_blocks, width=int(a_stem.shape[0]), stem_kernel=int(a_stem.shape[2]),
                                 separable_stages=separable),
        transformer=TransformerConfig(hidden=hidden, heads=heads, ffn=int(ffn_w.shape[0]), layers=n_layers,
                                      max_positions=positions,
                                      rank=int(rank_w.shape[0]) if rank_w is not None else TransformerConfig.rank))
    sizes = {"visual_width": cfg.visual_cnn.width, "visual_blocks": list(v_blocks), "audio_width": cfg.audio_cnn.width,
             "audio_blocks": list(a_blocks), "hidden": hidden, "ffn": cfg.transformer.ffn, "rank": cfg.transformer.rank,
             "max_positions": positions, "segments": positions // 2 - 1, "heads": heads}
    if guessed:
        sizes["heads_guessed"] = True
    if "concat_head.projection.weight" in src:
        sizes["num_classes"] = int(src["concat_head.projection.weight"].shape[0])
    return cfg, sizes


def config_from_dict(d: dict) -> AVBertConfig:
    """Inverse of dataclasses.asdict for AVBertConfig (the converted file stores the config so)."""
    sub = {"visual_cnn": VisualCNNConfig, "audio_cnn": AudioCNNConfig, "transformer": TransformerConfig}
    def build(cls, values: dict):
        tuples = {f.name for f in fields(cls) if "tuple" in str(f.type)}
        return cls(**{n: tuple(v) if n in tuples else v for n, v in values.items()})

    parts = {k: build(cls, d[k]) for k, cls in sub.items()}
    return AVBertConfig(**{**{k: v for k, v in d.items() if k not in sub}, **parts})


def config_overrides(cfg: AVBertConfig) -> list[str]:
    """`model.a.b=value` for every field that differs from the paper-scale defaults (what a run config needs)."""
    def walk(obj, ref, prefix):
        for f in fields(obj):
            v, r = getattr(obj, f.name), getattr(ref, f.name)
            if is_dataclass(v):
                yield from walk(v, r, f"{prefix}{f.name}.")
            elif v != r:
                yield f"{prefix}{f.name}={list(v) if isinstance(v, tuple) else v}".replace(" ", "")
    return list(walk(cfg, AVBertConfig(), "model."))
