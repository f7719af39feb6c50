"""Parameter accounting: the paper's "Parameter Reduction" table, reproduced exactly at paper scale.

    python -m model.params                      # paper scale, mid fusion, all schemes
    python -m model.params --fusion late --hidden 96 --heads 4 --ffn 384 --rank 16

Counts unique parameters (a tensor shared by several roles or layers counts once), on the meta
device, so paper scale costs no memory.
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import get_args

from torch import nn

from .build import build_model
from .config import AVBertConfig, Sharing, TransformerConfig

PAPER_ROUNDED = {"none": "128M", "cross_layer": "21M", "all": "7M", "part": "4M", "multi2": "7M (see note)"}
POSTER_ROW = {"none": "No Sharing", "cross_layer": "Multi-6, X.-L", "all": "Multi-6, X.-L + X.-T (All)",
              "part": "Multi-6, X.-L + X.-T (Part, ours)", "multi2": "Multi-2"}


def _unique(params) -> int:
    return sum(p.numel() for p in {id(p): p for p in params}.values())


def count_params(model: nn.Module) -> dict[str, int]:
    """Unique parameter counts per part of an AVBert."""
    transformer = _unique(model.transformer_parameters())
    visual, audio = _unique(model.visual_cnn.parameters()), _unique(model.audio_cnn.parameters())
    total = _unique(model.parameters())
    return {"transformer": transformer, "visual_cnn": visual, "audio_cnn": audio,
            "embeddings": total - transformer - visual - audio, "total": total}


def transformer_param_count(cfg: AVBertConfig) -> int:
    return count_params(build_model(cfg, device="meta"))["transformer"]


def sharing_table(base: AVBertConfig) -> list[dict]:
    rows, ref = [], None
    for sharing in ("none", "multi2", "cross_layer", "all", "part"):
        counts = count_params(build_model(dataclasses.replace(base, sharing=sharing), device="meta"))
        ref = ref or counts["transformer"]
        rows.append({"sharing": sharing, "poster row": POSTER_ROW[sharing], **counts,
                     "reduction": 1 - counts["transformer"] / ref, "paper": PAPER_ROUNDED[sharing]})
    return rows


def format_table(rows: list[dict]) -> str:
    head = "| sharing | poster row | transformer params | vs none | paper | visual CNN | audio CNN | embeddings+proj | total |"
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(f"| {r['sharing']} | {r['poster row']} | {r['transformer']:,} | {'-' if r['reduction'] else ''}{100 * r['reduction']:.1f} % | "
                     f"{r['paper']} | {r['visual_cnn']:,} | {r['audio_cnn']:,} | {r['embeddings']:,} | {r['total']:,} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    d = TransformerConfig()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fusion", default="mid", choices=("early", "mid", "late"))
    ap.add_argument("--visual-arch", default="resnet3d", choices=("resnet3d", "slowfast"))
    for k in ("hidden", "heads", "ffn", "layers", "rank"):
        ap.add_argument(f"--{k}", type=int, default=getattr(d, k))
    a = ap.parse_args(argv)
    base = AVBertConfig(fusion=a.fusion, transformer=TransformerConfig(
        hidden=a.hidden, heads=a.heads, ffn=a.ffn, layers=a.layers, rank=a.rank))
    base.visual_cnn.arch = a.visual_arch
    print(f"Transformer parameters by sharing scheme ({a.fusion} fusion, hidden {a.hidden}, FFN {a.ffn}, "
          f"{a.heads} heads, {a.layers} layers, rank {a.rank}); CNNs counted separately.\n")
    print(format_table(sharing_table(base)))
    print("\nNote: the poster prints 7M for Multi-2; three 2-layer transformers have 42.5M at this size "
          "(see results/paper/README.md).")


assert set(PAPER_ROUNDED) == set(get_args(Sharing))

if __name__ == "__main__":
    main()
