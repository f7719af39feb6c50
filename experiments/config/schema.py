"""The run config: one YAML = one RunConfig. Defaults live here (paper scale), profiles and RQ
configs hold only deltas. Fields marked "ours" are choices where the paper and released code are
silent; each is documented in the README's fidelity table.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from data.config import DataConfig
from model.config import AVBertConfig

Stream = Literal["visual", "audio", "multi"]
Modality = Literal["visual", "audio"]


@dataclass
class OptimConfig:
    RANGES: ClassVar[dict] = {"lr": (0, None, True), "weight_decay": (0, None), "betas": (0, 1, False, True), "eps": (0, None, True), "warmup_steps": (0, None), "grad_clip": (0, None), "accum_steps": (1, None), "transformer_lr_scale": (0, None, True)}  # checked at load (experiments.config.loader)
    lr: float = 1e-4  # ours (pretraining LR not published)
    weight_decay: float = 0.01  # ours
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-6  # released Adam eps
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = 0
    grad_clip: float = 1.0  # ours; 0 disables
    accum_steps: int = 1
    # ours: LR multiplier for everything outside the two CNNs (projections, transformers, heads); a
    # deep post-LN transformer wants a smaller LR than small CNNs trained from scratch
    transformer_lr_scale: float = 1.0

    def __post_init__(self) -> None:
        if not (self.lr > 0 and self.transformer_lr_scale > 0 and self.accum_steps >= 1):
            raise ValueError(f"lr and transformer_lr_scale must be > 0 and accum_steps >= 1, got lr={self.lr}, "
                             f"transformer_lr_scale={self.transformer_lr_scale}, accum_steps={self.accum_steps}")


@dataclass
class NegativesConfig:
    """MEP negatives (the RQ4 ablation). CANS details are ours: softmax(+-cos/temperature) over the
    batch's segments, excluding the positive and near-duplicates with cos > sim_cap."""

    RANGES: ClassVar[dict] = {"num": (1, None), "temperature": (0, None, True), "sim_cap": (0, 1)}  # checked at load (experiments.config.loader)
    sampler: Literal["current_sequence", "current_minibatch", "cans_similar", "cans_dissimilar"] = "cans_similar"
    num: int = 16
    temperature: float = 0.1
    sim_cap: float = 0.99


@dataclass
class MEPConfig:
    RANGES: ClassVar[dict] = {"mask_ratio": (0, 1), "temperature": (0, None, True), "weight": (0, None)}  # checked at load (experiments.config.loader)
    mask_ratio: float = 0.15
    streams: list[Stream] = field(default_factory=lambda: ["visual", "audio", "multi"])
    temperature: float = 0.1  # InfoNCE tau (ours)
    normalize: bool = True  # ours: cosine form of the bilinear score g(o)^T W x
    head_sharing: Literal["none", "proj", "head"] = "proj"  # ours: W shared per target modality
    weight: float = 1.0


@dataclass
class CPPConfig:
    RANGES: ClassVar[dict] = {"fraction": (0, 1), "weight": (0, None)}  # checked at load (experiments.config.loader)
    fraction: float = 0.5  # share of clips whose audio is swapped with another clip's
    weight: float = 1.0
    # ours (the paper is silent): false = CPP on the BOS outputs of MEP's masked pass; true = a second
    # transformer pass over the unmasked embeddings for CPP (MEP keeps the masked one), in training and
    # in the held-out CPP accuracy alike (README, "Learnability check")
    unmasked_pass: bool = False


