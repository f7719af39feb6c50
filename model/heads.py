"""Downstream heads for the paper's rows, split so that linear evaluation can cache the backbone output.

Rows (EvalConfig.model): v_cnn / a_cnn / m_cnn use per-segment pooled CNN features only; v_bert /
a_bert / m_bert also run the transformers (v_/a_bert: one modality, the other None) and add a
sequence head on the top stream. Heads, as in the released Kinetics-Sounds code:
* concat head (released ConcatHead): dropout + linear on the concatenated pooled CNN features;
* sequence head (released ConcatSeqHead): per segment t, sum over modalities of
  Linear_nobias(dropout([BOS_m; m_t])) -> LayerNorm (eps 1e-5) -> Linear.
Both give logits per segment [B,S,C]. Released training: one loss per head and segment (labels
repeated over segments), summed over heads (`downstream_loss`); released testing: softmax per head
and segment, combined over heads and segments (`head_scores`; we average, the code sums: same ranking).
A modality missing from the input drops its terms from both heads (its weight columns / projection).

Reference rows (ours): v_hand / a_hand / m_hand put the concat head on hand-crafted segment statistics
(model/handcrafted.py) instead of CNN features, so a table shows where learned features stand.

Linear evaluation: `features()` (backbone, run once under no_grad and cached) -> dict of tensors;
`head_logits(features)` is the only trainable part. Fine-tuning trains both (`param_groups`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import handcrafted

ROWS = ("v_cnn", "a_cnn", "m_cnn", "v_bert", "a_bert", "m_bert", "v_hand", "a_hand", "m_hand")
MODALITIES = ("visual", "audio")
ROW_MODALITIES = {"v": ("visual",), "a": ("audio",), "m": ("visual", "audio")}
LOSSES = ("cross_entropy", "multi_margin", "bce")


class ConcatHead(nn.Module):
    """Dropout + one linear on [x_visual; x_audio]; an absent modality drops its weight columns."""

    def __init__(self, dims: dict[str, int], num_classes: int, dropout: float):
        super().__init__()
        self.dims = dict(dims)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(sum(self.dims.values()), num_classes)

    def forward(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """feats[m]: [..., D_m] for the present modalities -> logits [..., C]."""
        out, start = None, 0
        for m, d in self.dims.items():
            if m in feats:
                term = F.linear(self.drop(feats[m]), self.fc.weight[:, start:start + d])
                out = term if out is None else out + term
            start += d
        if out is None:
            raise ValueError(f"ConcatHead got none of its modalities {list(self.dims)}")
        return out + self.fc.bias


class SequenceHead(nn.Module):
    """The released ConcatSeqHead: per segment, dropout on each modality's [BOS; token] pair, a
    bias-free projection per modality (released fc1 / fc2), their sum -> LayerNorm -> Linear."""

    def __init__(self, hidden: int, modalities: tuple[str, ...], num_classes: int, dropout: float,
                 ln_eps: float = 1e-5):
        super().__init__()
        self.proj = nn.ModuleDict({m: nn.Linear(2 * hidden, hidden, bias=False) for m in modalities})
        self.norm = nn.LayerNorm(hidden, eps=ln_eps)  # released MODEL.EPSILON
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, seqs: dict[str, torch.Tensor]) -> torch.Tensor:
        """seqs[m]: [B,S+1,H] top-stream outputs (BOS first) -> per-segment logits [B,S,C]."""
        h = None
        for m, proj in self.proj.items():
            if m in seqs:
                x = seqs[m]
                pair = torch.cat([x[:, :1].expand(-1, x.shape[1] - 1, -1), x[:, 1:]], dim=-1)  # [B,S,2H]
                term = proj(self.drop(pair))
                h = term if h is None else h + term
        if h is None:
            raise ValueError(f"SequenceHead got none of its modalities {list(self.proj)}")
        return self.fc(self.norm(h))


def row_modalities(row: str, given) -> tuple[str, ...]:
    """The modalities a row reads among those an evaluation gives, in MODALITIES order."""
    return tuple(m for m in MODALITIES if m in ROW_MODALITIES[row[0]] and m in given)


class DownstreamModel(nn.Module):
    """An AVBert backbone plus the head of one row. `modalities`: the inputs this evaluation gives
    (the head is built for the row's modalities among them)."""

    def __init__(self, backbone: nn.Module, row: str, num_classes: int,
                 modalities: tuple[str, ...] | list[str] = MODALITIES, dropout: float = 0.5, mel_bins: int = 80):
        super().__init__()
        if row not in ROWS:
            raise ValueError(f"unknown downstream model {row!r}; choose one of {', '.join(ROWS)}")
        self.modalities = row_modalities(row, modalities)
        if not self.modalities:
            raise ValueError(f"row {row} uses {list(ROW_MODALITIES[row[0]])} but the evaluation gives only "
                             f"{list(modalities)}")
        self.backbone, self.row = backbone, row
        self.use_transformer = row.endswith("bert")
        self.handcrafted = row.endswith("hand")
        dims = handcrafted.feature_dims(mel_bins) if self.handcrafted else \
            {"visual": backbone.visual_dim, "audio": backbone.audio_dim}
        self.concat_head = ConcatHead({m: dims[m] for m in self.modalities}, num_classes, dropout)
        self.seq_head = SequenceHead(backbone.hidden, self.modalities, num_classes, dropout) \
            if self.use_transformer else None

    def features(self, video: torch.Tensor | None = None, audio: torch.Tensor | None = None,
                 transformer: bool | None = None) -> dict[str, torch.Tensor]:
        """video [B,S,3,T,H,W] / audio [B,S,1,F,Tm] (None = absent) -> cacheable backbone outputs:
        cnn_<m> [B,S,D_m] per-segment pooled CNN features, and for *_bert rows seq_<m> [B,S+1,H].
        transformer: compute seq_<m> or not whatever the row (None: as the row does), so that one
        extraction can serve the CNN and the transformer row of the same inputs."""
        inputs = {"visual": video, "audio": audio}
        encode = {"visual": handcrafted.visual_features, "audio": handcrafted.audio_features} if self.handcrafted \
            else {"visual": self.backbone.encode_visual, "audio": self.backbone.encode_audio}
        emb = {}
        for m in self.modalities:
            x = inputs[m]
            if x is not None:
                emb[m] = encode[m](x.flatten(0, 1)).view(x.shape[0], x.shape[1], -1)
        if not emb:
            raise ValueError(f"{self.row} needs one of {list(self.modalities)} as input")
        feats = {f"cnn_{m}": e for m, e in emb.items()}
        if (self.use_transformer if transformer is None else transformer) and not self.handcrafted:
            out = self.backbone.contextualize(emb.get("visual"), emb.get("audio"))
            for m in emb:
                feats[f"seq_{m}"] = getattr(out, f"top_{m}")
        return feats

    def head_logits(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-head, per-segment logits {"concat": [B,S,C], "seq": [B,S,C] (bert rows)}."""
        logits = {"concat": self.concat_head({m: feats[f"cnn_{m}"] for m in self.modalities if f"cnn_{m}" in feats})}
        if self.seq_head is not None:
            logits["seq"] = self.seq_head({m: feats[f"seq_{m}"] for m in self.modalities if f"seq_{m}" in feats})
        return logits

    def logits(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """One [B,C] logit tensor: per-segment logits averaged over segments, summed over heads."""
        return sum(lg.mean(dim=1) for lg in self.head_logits(feats).values())

    def forward(self, video: torch.Tensor | None = None, audio: torch.Tensor | None = None) -> torch.Tensor:
        """-> [B,C] combined logits. Released training/testing: head_logits + downstream_loss / head_scores."""
        return self.logits(self.features(video, audio))

    def head_modules(self) -> list[nn.Module]:
        return [self.concat_head] + ([self.seq_head] if self.seq_head is not None else [])

    def head_parameters(self) -> list[nn.Parameter]:
        """The new (trainable in linear evaluation) parameters."""
        return [p for h in self.head_modules() for p in h.parameters()]

    def backbone_parameters(self) -> list[nn.Parameter]:
        """The backbone parameters this row uses: the CNNs of its modalities, and for bert rows
        everything else in the backbone too (projections, embeddings, transformers)."""
        if self.handcrafted:
            return []
        if not self.use_transformer:
            cnns = {"visual": self.backbone.visual_cnn, "audio": self.backbone.audio_cnn}
            return [p for m in self.modalities for p in cnns[m].parameters()]
        unused = tuple(f"{m}_cnn." for m in MODALITIES if m not in self.modalities)
        return [p for n, p in self.backbone.named_parameters() if not n.startswith(unused)]


def classification_loss(logits: torch.Tensor, target: torch.Tensor, kind: str, margin: float = 0.1) -> torch.Tensor:
    """logits [N,C]; target [N] class ids (cross_entropy, multi_margin as released ESC-50) or
    [N,C] 0/1 (bce, multi-label). Computed in float32 (safe under autocast)."""
    logits = logits.float()
    if kind == "cross_entropy":
        return F.cross_entropy(logits, target)
    if kind == "multi_margin":
        return F.multi_margin_loss(logits, target, margin=margin)
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, target.float())
    raise ValueError(f"unknown loss {kind!r}; choose one of {', '.join(LOSSES)}")


def _as_list(head_logits) -> list[torch.Tensor]:
    if isinstance(head_logits, torch.Tensor):
        return [head_logits]
    return list(head_logits.values()) if isinstance(head_logits, dict) else list(head_logits)


def downstream_loss(head_logits: dict[str, torch.Tensor] | list[torch.Tensor] | torch.Tensor,
                    target: torch.Tensor, kind: str, margin: float = 0.1) -> torch.Tensor:
    """Released: one loss per head over every segment (the clip label repeated over segments), summed
    over heads. head_logits: {name: [B,S,C]} (or a list, or one [B,C] / [B,S,C] tensor); target [B] or [B,C]."""
    total = 0
    for lg in _as_list(head_logits):
        if lg.dim() == 3:
            s = lg.shape[1]
            tgt = target.repeat_interleave(s, dim=0)
            lg = lg.flatten(0, 1)
        else:
            tgt = target
        total = total + classification_loss(lg, tgt, kind, margin)
    return total


def head_scores(head_logits: dict[str, torch.Tensor] | list[torch.Tensor] | torch.Tensor, multilabel: bool) -> torch.Tensor:
    """[B,C] probabilities: softmax (or sigmoid) per head and segment, averaged over both."""
    probs = [torch.sigmoid(lg.float()) if multilabel else torch.softmax(lg.float(), dim=-1) for lg in _as_list(head_logits)]
    probs = [p.mean(dim=1) if p.dim() == 3 else p for p in probs]
    return torch.stack(probs).mean(dim=0)


head_loss = downstream_loss  # older name, kept for callers


def _decay_split(params: list[nn.Parameter], weight_decay: float, lr: float) -> list[dict]:
    """No weight decay on biases and norm parameters (every 1-d tensor), as in BERT and the released BN rule."""
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "lr": lr, "weight_decay": weight_decay},
              {"params": no_decay, "lr": lr, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def param_groups(model: DownstreamModel, backbone_lr: float | None, head_lr: float,
                 weight_decay: float) -> list[dict]:
    """Released fine-tuning: pretrained backbone at FINETUNE_LR, new heads at BASE_LR; frozen
    parameters are left out, and backbone_lr None/0 leaves the whole backbone out (linear eval)."""
    def unique(params: list[nn.Parameter], skip: set[int]) -> list[nn.Parameter]:
        seen, out = set(skip), []
        for p in params:
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                out.append(p)
        return out

    head = unique([p for mod in model.head_modules() for p in mod.parameters()], set())
    groups = []
    if backbone_lr:
        groups += _decay_split(unique(model.backbone_parameters(), {id(p) for p in head}), weight_decay, backbone_lr)
    return groups + _decay_split(head, weight_decay, head_lr)
