"""Downstream evaluation: linear evaluation (frozen backbone) or fine-tuning, for every paper row.

Protocol (ours where the released code differs): the held-out `val` split chooses the epoch, the
`test` split is scored once with that epoch's weights (the released code picked the best epoch on
the test set). Test scores average the probabilities over temporal views x spatial crops.

* linear: the backbone runs once in eval mode (BN statistics frozen) to cache features of the
  train split (one centred view per clip, ours: no augmentation) and of val/test (all views); only
  the head trains on the cache, which makes linear evaluation cheap enough for CPU.
* finetune: backbone (finetune_lr) and heads (lr) train together with the released two-LR
  parameter groups; `last.pt` is written every epoch, on a stop request and from submitit's
  checkpoint() between batches (experiments.resumable), so a preempted fine-tuning resumes where it
  stopped.
* test (ours): no training; backbone and heads come from `pretrain.init_checkpoint` (a converted
  released Kinetics-Sounds checkpoint) and the test split is scored once with every view.
"""
from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

from data import shards
from data import pipeline  # loaders looked up per call (pipeline.make_*): the resume tests wrap them
from data.pipeline import task_folder
from experiments import checkpoint, preemption, runtime
from experiments.config import EvalConfig, OptimConfig, RunConfig
from experiments.feature_cache import FeatureCache, all_views
from experiments.optim import build_scheduler
from experiments.resumable import ResumableLoop
from model.build import build_model
from model.config import standard_init
from model.heads import DownstreamModel, downstream_loss, head_scores, param_groups
from model.metrics import mean_average_precision, topk_accuracy


def read_classes(task_dir: Path) -> dict:
    if not (task_dir / "classes.json").is_file():
        raise FileNotFoundError(f"{task_dir / 'classes.json'} missing: prepare the task with `python -m data.prepare` "
                                "(or generate the synthetic benchmark with `python -m data.synthetic`)")
    return shards.read_classes(task_dir)


def _loader(cfg: RunConfig, ev: EvalConfig, task_dir: Path, split: str, *, train: bool = False, views: bool = False,
            epoch: int = 0, skip_batches: int = 0, device: torch.device | None = None):
    """train: random crops and flips (else the test transform); views: the eval's temporal views x
    spatial crops (else one centre view)."""
    return pipeline.make_downstream_loader(
        cfg.data, task_dir, split, segments=ev.segments, train=train,
        temporal_views=ev.temporal_views if views else 1, spatial_crops=ev.spatial_crops if views else 1,
        batch_size=ev.batch_size, modalities=tuple(ev.modalities), seed=cfg.seed, epoch=epoch, skip_batches=skip_batches,
        pin_memory=device is not None and device.type == "cuda")


def _stop_point(desc: str) -> None:
    """Evaluation passes honour a stop request at batch boundaries. Nothing is saved here: a linear
    evaluation is redone from the start after a requeue (it is seeded, so the result is the same);
    fine-tuning saves its training state itself before re-raising (see `finetune`)."""
    if preemption.stop_requested():
        raise preemption.Preempted(f"stop requested during {desc}")


def _target(batch: dict, multilabel: bool) -> torch.Tensor:
    return batch["labels"] if multilabel else batch["label"]


def _inputs(loader, batch: dict, device: torch.device, *, views: bool):
    """(video, audio, V) on `device` as the model takes them: eval batches carry a view axis
    [B,V,S,...]; it is folded into the batch."""
    out, v = [], 1
    for x in loader.model_inputs(batch, device):
        if x is not None and views:
            v = x.shape[1]
            x = x.flatten(0, 1)
        out.append(x)
    return out[0], out[1], v


def _metrics(scores: torch.Tensor, target: torch.Tensor, multilabel: bool) -> dict:
    if multilabel:
        return {"mAP": round(mean_average_precision(scores, target), 3), "top1": None, "top5": None}
    return {"top1": round(topk_accuracy(scores, target, 1), 3), "top5": round(topk_accuracy(scores, target, 5), 3),
            "mAP": None}


def _selection_value(m: dict) -> float:
    return m["mAP"] if m["mAP"] is not None else m["top1"]


