"""AVBERT: per-segment CNN embeddings contextualised by (shared) transformers over a long clip.

    video [B,S,3,T,H,W] -> visual CNN (all B*S segments in one batch) -> ev [B,S,Dv]
    audio [B,S,1,F,Tm]  -> audio CNN                                 -> ea [B,S,Da]
    ev/ea -> Linear+LN (+ mask vector at MEP positions) -> [BOS; x_1..x_S]
    early: multimodal transformer over [BOS_v; xv; BOS_a; xa]
    mid:   visual and audio transformers, then a multimodal transformer over their outputs
    late:  visual and audio transformers only
The multimodal stage adds its own position embedding (restarting at 0 for the audio half) and a
2-entry modality (token-type) embedding. Either modality may be absent (audio-only / visual-only
evaluation) under every fusion.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .audio_cnn import AudioResNet
from .config import AVBertConfig
from .embeddings import ModalityInput, StreamEmbedding
from .low_rank import FactorLinear, cached_rotations, cayley_init_
from .sharing import ROLES, build_stacks
from .slowfast import SlowFast
from .visual_cnn import ResNet3D


@dataclass
class ContextOutput:
    """Transformer outputs, BOS at index 0 of every [B, S+1, H] stream; None where the fusion or the
    input has no such stream."""

    visual: torch.Tensor | None = None
    audio: torch.Tensor | None = None
    multi_visual: torch.Tensor | None = None
    multi_audio: torch.Tensor | None = None

    @property
    def top_visual(self) -> torch.Tensor | None:
        """The last visual-side output: multimodal half when there is one, else the unimodal stream."""
        return self.multi_visual if self.multi_visual is not None else self.visual

    @property
    def top_audio(self) -> torch.Tensor | None:
        return self.multi_audio if self.multi_audio is not None else self.audio


@dataclass
class AVBertOutput(ContextOutput):
    visual_emb: torch.Tensor | None = None  # [B,S,Dv] pooled CNN embeddings (MEP targets)
    audio_emb: torch.Tensor | None = None  # [B,S,Da]


class AVBert(nn.Module):
    def __init__(self, cfg: AVBertConfig):
        super().__init__()
        self.cfg = cfg
        t = cfg.transformer
        self.hidden = t.hidden
        self.fusion = cfg.fusion
        self.visual_cnn = SlowFast(cfg.visual_cnn) if cfg.visual_cnn.arch == "slowfast" else ResNet3D(cfg.visual_cnn)
        self.audio_cnn = AudioResNet(cfg.audio_cnn)
        self.visual_dim, self.audio_dim = self.visual_cnn.out_dim, self.audio_cnn.out_dim
        norm = cfg.embedding_norm == "batch"  # ours, tiny profile (config.py)
        self.visual_emb_norm = nn.BatchNorm1d(self.visual_dim, affine=False) if norm else nn.Identity()
        self.audio_emb_norm = nn.BatchNorm1d(self.audio_dim, affine=False) if norm else nn.Identity()
        self.visual_input = ModalityInput(self.visual_dim, t.hidden, t.ln_eps)
        self.audio_input = ModalityInput(self.audio_dim, t.hidden, t.ln_eps)
        roles = ROLES[cfg.fusion]
        self.stream_embed = nn.ModuleDict(
            {r: StreamEmbedding(t.hidden, t.max_positions, t.ln_eps, t.dropout, num_types=2 if r == "multi" else 0)
             for r in roles})
        self.stacks, self._role_stack, self._role_group = build_stacks(cfg)
        self.max_positions = t.max_positions
        self.reset_parameters()

    # ----------------------------------------------------------------------------------------- init
    def reset_parameters(self) -> None:
        """Linear/Embedding N(0, init_std), LayerNorm (1, 0), convs Kaiming (fan_out), BN (1, 0) with
        the last BN of every residual block zeroed (released ZERO_INIT_FINAL_BN), R_g Cayley init."""
        std = self.cfg.init_std
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
                nn.init.constant_(m.weight, 0.0 if self.cfg.zero_init_final_bn and getattr(m, "is_final_bn", False) else 1.0)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):  # position and modality embeddings
                nn.init.normal_(m.weight, std=self.cfg.position_init_std or std)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, ModalityInput):
                nn.init.normal_(m.bos, std=std)
                nn.init.normal_(m.mask_token, std=std)
        for m in self.modules():  # after the generic pass, which also visits FactorLinear.up
            if isinstance(m, FactorLinear):
                # V_g's scale is irrelevant (its output is L2-normalised). U sees unit-norm codes, so
                # (ours) it starts at std * sqrt(d_in): the factored map's output then has the scale a
                # dense map with std `init_std` has on a LayerNorm'd input. The released code only
                # shows the downstream init (N(0, 0.01), then overwritten by pretrained weights).
                for v in m.down:
                    nn.init.normal_(v, std=std)
                for a in m.rot:
                    cayley_init_(a)
                nn.init.normal_(m.up.weight, std=std * m.down[0].shape[1] ** 0.5)

    # ------------------------------------------------------------------------------------ encoders
    def encode_visual(self, video: torch.Tensor) -> torch.Tensor:
        """[N,3,T,H,W] -> [N, visual_dim]."""
        return self.visual_emb_norm(self.visual_cnn(video))

    def encode_audio(self, spec: torch.Tensor) -> torch.Tensor:
        """[N,1,F,Tm] -> [N, audio_dim]."""
        return self.audio_emb_norm(self.audio_cnn(spec))

    def transformer(self, role: str) -> nn.Module:
        return self.stacks[self._role_stack[role]]

    def transformer_parameters(self) -> list[nn.Parameter]:
        """Unique parameters of the transformer stacks (what the paper's sharing table counts)."""
        return list({id(p): p for p in self.stacks.parameters()}.values())

    # ------------------------------------------------------------------------------- transformers
    def _run(self, role: str, x: torch.Tensor, positions: torch.Tensor, types: torch.Tensor | None = None) -> torch.Tensor:
        x = self.stream_embed[role](x, positions, types)
        return self.transformer(role)(x, self._role_group[role])

    def _positions(self, length: int, device: torch.device) -> torch.Tensor:
        if length > self.max_positions:
            raise ValueError(f"a stream of {length} tokens (segments + BOS) needs transformer.max_positions >= "
                             f"{length}, got {self.max_positions}")
        return torch.arange(length, device=device)

    def contextualize(self, ev: torch.Tensor | None, ea: torch.Tensor | None,
                      visual_mask: torch.Tensor | None = None, audio_mask: torch.Tensor | None = None) -> ContextOutput:
        if ev is None and ea is None:
            raise ValueError("contextualize needs at least one modality")
        xs = {}
        if ev is not None:
            xs["visual"] = self.visual_input(ev, visual_mask)
        if ea is not None:
            xs["audio"] = self.audio_input(ea, audio_mask)
        out = ContextOutput()
        with cached_rotations(self.stacks):
            if self.fusion in ("mid", "late"):
                for m, x in xs.items():
                    setattr(out, m, self._run(m, x, self._positions(x.shape[1], x.device)))
            if self.fusion in ("early", "mid"):
                src = {m: getattr(out, m) if self.fusion == "mid" else x for m, x in xs.items()}
                self._multimodal(src, out)
        return out

    def _multimodal(self, src: dict[str, torch.Tensor], out: ContextOutput) -> None:
        """One transformer over [visual half; audio half], positions restarting per half."""
        mods = list(src)
        device = src[mods[0]].device
        lengths = [src[m].shape[1] for m in mods]
        pos = torch.cat([self._positions(n, device) for n in lengths])
        types = torch.cat([torch.full((n,), 0 if m == "visual" else 1, device=device, dtype=torch.long)
                           for m, n in zip(mods, lengths)])
        y = self._run("multi", torch.cat([src[m] for m in mods], dim=1), pos, types)
        for m, part in zip(mods, torch.split(y, lengths, dim=1)):
            setattr(out, f"multi_{m}", part)

    def forward(self, video: torch.Tensor | None, audio: torch.Tensor | None,
                visual_mask: torch.Tensor | None = None, audio_mask: torch.Tensor | None = None) -> AVBertOutput:
        ev = ea = None
        if video is not None:
            b, s = video.shape[:2]
            ev = self.encode_visual(video.flatten(0, 1)).view(b, s, -1)
        if audio is not None:
            b, s = audio.shape[:2]
            ea = self.encode_audio(audio.flatten(0, 1)).view(b, s, -1)
        ctx = self.contextualize(ev, ea, visual_mask, audio_mask)
        return AVBertOutput(**vars(ctx), visual_emb=ev, audio_emb=ea)
