"""Downstream heads for the paper's rows, split so linear evaluation can cache the backbone's output.

Rows: v_cnn / a_cnn / m_cnn use pooled CNN features only (released ConcatHead: dropout + linear on
the concatenated, segment-averaged pooled features); v_bert / a_bert / m_bert add the released
sequence head on the top transformer outputs: per segment t, Linear([BOS_v; v_t]) + Linear([BOS_a; a_t])
-> LayerNorm -> dropout -> Linear, averaged over segments. As released, the two heads are trained
with one loss each (summed) and their probabilities are summed at test time.

`DownstreamModel.features()` returns everything the trainable head needs (pooled CNN features and
top-stream tokens); `DownstreamModel.head_logits(features)` is the head. Linear evaluation runs
`features()` once under no_grad and trains only the head; fine-tuning trains both.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ROWS = ("v_cnn", "a_cnn", "m_cnn", "v_bert", "a_bert", "m_bert")
_ROW_MODALITIES = {"v": ("visual",), "a": ("audio",), "m": ("visual", "audio")}


class ConcatHead(nn.Module):
    def __init__(self, in_dim: int, num_classes: int, dropout: float):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(in_dim, num_classes)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(pooled))


class SequenceHead(nn.Module):
    """Released ConcatSeqHead: per-segment [BOS; token] projections summed over modalities."""

    def __init__(self, hidden: int, modalities: tuple[str, ...], num_classes: int, dropout: float):
        super().__init__()
        self.proj = nn.ModuleDict({m: nn.Linear(2 * hidden, hidden) for m in modalities})
        self.norm = nn.LayerNorm(hidden)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, seqs: dict[str, torch.Tensor]) -> torch.Tensor:
        """seqs[m]: [B, S+1, H] top-stream tokens (BOS first) -> logits [B, C] averaged over segments."""
        h = 0
        for m, x in seqs.items():
            pair = torch.cat([x[:, :1].expand(-1, x.shape[1] - 1, -1), x[:, 1:]], dim=-1)  # [B,S,2H]
            h = h + self.proj[m](pair)
        return self.fc(self.drop(self.norm(h))).mean(dim=1)


class DownstreamModel(nn.Module):
    def __init__(self, backbone: nn.Module, row: str, num_classes: int, modalities: tuple[str, ...] | list[str],
                 dropout: float = 0.5):
        super().__init__()
        if row not in ROWS:
            raise ValueError(f"unknown downstream model {row!r}; choose one of {', '.join(ROWS)}")
        wanted = set(_ROW_MODALITIES[row[0]])
        self.modalities = tuple(m for m in ("visual", "audio") if m in wanted and m in modalities)
        if not self.modalities:
            raise ValueError(f"row {row} uses {sorted(wanted)} but the evaluation gives only {list(modalities)}")
        self.backbone, self.row = backbone, row
        self.use_transformer = row.endswith("bert")
        dims = {"visual": backbone.visual_dim, "audio": backbone.audio_dim}
        self.concat_head = ConcatHead(sum(dims[m] for m in self.modalities), num_classes, dropout)
        self.seq_head = SequenceHead(backbone.hidden, self.modalities, num_classes, dropout) if self.use_transformer else None

    def features(self, video: torch.Tensor | None, audio: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """video [B,S,3,T,H,W] / audio [B,S,1,F,Tm] (absent modalities ignored) -> cacheable features."""
        emb = {}
        if "visual" in self.modalities:
            b, s = video.shape[:2]
            emb["visual"] = self.backbone.encode_visual(video.flatten(0, 1)).view(b, s, -1)
        if "audio" in self.modalities:
            b, s = audio.shape[:2]
            emb["audio"] = self.backbone.encode_audio(audio.flatten(0, 1)).view(b, s, -1)
        feats = {f"pooled_{m}": e.mean(dim=1) for m, e in emb.items()}
        if self.use_transformer:
            out = self.backbone.contextualize(emb.get("visual"), emb.get("audio"))
            for m in self.modalities:
                feats[f"seq_{m}"] = getattr(out, f"top_{m}")
        return feats

    def head_logits(self, feats: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """One logits tensor [B, C] per head (losses are summed, probabilities summed at test)."""
        logits = [self.concat_head(torch.cat([feats[f"pooled_{m}"] for m in self.modalities], dim=-1))]
        if self.seq_head is not None:
            logits.append(self.seq_head({m: feats[f"seq_{m}"] for m in self.modalities}))
        return logits

    def forward(self, video=None, audio=None) -> list[torch.Tensor]:
        return self.head_logits(self.features(video, audio))

    def head_parameters(self) -> list[nn.Parameter]:
        heads = [self.concat_head] + ([self.seq_head] if self.seq_head is not None else [])
        return [p for h in heads for p in h.parameters()]


def head_loss(logits: list[torch.Tensor], target: torch.Tensor, kind: str, margin: float = 0.1) -> torch.Tensor:
    """Sum over heads of cross_entropy / multi_margin (released ESC-50) / bce (multi-label)."""
    total = 0
    for lg in logits:
        lg = lg.float()
        if kind == "cross_entropy":
            total = total + F.cross_entropy(lg, target)
        elif kind == "multi_margin":
            total = total + F.multi_margin_loss(lg, target, margin=margin)
        elif kind == "bce":
            total = total + F.binary_cross_entropy_with_logits(lg, target.float())
        else:
            raise ValueError(f"unknown loss {kind!r}")
    return total


def head_scores(logits: list[torch.Tensor], multilabel: bool) -> torch.Tensor:
    """Probabilities summed over heads (released test-time ensembling)."""
    return sum(torch.sigmoid(lg.float()) if multilabel else torch.softmax(lg.float(), dim=-1) for lg in logits)


def param_groups(model: DownstreamModel, backbone_lr: float, head_lr: float, weight_decay: float) -> list[dict]:
    """Released fine-tuning: backbone at FINETUNE_LR, new heads at BASE_LR; no decay on 1-d params."""
    from experiments.optim import decay_groups  # noqa: PLC0415 - shared no-decay rule

    head_ids = {id(p) for p in model.head_parameters()}
    back = [(n, p) for n, p in model.backbone.named_parameters() if id(p) not in head_ids]
    head = [(n, p) for n, p in model.named_parameters() if id(p) in head_ids]
    return decay_groups(back, weight_decay, backbone_lr) + decay_groups(head, weight_decay, head_lr)
