"""Load the authors' released AVBERT weights: released state-dict key names -> our module names.

    python -m model.convert_released epoch_best.pyth ours.pt [--fusion mid --sharing part --heads N --layers 6]

The released checkpoint (sangho-vision/avbert, PySlowFast naming) stores the state dict under
`state_dict` (pretrained) or `model_state_dict` (downstream), keys optionally prefixed `avbert.`.
Rules (see released_code.md §1-2): `visual_conv.sN.pathway0_resJ.branch2.{a,b,c}[_bn]` ->
`visual_cnn.stages.{N-2}.J.{conv,bn}_{a,b,c}`, `audio_conv...b1/b2` (separable) -> `conv_b.{0,1,3}` +
`bn_b`, `visual_fc/visual_norm` -> `visual_input.proj/norm`, the 2-row BOS table -> the two
`*_input.bos`, `factor_*.{ms{g}_linear, orthogonal_ms{g}_linear.A, s_linear}` ->
`{q,k,v,o,ffn_in,ffn_out}.{down.g, rot.g, up}`, the KS heads `concat_head.projection` ->
`concat_head.fc`, `concat_seq_head.{fc1,fc2,ln,projection}` -> `seq_head.{proj.visual,proj.audio,norm,fc}`.
Sizes (CNN widths and depths, hidden, FFN, rank, positions, classes) are read from the tensors
(model/infer_config.py); attention heads and the depth of a shared layer are flags. With sharing
across models the released state dict repeats the one transformer under four prefixes; the copies
are checked to be identical. Keys we cannot place are reported by name (never dropped silently), as
are our keys the source lacks (except the MEP mask vectors, reported as pretraining-only: downstream
checkpoints do not hold them).
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from common.fsutil import atomic_torch_save
from model.build import build_model
from model.infer_config import config_overrides, infer_config

_LAYER_MAPS = {  # released sub-module -> ours (ALBERT-with-factors, plain ALBERT, BERT)
    "attention.factor_query": "q", "attention.factor_key": "k", "attention.factor_value": "v",
    "attention.factor_dense": "o", "factor_ffn": "ffn_in", "factor_ffn_output": "ffn_out",
    "attention.query": "q", "attention.key": "k", "attention.value": "v", "attention.dense": "o",
    "ffn": "ffn_in", "ffn_output": "ffn_out", "attention.LayerNorm": "ln_attn", "full_layer_layer_norm": "ln_ffn",
    "attention.self.query": "q", "attention.self.key": "k", "attention.self.value": "v",
    "attention.output.dense": "o", "attention.output.LayerNorm": "ln_attn", "intermediate.dense": "ffn_in",
    "output.dense": "ffn_out", "output.LayerNorm": "ln_ffn",
}
_ROLE_PREFIX = {"single_visual_transformer": "visual", "single_audio_transformer": "audio", "multi_transformer": "multi"}


# released Kinetics-Sounds heads (MultimodalSequenceClassify / ClassifyHead) -> our DownstreamModel (m_bert row)
HEAD_KEYS = {
    "concat_head.projection.weight": "concat_head.fc.weight",
    "concat_head.projection.bias": "concat_head.fc.bias",
    "concat_seq_head.fc1.weight": "seq_head.proj.visual.weight",
    "concat_seq_head.fc2.weight": "seq_head.proj.audio.weight",
    "concat_seq_head.ln.weight": "seq_head.norm.weight",
    "concat_seq_head.ln.bias": "seq_head.norm.bias",
    "concat_seq_head.projection.weight": "seq_head.fc.weight",
    "concat_seq_head.projection.bias": "seq_head.fc.bias",
}
# ours, used by MEP only: a downstream checkpoint has no reason to hold them (left at their init)
PRETRAIN_ONLY = ("visual_input.mask_token", "audio_input.mask_token")


@dataclass
class ConversionReport:
    unused_source: list[str] = field(default_factory=list)  # released keys with no place in our model
    missing_target: list[str] = field(default_factory=list)  # our keys the source did not provide
    duplicates: list[str] = field(default_factory=list)  # repeated copies of the shared transformer (checked equal)
    problems: list[str] = field(default_factory=list)  # values we cannot express, or of the wrong shape
    heads: list[str] = field(default_factory=list)  # released head keys mapped onto our heads ("src -> ours")
    pretraining_only: list[str] = field(default_factory=list)  # our MEP-only keys the source lacks (kept at init)

    @property
    def ok(self) -> bool:
        return not self.unused_source and not self.problems and not self.missing_target

    def __str__(self) -> str:
        parts = []
        for name in ("problems", "unused_source", "missing_target", "heads", "pretraining_only", "duplicates"):
            items = getattr(self, name)
            if items and name == "duplicates":
                parts.append(f"shared copies (checked equal to the 'transformer.' one): {len(items)} keys")
            elif items:
                shown = ", ".join(items[:20]) + (f", ... ({len(items)} in all)" if len(items) > 20 else "")
                label = {"heads": "heads mapped", "pretraining_only": "pretraining-only, not in the source "
                         "(left at init)"}.get(name, name)
                parts.append(f"{label}: {shown}")
        return "\n".join(parts) or "all keys converted"


def unwrap_checkpoint(obj) -> dict[str, torch.Tensor]:
    """Released files hold {'state_dict': ...} (pretraining) or the fine-tuning saver's
    {'model_state_dict', 'head_state_dict' (linear evaluation's separate head, else None), ...};
    returns one flat dict with `avbert.`/`module.` stripped."""
    heads = None
    if isinstance(obj, dict):
        if isinstance(obj.get("head_state_dict"), dict):
            heads = obj["head_state_dict"]
        for k in ("state_dict", "model_state_dict", "model"):
            if k in obj and isinstance(obj[k], dict):
                obj = obj[k]
                break
    if heads:
        obj = {**obj, **heads}
    out = {}
    for k, v in obj.items():
        for pre in ("module.", "avbert."):
            if k.startswith(pre):
                k = k[len(pre):]
        out[k] = v
    return out


def _cnn_key(k: str) -> str | None:
    m = re.fullmatch(r"visual_conv\.s1\.pathway0_stem\.(conv|bn)\.(.+)", k)
    if m:
        return f"visual_cnn.stem.{0 if m[1] == 'conv' else 1}.{m[2]}"
    m = re.fullmatch(r"visual_conv\.s(\d)\.pathway0_res(\d+)\.(branch1|branch1_bn|branch2\.(a|b|c)(_bn)?)\.(.+)", k)
    if m:
        stage, block, part, abc, bn, rest = int(m[1]) - 2, m[2], m[3], m[4], m[5], m[6]
        base = f"visual_cnn.stages.{stage}.{block}."
        if part.startswith("branch1"):
            return base + f"shortcut.{1 if part.endswith('_bn') else 0}.{rest}"
        return base + f"{'bn' if bn else 'conv'}_{abc}.{rest}"
    m = re.fullmatch(r"audio_conv\.s1\.stem\.(conv1|bn1|conv2|bn2)\.(.+)", k)
    if m:
        return f"audio_cnn.stem.{ {'conv1': 0, 'bn1': 1, 'conv2': 3, 'bn2': 4}[m[1]] }.{m[2]}"
    m = re.fullmatch(r"audio_conv\.s(\d)\.res(\d+)\.(branch1|branch1_bn|branch2\.(a|b|b1|b2|c)(_bn)?)\.(.+)", k)
    if m:
        stage, block, part, sub, bn, rest = int(m[1]) - 2, m[2], m[3], m[4], m[5], m[6]
        base = f"audio_cnn.stages.{stage}.{block}."
        if part.startswith("branch1"):
            return base + f"shortcut.{1 if part.endswith('_bn') else 0}.{rest}"
        if sub == "b1":
            return base + f"conv_b.{1 if bn else 0}.{rest}"
        if sub == "b2":
            return base + (f"bn_b.{rest}" if bn else f"conv_b.3.{rest}")
        return base + f"{'bn' if bn else 'conv'}_{sub}.{rest}"
    return None


def _embedding_key(k: str) -> str | None:
    m = re.fullmatch(r"(visual|audio)_(fc|norm)\.(weight|bias)", k)
    if m:
        return f"{m[1]}_input.{'proj' if m[2] == 'fc' else 'norm'}.{m[3]}"
    m = re.fullmatch(r"(single_visual|single_audio|multi)_embeddings\.(position_embeddings|token_type_embeddings|LayerNorm)\.(weight|bias)", k)
    if m:
        role = {"single_visual": "visual", "single_audio": "audio", "multi": "multi"}[m[1]]
        sub = {"position_embeddings": "position", "token_type_embeddings": "token_type", "LayerNorm": "norm"}[m[2]]
        return f"stream_embed.{role}.{sub}.{m[3]}"
    return None


def _layer_key(rest: str) -> tuple[str, str] | None:
    """'attention.factor_query.ms0_linear.weight' -> ('q', 'down.0') etc."""
    for src in sorted(_LAYER_MAPS, key=len, reverse=True):
        if rest.startswith(src + "."):
            tail = rest[len(src) + 1:]
            ours = _LAYER_MAPS[src]
            m = re.fullmatch(r"ms(\d+)_linear\.weight", tail)
            if m:
                return ours, f"down.{m[1]}"
            m = re.fullmatch(r"orthogonal_ms(\d+)_linear\.(A|base|_B)", tail)
            if m:
                return ours, f"rot.{m[1]}" if m[2] == "A" else f"{m[2]}.{m[1]}"
            m = re.fullmatch(r"s_linear\.(weight|bias)", tail)
            if m:
                return ours, f"up.{m[1]}"
            if tail in ("weight", "bias"):
                return ours, tail
    return None


def convert_state_dict(src: dict[str, torch.Tensor], model: torch.nn.Module) -> tuple[dict, ConversionReport]:
    """Map a released state dict onto `model` (an AVBert); returns (our state dict, report)."""
    src = unwrap_checkpoint(src)
    target = model.state_dict()
    rep = ConversionReport()
    out: dict[str, torch.Tensor] = {}
    role_stack = model._role_stack
    for k, v in src.items():
        if k in HEAD_KEYS:
            continue  # heads: convert_heads
        ours = _cnn_key(k) or _embedding_key(k)
        if k == "summary_encoding.bos_embeddings.weight":
            want = (2, *target["visual_input.bos"].shape)
            if tuple(v.shape) != want:
                rep.problems.append(f"{k} -> visual_input.bos / audio_input.bos: shape {tuple(v.shape)} != ours {want}")
            else:
                out["visual_input.bos"], out["audio_input.bos"] = v[0], v[1]
            continue
        m = re.fullmatch(r"(transformer|single_visual_transformer|single_audio_transformer|multi_transformer)\."
                         r"encoder\.(?:albert_layer_groups\.0\.albert_layers\.(\d+)|layer\.(\d+))\.(.+)", k)
        if m:
            owner, layer, rest = m[1], m[2] or m[3], m[4]
            mapped = _layer_key(rest)
            if mapped is None:
                rep.unused_source.append(k)
                continue
            stack = 0 if owner == "transformer" else role_stack.get(_ROLE_PREFIX[owner])
            if stack is None:
                rep.unused_source.append(k)
                continue
            sub, leaf = mapped
            if leaf.startswith("_B."):
                continue  # expRNN's cached product, recomputed from A
            if leaf.startswith("base."):
                if not torch.allclose(v.float(), torch.eye(v.shape[0]), atol=1e-5):
                    rep.problems.append(f"{k}: non-identity expRNN base (ORTHOGONAL_MODE=dtriv) cannot be expressed "
                                        "as exp(skew(A)) without a matrix logarithm")
                continue
            ours = f"stacks.{stack}.layers.{layer}.{sub}.{leaf}"
            if owner != "transformer" and "transformer." + k.split(".", 1)[1] in src:
                if not torch.equal(v, src["transformer." + k.split(".", 1)[1]]):
                    rep.problems.append(f"{k} differs from its shared copy under 'transformer.'")
                rep.duplicates.append(k)
                continue
        if ours is None or ours not in target:
            rep.unused_source.append(k)
            continue
        if tuple(target[ours].shape) != tuple(v.shape):
            rep.problems.append(f"{k} -> {ours}: shape {tuple(v.shape)} != ours {tuple(target[ours].shape)}")
            continue
        out[ours] = v
    missing = sorted(set(target) - set(out))
    rep.pretraining_only = [k for k in missing if k in PRETRAIN_ONLY]
    rep.missing_target = [k for k in missing if k not in PRETRAIN_ONLY]
    rep.heads = [f"{k} -> {HEAD_KEYS[k]}" for k in src if k in HEAD_KEYS]
    return out, rep


def convert_heads(src: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The released KS heads under our DownstreamModel names (empty for a pretraining checkpoint)."""
    src = unwrap_checkpoint(src)
    return {HEAD_KEYS[k]: v for k, v in src.items() if k in HEAD_KEYS}


def load_released(model: torch.nn.Module, src: dict[str, torch.Tensor], strict: bool = True) -> ConversionReport:
    """Convert and load into `model`; with strict=True any unusable key, wrong shape or missing weight
    (other than the pretraining-only mask vectors) raises with the report. Nothing is loaded then."""
    sd, rep = convert_state_dict(src, model)
    if strict and not rep.ok:
        raise ValueError(f"released checkpoint does not match this model:\n{rep}")
    model.load_state_dict(sd, strict=False)
    return rep


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m model.convert_released", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="released checkpoint (.pyth)")
    ap.add_argument("dst", help="output: {'model', 'heads', 'model_config', ...}, loadable with weights_only=True")
    ap.add_argument("--fusion", default="mid", choices=("early", "mid", "late"))
    ap.add_argument("--sharing", default="part", choices=("none", "cross_layer", "all", "part", "multi2"))
    ap.add_argument("--heads", type=int, default=None,
                    help="attention heads (not in the tensors; default: hidden / 64, the released head size, "
                         "i.e. 12 at paper scale)")
    ap.add_argument("--layers", type=int, default=6,
                    help="layers a shared layer is applied (not in the tensors under cross-layer sharing; released 6)")
    a = ap.parse_args(argv)
    if not Path(a.src).is_file():
        ap.error(f"{a.src} does not exist")
    obj = torch.load(a.src, map_location="cpu", weights_only=True)
    src = unwrap_checkpoint(obj)
    try:
        cfg, sizes = infer_config(src, a.fusion, a.sharing, a.heads, a.layers)
    except ValueError as e:
        print(f"cannot read the model sizes from {a.src}: {e}", file=sys.stderr)
        return 1
    guessed = sizes.pop("heads_guessed", False)
    print("sizes read from the checkpoint: " + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    if guessed:
        print(f"warning: attention heads are not in the tensors and 64 does not divide hidden {sizes['hidden']}: "
              f"using {sizes['heads']}; pass --heads N if the checkpoint was trained with another count "
              "(it changes the outputs, not the weights)", file=sys.stderr)
    model = build_model(cfg)
    rep = load_released(model, src, strict=False)
    print(rep)
    if not rep.ok:
        print("conversion incomplete: see the report above; nothing written", file=sys.stderr)
        return 1
    heads = convert_heads(src)
    atomic_torch_save({"model": model.state_dict(), "heads": heads or None, "num_classes": sizes.get("num_classes"),
                       "model_config": asdict(cfg), "source": str(a.src), "report": str(rep)}, a.dst)
    over = config_overrides(cfg)
    print("run-config overrides for this model: " + (" ".join(over) if over else "none (the paper-scale defaults)"))
    print(f"wrote {a.dst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
