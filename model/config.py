"""Model hyper-parameters as plain dataclasses.

Defaults are the paper scale (= the released code's values). Modules receive these objects from
builders; they never read YAML. `experiments/config` validates YAML into these same classes.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar, Literal

Fusion = Literal["early", "mid", "late"]
Sharing = Literal["none", "cross_layer", "all", "part", "multi2"]
EmbeddingNorm = Literal["none", "batch"]


@dataclass
class VisualCNNConfig:
    """3D ResNet (released code: single-pathway 3D ResNet-50) or SlowFast-R50 (the poster's name)."""

    RANGES: ClassVar[dict] = {"stage_blocks": (1, None), "width": (1, None), "stem_kernel": (1, None), "stem_stride": (1, None), "temporal_kernels": (1, None), "slowfast_alpha": (1, None), "slowfast_beta_inv": (1, None), "slowfast_fusion_kernel": (1, None), "spatial_bins": (1, None)}  # checked at load (experiments.config.loader)
    arch: Literal["resnet3d", "slowfast"] = "resnet3d"
    stage_blocks: tuple[int, ...] = (3, 4, 6, 3)  # bottleneck blocks per stage (res2..res5)
    width: int = 64  # channels after the stem; pooled output = 32 * width (2048 at paper scale)
    stem_kernel: tuple[int, int, int] = (5, 7, 7)
    stem_stride: tuple[int, int, int] = (2, 2, 2)  # released: temporal stride 2
    temporal_kernels: tuple[int, ...] = (1, 1, 3, 3)  # kernel of each bottleneck's first 1x1 conv, per stage
    # SlowFast only: fast pathway sees alpha x more frames with width / beta channels
    slowfast_alpha: int = 4
    slowfast_beta_inv: int = 8
    slowfast_fusion_kernel: int = 7
    # ours (tiny profile): average-pool the last feature map to spatial_bins x spatial_bins cells instead of
    # one (released: 1 = global pool); the embedding is then out_channels * spatial_bins**2 wide, so a
    # tiny CNN keeps where things are (resnet3d only)
    spatial_bins: int = 1

    def __post_init__(self) -> None:
        if len(self.temporal_kernels) != len(self.stage_blocks):
            raise ValueError("visual_cnn.temporal_kernels needs one entry per stage in stage_blocks")
        if self.width < 1 or any(b < 1 for b in self.stage_blocks):
            raise ValueError("visual_cnn.width and stage_blocks must be positive")
        if self.spatial_bins < 1 or (self.spatial_bins > 1 and self.arch != "resnet3d"):
            raise ValueError(f"visual_cnn.spatial_bins must be >= 1 (and 1 for slowfast), got {self.spatial_bins}")


@dataclass
class AudioCNNConfig:
    """2D ResNet on 1 x mel_bins x frames log-mel (released: ResNet-50, width 32, separable early)."""

    RANGES: ClassVar[dict] = {"stage_blocks": (1, None), "width": (1, None), "stem_kernel": (1, None), "separable_stages": (0, 4), "freq_bins": (1, None)}  # checked at load (experiments.config.loader)
    stage_blocks: tuple[int, ...] = (3, 4, 6, 3)
    width: int = 32  # pooled output = 32 * width (1024 at paper scale)
    stem_kernel: int = 9  # separable k x 1 then 1 x k stem
    separable_stages: int = 2  # res2, res3 use 3x1 + 1x3 middle convs; later stages full 3x3
    # ours (tiny profile): average over time only and keep freq_bins frequency bands (released: 1 =
    # global pool); the embedding is then out_channels * freq_bins wide, so pitch survives the pooling
    freq_bins: int = 1

    def __post_init__(self) -> None:
        if self.width < 1 or any(b < 1 for b in self.stage_blocks):
            raise ValueError("audio_cnn.width and stage_blocks must be positive")
        if self.freq_bins < 1:
            raise ValueError(f"audio_cnn.freq_bins must be >= 1, got {self.freq_bins}")


@dataclass
class TransformerConfig:
    """BERT-style post-LN encoder used for the visual, audio and multimodal roles."""

    RANGES: ClassVar[dict] = {"hidden": (1, None), "heads": (1, None), "ffn": (1, None), "layers": (1, None), "dropout": (0, 1, False, True), "attn_dropout": (0, 1, False, True), "ln_eps": (0, None, True), "max_positions": (1, None), "rank": (1, None)}  # checked at load (experiments.config.loader)
    hidden: int = 768
    heads: int = 12
    ffn: int = 3072
    layers: int = 6
    dropout: float = 0.1
    attn_dropout: float = 0.1
    ln_eps: float = 1e-12  # released code keeps the HF default
    max_positions: int = 22  # released MAX_POSITION_EMBEDDINGS
    rank: int = 128  # low-rank size O for sharing="part" (released ORTHOGONAL_SIZE)

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(f"transformer.hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        if self.rank < 1 or self.layers < 1:
            raise ValueError("transformer.rank and layers must be >= 1")


@dataclass
class AVBertConfig:
    """The whole audio-visual model: CNNs, projections, embeddings, transformers."""

    RANGES: ClassVar[dict] = {"init_std": (0, None, True), "position_init_std": (0, None)}  # checked at load (experiments.config.loader)
    fusion: Fusion = "mid"
    sharing: Sharing = "part"  # multi2 = no sharing with 2 layers per transformer (poster row)
    visual_cnn: VisualCNNConfig = field(default_factory=VisualCNNConfig)
    audio_cnn: AudioCNNConfig = field(default_factory=AudioCNNConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    init_std: float = 0.02  # ours: BERT's 0.02 for Linear/Embedding (released downstream code used 0.01)
    # ours (tiny profile): init std of the position and modality embeddings; 0 = init_std. The tokens they
    # are added to are LayerNormed CNN projections (unit scale), so at 0.02 "where in the clip" is 2 % of a
    # token and a short schedule cannot grow it enough to align a visual segment with its audio
    position_init_std: float = 0.0
    # ours (tiny profile): "batch" standardises each pooled CNN embedding feature over the batch
    # (BatchNorm1d without affine; running statistics in eval) before everything that reads it: the
    # transformer input projection and the MEP targets. "none" = released (CNN -> Linear -> LN). Why:
    # pooled post-ReLU features share a large common mean, so every token and every MEP target points
    # the same way; on frozen random tiny-CNN features CPP stays at log 2 raw and learns z-scored
    # (README, "Why CPP does not learn on real clips")
    embedding_norm: EmbeddingNorm = "none"
    zero_init_final_bn: bool = True  # released ZERO_INIT_FINAL_BN

    @property
    def num_layers(self) -> int:
        return 2 if self.sharing == "multi2" else self.transformer.layers


def standard_init(cfg: AVBertConfig) -> AVBertConfig:
    """The config a random-init baseline is built with: no zero-initialised residual branches.

    zero_init_final_bn (released, a training trick) makes every residual branch output exactly 0 at init,
    so an untrained network's features would be the stem plus shortcut projections: a crippled
    baseline. Features that are never trained (random-init evaluations, CNNs frozen at init) use the
    standard initialisation instead (SPEC 4: fair baselines)."""
    return replace(cfg, zero_init_final_bn=False)
