"""The pretraining objective: MEP on every configured stream + CPP, for any fusion.

For a batch of clips (video [B,S,3,T,H,W], audio [B,S,1,F,Tm]), in one transformer pass:
1. CNN embeddings ev [B,S,Dv], ea [B,S,Da] (all B*S segments in one CNN batch per modality).
2. CPP: round(fraction*B) clips get another clip's audio (ea is permuted before the transformers;
   from here on "the audio" of clip b is the permuted one, also as MEP target).
3. MEP masks, a fixed count per clip and modality (never the BOS), replaced by the model's mask vector.
4. MEP per configured stream: the output at each masked position (index t+1, after the BOS) against
   its true CNN embedding and negatives drawn by the configured sampler from the detached embeddings
   of the same modality. 'visual'/'audio' are the unimodal streams; 'multi' averages the MEP of the
   multimodal stream's visual half and audio half. Streams the fusion lacks are skipped (early: no
   unimodal streams; late: no multimodal one). Positives and negatives are drawn once per modality and
   shared by the unimodal and multimodal streams.
5. CPP on the BOS outputs: the multimodal stream's two BOS outputs when the fusion has one, else the
   two unimodal BOS outputs (ours). By default they come from the same (masked) pass as MEP;
   `cpp.unmasked_pass` gives CPP a second transformer pass over the unmasked embeddings (ours; the
   paper does not say which inputs CPP sees; one more transformer pass per step).
Loss = mep.weight * mean over streams of MEP + cpp.weight * CPP.

MEP heads (ours): one g per (stream, target modality); W, which embeds a CNN space, is shared per
target modality by default (`head_sharing="proj"`), since unimodal and multimodal predictions of a
visual embedding aim at the same space; "none" gives every head its own W, "head" shares g and W
per target modality.
"""
from __future__ import annotations

import torch
from torch import nn

from .cpp import CPPHead, shuffle_pairs
from .mep import MEPHead, mask_positions, mask_to_positions, masked_count
from .negatives import batch_negatives, clip_negatives, flat_positions, sample_negatives

FUSION_STREAMS = {"early": ("multi",), "mid": ("visual", "audio", "multi"), "late": ("visual", "audio")}
STREAM_HEADS = {"visual": ("visual",), "audio": ("audio",), "multi": ("multi_visual", "multi_audio")}
HEAD_SHARING = ("none", "proj", "head")
HELDOUT_NEGATIVES = {"clip": clip_negatives, "batch": batch_negatives}  # held-out MEP candidate sets (ours)


def _target(head: str) -> str:
    """'multi_visual' -> 'visual': the modality whose CNN embedding the head predicts."""
    return head.removeprefix("multi_")


