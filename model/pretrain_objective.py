"""The pretraining objective: MEP on every configured stream + CPP, for any fusion.

Steps for a batch of clips (video [B,S,3,T,H,W], audio [B,S,1,F,Tm]):
1. CNN embeddings ev [B,S,Dv], ea [B,S,Da] (all segments in one CNN batch).
2. CPP: a fraction of the clips get another clip's audio (permute ea before the transformers).
3. MEP masks per modality (never the BOS), then the transformers with masked inputs.
4. MEP per stream: the output at each masked position vs its true CNN embedding and negatives
   drawn from the batch by the configured sampler (detached embeddings of the same modality).
   Streams a fusion lacks are skipped (early: no unimodal streams; late: no multimodal stream).
5. CPP on the BOS outputs: the multimodal stream's two BOS outputs when the fusion has one (ours),
   else the unimodal BOS outputs.
Loss = mep.weight * mean_streams(MEP) + cpp.weight * CPP.
"""
from __future__ import annotations

import torch
from torch import nn

from .cpp import CPPHead, shuffle_pairs
from .mep import MEPHead, mask_positions
from .negatives import flat_positions, sample_negatives

HEADS = ("visual", "audio", "multi_visual", "multi_audio")  # (stream output, target modality) pairs


class AVPretrainObjective(nn.Module):
    """Holds the MEP and CPP heads; `forward(model, video, audio)` returns losses and accuracies."""

    def __init__(self, model: nn.Module, mep, cpp, negatives):
        super().__init__()
        self.mep_cfg, self.cpp_cfg, self.neg_cfg = mep, cpp, negatives
        fusion_streams = {"early": ("multi",), "mid": ("visual", "audio", "multi"), "late": ("visual", "audio")}[model.fusion]
        self.streams = [s for s in mep.streams if s in fusion_streams]
        if mep.weight > 0 and not self.streams:
            raise ValueError(f"pretrain.mep.streams {mep.streams} has no stream that {model.fusion} fusion produces")
        dims = {"visual": model.visual_dim, "audio": model.audio_dim}
        names = [h for h in HEADS if h.removeprefix("multi_") in dims and (h if h in ("visual", "audio") else "multi") in self.streams]
        self.mep_heads = nn.ModuleDict({h: MEPHead(model.hidden, dims[h.removeprefix("multi_")], mep.normalize) for h in names})
        self.cpp_head = CPPHead(model.hidden) if cpp.weight > 0 else None

    def forward(self, model: nn.Module, video: torch.Tensor, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        b, s = video.shape[:2]
        dev = video.device
        ev = model.encode_visual(video.flatten(0, 1)).view(b, s, -1)
        ea = model.encode_audio(audio.flatten(0, 1)).view(b, s, -1)
        perm, is_pair = shuffle_pairs(b, self.cpp_cfg.fraction if self.cpp_head is not None else 0.0, dev)
        ea = ea[perm]
        vmask, vpos = mask_positions(b, s, self.mep_cfg.mask_ratio, dev)
        amask, apos = mask_positions(b, s, self.mep_cfg.mask_ratio, dev)
        out = model.contextualize(ev, ea, vmask, amask)

        stats: dict[str, torch.Tensor] = {}
        mep_losses = []
        for name, head in self.mep_heads.items():
            modality = name.removeprefix("multi_")
            emb, pos = (ev, vpos) if modality == "visual" else (ea, apos)
            if pos.shape[0] == 0:
                continue
            seq = getattr(out, name)[:, 1:]  # drop BOS: position t of the output = segment t
            o = seq[pos[:, 0], pos[:, 1]]
            neg = sample_negatives(emb.detach(), pos, self.neg_cfg.num, self.neg_cfg.sampler,
                                   self.neg_cfg.temperature, self.neg_cfg.sim_cap)
            loss, acc = head.loss(o, emb.reshape(b * s, -1), flat_positions(pos, s), neg, self.mep_cfg.temperature)
            mep_losses.append(loss)
            stats[f"mep_{name}"], stats[f"mep_acc_{name}"] = loss.detach(), acc
        zero = video.new_zeros((), dtype=torch.float32)
        mep = torch.stack(mep_losses).mean() if mep_losses else zero
        cpp, cpp_acc = zero, zero
        if self.cpp_head is not None:
            bos_v = out.top_visual[:, 0]
            bos_a = out.top_audio[:, 0]
            cpp, cpp_acc = self.cpp_head.loss(bos_v, bos_a, is_pair)
        total = self.mep_cfg.weight * mep + self.cpp_cfg.weight * cpp
        accs = [v for k, v in stats.items() if k.startswith("mep_acc_")]
        stats.update(loss=total, mep=mep.detach(), cpp=cpp.detach(), cpp_acc=cpp_acc,
                     mep_acc=torch.stack(accs).mean() if accs else zero)
        return stats