# ------------------------------------------------------------------------------------ linear eval
@torch.no_grad()
def extract_features(dm: DownstreamModel, loader, device, *, amp: bool, views: bool, multilabel: bool,
                     desc: str, transformer: bool | None = None) -> tuple[dict, torch.Tensor]:
    """Backbone features for a whole split, on CPU: dict of [N, (V,) ...] tensors and targets.

    `loader` is an evaluation loader (train=False), whose batches always carry a view axis [B,V,...];
    views=False (one view per clip, V=1) drops that axis from the output. transformer: as in
    DownstreamModel.features."""
    dm.eval()
    feats: dict[str, list] = {}
    targets = []
    for batch in tqdm(loader, desc=desc, unit="batch", leave=False, dynamic_ncols=True):
        _stop_point(desc)
        video, audio, v = _inputs(loader, batch, device, views=True)
        if not views and v != 1:
            raise ValueError(f"{desc}: views=False needs a one-view loader, got {v} views per clip")
        with runtime.autocast(device, amp):
            f = dm.features(video, audio, transformer=transformer)
        for k, t in f.items():
            t = t.float().cpu()
            feats.setdefault(k, []).append(t.view(-1, v, *t.shape[1:]) if views else t)
        targets.append(_target(batch, multilabel))
    if not targets:
        raise RuntimeError(f"{desc}: the split is empty (no decodable samples)")
    return {k: torch.cat(v) for k, v in feats.items()}, torch.cat(targets)


def _score_views(dm: DownstreamModel, feats: dict, multilabel: bool, chunk: int = 1024) -> torch.Tensor:
    """Average over views of the summed head probabilities, in chunks to bound memory."""
    n, v = next(iter(feats.values())).shape[:2]
    out = []
    for i in range(0, n, chunk):
        part = {k: t[i:i + chunk].flatten(0, 1) for k, t in feats.items()}
        scores = head_scores(dm.head_logits(part), multilabel)
        out.append(scores.view(-1, v, scores.shape[-1]).mean(dim=1))
    return torch.cat(out)


def standardize_features(train: dict, *others: dict, eps: float = 1e-6) -> tuple[dict, ...]:
    """Per-channel z-scores with the train split's statistics (over clips, views and segments), for
    every feature tensor (last axis = channels). Why (ours, as MAE's linear probe puts a BatchNorm
    without affine parameters before its head): the head's learning rate then means the same for
    backbones whose features differ in scale, e.g. a random and a pretrained one."""
    stats = {k: (t.flatten(0, -2).mean(0), t.flatten(0, -2).std(0) + eps) for k, t in train.items()}
    return tuple({k: (t - stats[k][0]) / stats[k][1] for k, t in f.items()} for f in (train, *others))