class AVPretrainObjective(nn.Module):
    """Holds the MEP and CPP heads; `forward(model, video, audio, generator)` returns losses/accuracies.

    mep / cpp / negatives: MEPConfig / CPPConfig / NegativesConfig (experiments/config/schema.py) or any
    objects with the same fields. The model is passed to forward (not stored) so that a wrapper can
    hold model and objective side by side for DDP."""

    def __init__(self, model: nn.Module, mep, cpp, negatives, head_sharing: str | None = None):
        super().__init__()
        self.mep_cfg, self.cpp_cfg, self.neg_cfg = mep, cpp, negatives
        head_sharing = head_sharing or getattr(mep, "head_sharing", "proj")
        if head_sharing not in HEAD_SHARING:
            raise ValueError(f"unknown MEP head sharing {head_sharing!r}; choose one of {', '.join(HEAD_SHARING)}")
        fusion = getattr(model, "fusion", None)
        available = FUSION_STREAMS.get(fusion, ("visual", "audio", "multi"))
        self.streams = [s for s in dict.fromkeys(mep.streams) if s in available] if mep.weight > 0 else []
        if mep.weight > 0 and not self.streams:
            raise ValueError(f"pretrain.mep.streams {list(mep.streams)} has no stream that {fusion} fusion produces")
        dims = {"visual": model.visual_dim, "audio": model.audio_dim}
        heads = [h for s in self.streams for h in STREAM_HEADS[s]]
        targets = sorted({_target(h) for h in heads})
        self.proj = nn.ModuleDict({m: nn.Linear(dims[m], model.hidden, bias=False) for m in targets}) \
            if head_sharing == "proj" else None
        shared = {m: MEPHead(model.hidden, dims[m], normalize=mep.normalize) for m in targets} \
            if head_sharing == "head" else {}

        def make(m: str) -> MEPHead:
            if m in shared:
                return shared[m]
            proj = self.proj[m] if self.proj is not None else None
            return MEPHead(model.hidden, dims[m], normalize=mep.normalize, proj=proj)

        self.mep_heads = nn.ModuleDict({h: make(_target(h)) for h in heads})
        self.cpp_head = CPPHead(model.hidden) if cpp.weight > 0 else None

    def forward(self, model: nn.Module, video: torch.Tensor, audio: torch.Tensor,
                generator: torch.Generator | None = None, heldout: bool | str = False) -> dict[str, torch.Tensor]:
        """video [B,S,3,T,H,W], audio [B,S,1,F,Tm] -> {loss (with grad), mep, cpp, mep_acc, cpp_acc,
        mep_<stream>, mep_acc_<stream>} scalars. `generator` (masks, pairs, negatives) must live on the
        inputs' device; None uses the global RNG."""
        b, s = video.shape[:2]
        ev = model.encode_visual(video.flatten(0, 1)).view(b, s, -1)
        ea = model.encode_audio(audio.flatten(0, 1)).view(b, s, -1)
        return self.from_embeddings(model, ev, ea, generator, heldout)

    def from_embeddings(self, model: nn.Module, ev: torch.Tensor, ea: torch.Tensor,
                        generator: torch.Generator | None = None, heldout: bool | str = False) -> dict[str, torch.Tensor]:
        """Everything after the CNNs, from ev [B,S,Dv] and ea [B,S,Da] (also used by the benchmark
        to time the transformer side alone). heldout=True (or "clip") scores MEP against every other
        segment of the same clip instead of the configured sampler's negatives (the held-out MEP
        accuracy, chance 1/S, comparable across samplers); "batch" against the other clips' masked
        segments (chance 1/B with one masked segment per clip; a diagnostic, see batch_negatives)."""
        form = "clip" if heldout is True else heldout
        if form and form not in HELDOUT_NEGATIVES:
            raise ValueError(f"unknown held-out MEP form {heldout!r}; choose one of {', '.join(HELDOUT_NEGATIVES)}")
        b, s = ev.shape[:2]
        dev = ev.device
        emb = {"visual": ev, "audio": ea}
        is_pair = None
        if self.cpp_head is not None:
            perm, is_pair = shuffle_pairs(b, self.cpp_cfg.fraction, generator, dev)
            emb["audio"] = emb["audio"][perm]

        targets = sorted({_target(h) for h in self.mep_heads})
        per_clip = masked_count(s, self.mep_cfg.mask_ratio)
        masks = {m: mask_positions(b, s, self.mep_cfg.mask_ratio, generator, dev) for m in targets}
        out = model.contextualize(emb["visual"], emb["audio"], masks.get("visual"), masks.get("audio"))

        draws = {}  # modality -> (positions [P,2], flat positives [P], negatives [P,K]), shared by streams
        for m in targets if per_clip else ():
            pos = mask_to_positions(masks[m], per_clip)
            neg = HELDOUT_NEGATIVES[form](pos, s) if form else sample_negatives(
                emb[m].detach(), pos, self.neg_cfg.num, self.neg_cfg.sampler, self.neg_cfg.temperature,
                self.neg_cfg.sim_cap, generator)
            draws[m] = (pos, flat_positions(pos, s), neg)

        zero = torch.zeros((), device=dev)
        stats: dict[str, torch.Tensor] = {}
        stream_losses, stream_accs = [], []
        for stream in self.streams:
            losses, accs = [], []
            for h in STREAM_HEADS[stream]:
                seq, m = getattr(out, h), _target(h)
                if seq is None or m not in draws:
                    continue
                pos, pos_flat, neg = draws[m]
                o = seq[pos[:, 0], pos[:, 1] + 1]  # +1: the BOS sits at index 0
                loss, acc = self.mep_heads[h].loss(o, emb[m].reshape(b * s, -1), pos_flat, neg,
                                                   self.mep_cfg.temperature)
                losses.append(loss)
                accs.append(acc)
            if losses:
                stream_losses.append(torch.stack(losses).mean())
                stream_accs.append(torch.stack(accs).mean())
                stats[f"mep_{stream}"] = stream_losses[-1].detach()
                stats[f"mep_acc_{stream}"] = stream_accs[-1].detach()
        mep = torch.stack(stream_losses).mean() if stream_losses else zero
        mep_acc = torch.stack(stream_accs).mean() if stream_accs else zero

        cpp, cpp_acc = zero, zero
        if self.cpp_head is not None:
            if self.cpp_cfg.unmasked_pass and masks:  # ours: CPP sees every segment
                out = model.contextualize(emb["visual"], emb["audio"], None, None)
            cpp, cpp_acc = self.cpp_head.loss(out.top_visual[:, 0], out.top_audio[:, 0], is_pair)
        total = self.mep_cfg.weight * mep + self.cpp_cfg.weight * cpp
        stats.update(loss=total, mep=mep.detach(), cpp=cpp.detach(), mep_acc=mep_acc.detach(), cpp_acc=cpp_acc.detach())
        return stats