@dataclass
class PretrainConfig:
    RANGES: ClassVar[dict] = {"epochs": (1, None), "steps_per_epoch": (1, None), "batch_size": (1, None), "checkpoint_every": (1, None)}  # checked at load (experiments.config.loader)
    enabled: bool = True
    dataset: str = "pretrain"  # sub-folder of data.root with the pretraining shards
    # ours: sub-folder of held-out pretraining clips; when set, CPP accuracy and MEP top-1 against the
    # clip's other segments (chance 1/S) are measured on it after every epoch (log.jsonl, metrics.json)
    heldout_dataset: str = ""
    epochs: int = 10
    steps_per_epoch: int = 1000  # fixed epoch length: every rank runs exactly this many optimizer steps
    batch_size: int = 8  # clips per GPU per micro-batch
    freeze_cnn: bool = False  # RQ1 baseline: CNNs frozen at init, only transformers learn
    # start from these weights instead of a random init ({"model": state_dict}, e.g. the released ones via
    # `python -m model.convert_released`); with enabled: false the evaluations start from them
    init_checkpoint: str = ""
    mep: MEPConfig = field(default_factory=MEPConfig)
    cpp: CPPConfig = field(default_factory=CPPConfig)
    negatives: NegativesConfig = field(default_factory=NegativesConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    checkpoint_every: int = 200  # steps between `last.pt` writes (also written on SIGTERM/SIGUSR1)

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the whole pretraining (every epoch is exactly steps_per_epoch)."""
        return self.epochs * self.steps_per_epoch


@dataclass
class EvalConfig:
    """One downstream evaluation. `model` picks the paper's row: v_cnn/a_cnn/m_cnn (CNN features only),
    v_bert/a_bert (one modality through its transformer), m_bert (the whole model)."""

    RANGES: ClassVar[dict] = {"segments": (1, None), "temporal_views": (1, None), "spatial_crops": (1, None), "epochs": (1, None), "batch_size": (1, None), "lr": (0, None, True), "finetune_lr": (0, None, True), "weight_decay": (0, None), "dropout": (0, 1, False, True), "split": (1, None), "train_per_class": (0, None)}  # checked at load (experiments.config.loader)
    name: str = "ks"
    task: str = "ks_like"  # sub-folder of data.root with train/val/test shards
    # test (ours): no training, score the test split with pretrain.init_checkpoint's weights and heads
    # (a converted released KS checkpoint: m_bert, both modalities)
    protocol: Literal["linear", "finetune", "test"] = "linear"
    # *_hand (ours): the reference row, a head on hand-crafted segment statistics (model/handcrafted.py)
    model: Literal["v_cnn", "a_cnn", "m_cnn", "v_bert", "a_bert", "m_bert", "v_hand", "a_hand", "m_hand"] = "m_bert"
    init: Literal["auto", "pretrained", "random"] = "auto"  # auto: pretrained when pretraining is enabled
    modalities: list[Modality] = field(default_factory=lambda: ["visual", "audio"])  # inputs given at test
    multilabel: bool = False  # Charades-like: sigmoid + BCE, metric mAP
    segments: int = 10  # evenly spaced segments per video (released KS: 10)
    temporal_views: int = 1
    spatial_crops: int = 3
    epochs: int = 20
    batch_size: int = 5
    lr: float = 1e-3  # head LR (released BASE_LR)
    finetune_lr: float = 1e-4  # backbone LR when protocol=finetune (released FINETUNE_LR)
    weight_decay: float = 5e-6
    loss: Literal["cross_entropy", "multi_margin", "bce"] = "cross_entropy"
    dropout: float = 0.5
    # linear protocol only (ours): z-score the cached features with train-split statistics first
    standardize: bool = True
    split: int = 1  # official split / fold number (UCF101 1-3, HMDB51 1-3, ESC-50 1-5)
    # ours: few-label evaluation, the first k training clips of each class in the order the evaluation
    # loader yields them (fixed for a given data.num_workers; 0 = all); linear protocol, single-label only
    train_per_class: int = 0

    def __post_init__(self) -> None:
        if self.train_per_class < 0:
            raise ValueError(f"downstream '{self.name}': train_per_class must be >= 0, got {self.train_per_class}")
        if self.train_per_class and (self.protocol != "linear" or self.multilabel):
            raise ValueError(f"downstream '{self.name}': train_per_class needs protocol: linear on a single-label task")
        if self.protocol == "test" and (self.model != "m_bert" or sorted(self.modalities) != ["audio", "visual"]
                                        or self.init == "random"):
            raise ValueError(f"downstream '{self.name}': protocol test scores the released KS heads, which need "
                             f"model: m_bert, modalities [visual, audio] and a non-random init (got {self.model}, "
                             f"{self.modalities}, init {self.init})")


@dataclass
class RuntimeConfig:
    RANGES: ClassVar[dict] = {"num_threads": (0, None), "log_every": (1, None)}  # checked at load (experiments.config.loader)
    # never change a result (NON_RESULT_KEYS)
    NO_RESULT: ClassVar[tuple] = ("log_every", "reuse_pretraining", "reuse_evaluations")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True  # bf16 autocast on GPU (ignored on CPU)
    compile: bool = False
    channels_last: bool = True  # channels_last_3d for the visual CNN on GPU
    # ours: channels-last CNNs on CPU too (visual channels_last_3d, audio channels_last). Off by default:
    # it changes a CPU run's numbers in the last bits. At the tiny size with one thread the training step
    # is 1.4x faster (0.913 -> 0.649 s), with two threads 1.05x (README "Performance")
    channels_last_cpu: bool = False
    activation_checkpointing: bool = False  # recompute CNN activations in backward to save memory
    deterministic: bool = False
    num_threads: int = 0  # torch CPU threads per rank; 0 = leave torch's default
    log_every: int = 20
    # ours: take the pretrained weights of an identical finished pretraining under the same output_root
    # (experiments/pretrain_reuse.py) instead of repeating it; results are the same either way
    reuse_pretraining: bool = True
    # ours: take an identical finished evaluation of another run with the same pretraining key under the
    # same output_root (experiments/eval_reuse.py) instead of repeating it; results are the same either way
    reuse_evaluations: bool = True


@dataclass
class RunConfig:
    """`profiles` lists the profiles this run exists in (the launcher skips it elsewhere, e.g. the
    AudioSet transfer run exists only at paper scale)."""

    RANGES: ClassVar[dict] = {"seed": (0, None)}  # checked at load (experiments.config.loader)
    NO_RESULT: ClassVar[tuple] = ("output_root",)  # where results go never changes them (NON_RESULT_KEYS)
    name: str = "run"
    rq: str = "adhoc"
    profile: Literal["tiny", "paper", "smoke"] = "paper"
    seed: int = 0
    output_root: str = "results"
    model: AVBertConfig = field(default_factory=AVBertConfig)
    data: DataConfig = field(default_factory=DataConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    downstream: list[EvalConfig] = field(default_factory=list)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    profiles: list[Literal["tiny", "paper", "smoke"]] = field(default_factory=lambda: ["tiny", "paper", "smoke"])

    @property
    def synthetic_tasks(self) -> list[str]:
        """The synthetic benchmark's tasks this run reads (what `ensure_synthetic(tasks=...)` takes):
        "pretrain" (pretrain/ and pretrain_val/) when it pretrains, and each evaluation's task."""
        return sorted({*(["pretrain"] if self.pretrain.enabled else []), *(e.task for e in self.downstream)})

    def __post_init__(self) -> None:
        names = [e.name for e in self.downstream]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"downstream names must be unique, repeated: {dup}")
        for e in self.downstream:
            if e.protocol == "test" and (self.pretrain.enabled or not self.pretrain.init_checkpoint):
                raise ValueError(f"downstream '{e.name}' has protocol: test, which scores given weights: it needs "
                                 "pretrain.enabled: false and pretrain.init_checkpoint (a converted checkpoint)")
            if e.init == "pretrained" and not (self.pretrain.enabled or self.pretrain.init_checkpoint):
                raise ValueError(f"downstream '{e.name}' has init: pretrained but pretrain.enabled is false "
                                 "and no pretrain.init_checkpoint is given")
        for key in ("rq", "name"):  # the run folder is output_root/rq/name: each must stay one folder level
            v = getattr(self, key)
            if not v or v in (".", "..") or "/" in v or "\\" in v:
                raise ValueError(f"key '{key}': must be a non-empty folder name (no '/', '\\', '.' or '..'), got {v!r}")