def first_per_class(labels: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the first k clips of every class, in order (few-label evaluation)."""
    seen: dict[int, int] = {}
    keep = []
    for i, y in enumerate(labels.tolist()):
        if seen.get(y, 0) < k:
            seen[y] = seen.get(y, 0) + 1
            keep.append(i)
    return torch.tensor(keep, dtype=torch.long)


def _split_features(cfg, ev, dm, task_dir, device, split: str, features: FeatureCache | None):
    """(features, targets) of one split, from the run's FeatureCache when one is given. Only the features
    this row reads are returned (a shared extraction may hold the transformer outputs of another row)."""
    views = all_views(split)

    def extract(transformer: bool | None = None):
        return extract_features(dm, _loader(cfg, ev, task_dir, split, views=views, device=device), device,
                                amp=cfg.runtime.amp, views=views, multilabel=ev.multilabel,
                                desc=f"{ev.name}: {split} features", transformer=transformer)
    if features is None:
        return extract()
    feats, targets = features.get(ev, split, extract)
    return {k: t for k, t in feats.items() if dm.use_transformer or not k.startswith("seq_")}, targets


def linear_eval(cfg, ev, dm, task_dir, device, log, features: FeatureCache | None = None) -> dict:
    f_train, y_train = _split_features(cfg, ev, dm, task_dir, device, "train", features)
    if ev.train_per_class:
        keep = first_per_class(y_train, ev.train_per_class)
        f_train, y_train = {k: t[keep] for k, t in f_train.items()}, y_train[keep]
    f_val, y_val = _split_features(cfg, ev, dm, task_dir, device, "val", features)
    f_test, y_test = _split_features(cfg, ev, dm, task_dir, device, "test", features)
    if ev.standardize:
        f_train, f_val, f_test = standardize_features(f_train, f_val, f_test)
    dm.to("cpu")  # the head trains on cached CPU features
    params = dm.head_parameters()
    opt = torch.optim.AdamW(params, lr=ev.lr, weight_decay=ev.weight_decay)
    n = y_train.shape[0]
    steps_per_epoch = max(1, math.ceil(n / ev.batch_size))
    sched = build_scheduler(opt, _cosine(), ev.epochs * steps_per_epoch)
    g = torch.Generator().manual_seed(cfg.seed)
    heads = dm.head_modules()
    best, best_state, best_epoch = -1.0, None, -1
    for epoch in range(ev.epochs):
        _stop_point(f"{ev.name}: linear head epoch {epoch}")
        for h in heads:
            h.train()
        order = torch.randperm(n, generator=g)
        for i in range(0, n, ev.batch_size):
            idx = order[i:i + ev.batch_size]
            loss = downstream_loss(dm.head_logits({k: t[idx] for k, t in f_train.items()}), y_train[idx], ev.loss)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        for h in heads:
            h.eval()
        with torch.no_grad():
            val = _metrics(_score_views(dm, f_val, ev.multilabel), y_val, ev.multilabel)
        if _selection_value(val) > best:
            best, best_epoch = _selection_value(val), epoch
            best_state = copy.deepcopy([h.state_dict() for h in heads])
        log.write(stage=f"downstream:{ev.name}", epoch=epoch, loss=round(loss.item(), 5), **{f"val_{k}": v for k, v in val.items()})
    for h, s in zip(heads, best_state):
        h.load_state_dict(s)
    with torch.no_grad():
        test = _metrics(_score_views(dm, f_test, ev.multilabel), y_test, ev.multilabel)
    return {**test, "best_epoch": best_epoch, "val": round(best, 3), "num_train": n, "num_test": int(y_test.shape[0])}


def _cosine():
    return OptimConfig(schedule="cosine", warmup_steps=0)


# -------------------------------------------------------------------------------------- fine-tune
@torch.no_grad()
def evaluate_views(dm, loader, device, amp: bool, multilabel: bool, desc: str) -> tuple[dict, int]:
    dm.eval()
    scores, targets = [], []
    for batch in tqdm(loader, desc=desc, unit="batch", leave=False, dynamic_ncols=True):
        _stop_point(desc)
        video, audio, v = _inputs(loader, batch, device, views=True)
        with runtime.autocast(device, amp):
            logits = dm.head_logits(dm.features(video, audio))
        s = head_scores(logits, multilabel)
        scores.append(s.view(-1, v, s.shape[-1]).mean(dim=1).cpu())
        targets.append(_target(batch, multilabel))
    if not scores:
        raise RuntimeError(f"{desc}: the split is empty (no decodable samples)")
    y = torch.cat(targets)
    return _metrics(torch.cat(scores), y, multilabel), int(y.shape[0])


def finetune(cfg, ev, dm, task_dir, folder, cfg_hash, device, log) -> dict:
    stage = f"downstream:{ev.name}"
    amp = cfg.runtime.amp
    probe = _loader(cfg, ev, task_dir, "train", train=True, device=device)
    n_train, steps_per_epoch = probe.num_samples, len(probe)
    opt = torch.optim.AdamW(param_groups(dm, ev.finetune_lr, ev.lr, ev.weight_decay))
    sched = build_scheduler(opt, _cosine(), ev.epochs * steps_per_epoch)
    best_path = f"{ev.name}.best.pt"
    loop = ResumableLoop(folder, stage, cfg_hash, {"model": dm, "optimizer": opt, "scheduler": sched},
                         {"epoch": 0, "batch": 0, "best": -1.0, "best_epoch": -1, "wall_s": 0.0, "loss": None},
                         log=log)
    if loop.resume(map_location=device):
        log.write(stage=stage, event="resumed", **loop.position)
    pos = loop.position
    t0 = time.time() - pos["wall_s"]
    with loop:
        while pos["epoch"] < ev.epochs:
            dm.train()
            loader = _loader(cfg, ev, task_dir, "train", train=True, epoch=pos["epoch"], skip_batches=pos["batch"],
                             device=device)
            for batch in tqdm(loop.batches(loader), total=len(loader), desc=f"{ev.name} epoch {pos['epoch']}",
                              unit="batch", leave=False, dynamic_ncols=True):
                with loop.step():
                    video, audio, _ = _inputs(loader, batch, device, views=False)
                    with runtime.autocast(device, amp):
                        logits = dm.head_logits(dm.features(video, audio))  # per head: one loss each (released)
                        loss = downstream_loss(logits, _target(batch, ev.multilabel).to(device), ev.loss)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    pos["batch"] += 1
                    pos["wall_s"] = time.time() - t0
                    pos["loss"] = loss.detach()  # the epoch's last batch loss is logged with its val metrics
                loop.stop_if_requested(f"epoch {pos['epoch']}, batch {pos['batch']}")
            # validation runs between steps (eval mode changes no state): a stop in it saves this epoch's
            # training, and the resumed run validates again from the boundary's RNG state
            try:
                val, _ = evaluate_views(dm, _loader(cfg, ev, task_dir, "val", views=True, device=device), device,
                                        amp, ev.multilabel, f"{ev.name}: val")
            except preemption.Preempted:
                loop.save()
                raise
            with loop.step():  # epoch end: model selection, next epoch
                if _selection_value(val) > pos["best"]:
                    pos["best"], pos["best_epoch"] = _selection_value(val), pos["epoch"]
                    checkpoint.save(folder, {"model": dm.state_dict(), "epoch": pos["epoch"]}, best_path)
                log.write(stage=stage, epoch=pos["epoch"], loss=None if pos["loss"] is None else round(float(pos["loss"]), 5), **{f"val_{k}": v for k, v in val.items()})
                pos["epoch"] += 1
                pos["batch"] = 0
                pos["wall_s"] = time.time() - t0
            loop.save()
    dm.load_state_dict(checkpoint.load(folder, best_path, map_location=device)["model"])
    test, n_test = evaluate_views(dm, _loader(cfg, ev, task_dir, "test", views=True, device=device), device, amp,
                                  ev.multilabel, f"{ev.name}: test")
    return {**test, "best_epoch": pos["best_epoch"], "val": round(pos["best"], 3), "num_train": n_train, "num_test": n_test}


# ------------------------------------------------------------------------------- test only
def load_heads(dm: DownstreamModel, heads: dict | None, num_classes: int, source: str) -> None:
    """Put given head weights (a converted released KS checkpoint's `heads`) into dm's heads, strictly."""
    if not heads:
        raise ValueError(f"downstream protocol 'test' needs head weights, and {source} has none: convert a "
                         "released fine-tuned checkpoint (`python -m model.convert_released epoch_best.pyth ours.pt`)")
    have = int(heads["concat_head.fc.weight"].shape[0]) if "concat_head.fc.weight" in heads else None
    if have != num_classes:
        raise ValueError(f"the heads in {source} predict {have} classes, the task has {num_classes}")
    for name in ("concat_head", "seq_head"):
        module = getattr(dm, name)
        if module is not None:
            module.load_state_dict({k[len(name) + 1:]: v for k, v in heads.items() if k.startswith(name + ".")})


def test_only(cfg, ev, dm, task_dir, device) -> dict:
    """protocol test: no training; the test split scored with the loaded weights and heads, every view."""
    test, n_test = evaluate_views(dm, _loader(cfg, ev, task_dir, "test", views=True, device=device), device,
                                  cfg.runtime.amp, ev.multilabel, f"{ev.name}: test")
    return {**test, "num_train": 0, "num_test": n_test}


# --------------------------------------------------------------------------------------- entry
def run_eval(cfg: RunConfig, ev: EvalConfig, init_state: dict | None, data_root: Path, folder: Path,
             cfg_hash: str, env, device: torch.device, log, heads: dict | None = None,
             features: FeatureCache | None = None) -> dict:
    """One downstream evaluation; returns its metrics entry for metrics.json. `heads`: the init
    checkpoint's head weights (used by protocol 'test' only); `features`: the run's shared evaluation
    features (linear protocol; None extracts this evaluation's own)."""
    t0 = time.time()
    # every evaluation starts from the run's seed: its result must not depend on what ran before it in
    # this process (pretraining, other evaluations, or nothing after a requeue)
    runtime.seed_everything(cfg.seed)
    task_dir = task_folder(data_root, ev.task, ev.split)
    info = read_classes(task_dir)
    classes = info["classes"]
    if bool(info.get("multilabel")) != ev.multilabel:
        raise ValueError(f"downstream '{ev.name}': multilabel={ev.multilabel} but {task_dir} is "
                         f"{'multi' if info.get('multilabel') else 'single'}-label; fix the eval config")
    # a random-init baseline gets the standard init (no zero-init residual branches): fair baselines
    backbone = build_model(cfg.model if init_state is not None else standard_init(cfg.model))
    if init_state is not None:
        backbone.load_state_dict(init_state)
    dm = DownstreamModel(backbone, ev.model, len(classes), tuple(ev.modalities), ev.dropout,
                         mel_bins=cfg.data.audio.mel_bins).to(device)
    runtime.set_memory_format(backbone, cfg.runtime, device)
    if ev.protocol == "test":
        load_heads(dm, heads, len(classes), cfg.pretrain.init_checkpoint)
        result = test_only(cfg, ev, dm, task_dir, device)
    elif ev.protocol == "linear":
        result = linear_eval(cfg, ev, dm, task_dir, device, log, features)
    else:
        result = finetune(cfg, ev, dm, task_dir, folder, cfg_hash, device, log)
    entry = {"task": ev.task, "model": ev.model, "init": "pretrained" if init_state is not None else "random",
             "protocol": ev.protocol, "modalities": list(dm.modalities), "split": ev.split,
             "multilabel": ev.multilabel, "num_classes": len(classes), **result,
             "wall_s": round(time.time() - t0, 2)}
    log.write(stage=f"downstream:{ev.name}", event="result", **{k: v for k, v in entry.items() if not isinstance(v, list)})
    return entry
