"""End-to-end pretraining (MEP + CPP): CNNs and transformers learn together from scratch.

One optimizer step = `accum_steps` micro-batches of `batch_size` clips per rank. An epoch is a fixed
`steps_per_epoch` optimizer steps on every rank (the loader guarantees equal batch counts), so
resuming needs only (epoch, micro-batches consumed in it). `last.pt` is written every
`checkpoint_every` steps, when a stop is requested (SIGUSR1/SIGTERM, at the next step boundary or
during a wait for data), and from submitit's checkpoint() between steps; experiments.resumable keeps
what is saved consistent.
"""
from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

from data import pipeline  # loaders looked up per call (pipeline.make_*): the resume tests wrap them
from data.pipeline import model_inputs, report_skipped, resolve_folder
from data.shards import read_manifest
from experiments import runtime
from experiments.config import RunConfig
from experiments.optim import build_optimizer, build_scheduler, cnn_split_groups
from experiments.resumable import ResumableLoop
from model.pretrain_objective import AVPretrainObjective

STAGE = "pretrain"


class PretrainModule(torch.nn.Module):
    """Model + objective heads as one module, so DDP sees every trainable parameter."""

    def __init__(self, model: torch.nn.Module, objective: torch.nn.Module):
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> dict:
        return self.objective(self.model, video, audio)


def _freeze_cnns(model: torch.nn.Module) -> None:
    for cnn in (model.visual_cnn, model.audio_cnn):
        cnn.eval()
        for p in cnn.parameters():
            p.requires_grad_(False)


@torch.no_grad()
def heldout_metrics(cfg: RunConfig, module: PretrainModule, data_root: Path, device: torch.device, epoch: int) -> dict:
    """CPP accuracy and MEP top-1 (masked segment vs the clip's other segments, chance 1/S) on the
    held-out pretraining clips, in eval mode, with RNGs of their own (the training RNG is untouched)."""
    pc = cfg.pretrain
    folder = resolve_folder(data_root / pc.heldout_dataset)
    n = read_manifest(folder)["total"]
    loader = pipeline.make_pretrain_loader(cfg.data, folder, batch_size=pc.batch_size,
                                  batches_per_epoch=max(1, n // pc.batch_size), seed=cfg.seed, epoch=0,
                                  pin_memory=device.type == "cuda")
    g = torch.Generator(device=device).manual_seed(cfg.seed + 7919 * (epoch + 1))
    was_training = module.training
    module.eval()
    sums: dict[str, float] = {}
    batches = 0
    try:
        for batch in runtime.rng_neutral(loader):
            with runtime.autocast(device, cfg.runtime.amp):
                out = module.objective(module.model, *model_inputs(batch, cfg.data.video, device), g, heldout=True)
            for k in ("cpp_acc", "mep_acc"):
                sums[k] = sums.get(k, 0.0) + float(out[k])
            batches += 1
    finally:
        module.train(was_training)
        if pc.freeze_cnn:
            _freeze_cnns(module.model)
    return {"heldout_cpp_acc": round(sums["cpp_acc"] / batches, 4), "heldout_mep_top1": round(sums["mep_acc"] / batches, 4),
            "heldout_mep_chance": round(1.0 / cfg.data.segments, 4), "heldout_clips": batches * pc.batch_size}


def pretrain(cfg: RunConfig, model: torch.nn.Module, data_root: Path, folder: Path, cfg_hash: str,
             env, device: torch.device, log) -> dict:
    pc = cfg.pretrain
    objective = AVPretrainObjective(model, pc.mep, pc.cpp, pc.negatives)
    module = PretrainModule(model, objective).to(device)
    if pc.freeze_cnn:
        _freeze_cnns(model)
    if cfg.runtime.activation_checkpointing:
        for cnn in (model.visual_cnn, model.audio_cnn):
            cnn.set_grad_checkpointing(True)
    runtime.set_memory_format(model, cfg.runtime, device)
    groups = cnn_split_groups(module.named_parameters(), pc.optim, ("model.visual_cnn.", "model.audio_cnn."))
    opt = build_optimizer(groups, pc.optim, device)
    total_steps = pc.total_steps
    sched = build_scheduler(opt, pc.optim, total_steps)

    # position: data (epoch, micro-batches consumed in it), optimizer step, the logging window in
    # progress (sums of the per-step losses since the last log line, so a window that spans a stop
    # averages the same steps as without the stop) and the last logged / held-out values
    loop = ResumableLoop(folder, STAGE, cfg_hash, {"module": module, "optimizer": opt, "scheduler": sched},
                         {"step": 0, "epoch": 0, "micro": 0, "wall_s": 0.0, "last": {},
                          "window": {"steps": 0, "sums": {}}}, log=log, rank=env.rank, world_size=env.world_size)
    if loop.resume(map_location=device):
        log.write(stage=STAGE, event="resumed", **{k: v for k, v in loop.position.items() if k != "window"})
    pos = loop.position
    window = pos.setdefault("window", {"steps": 0, "sums": {}})  # a last.pt from before the window moved here
    window["sums"] = {k: torch.tensor(float(v), dtype=torch.float32, device=device) for k, v in window["sums"].items()}

    train_module = module
    if env.world_size > 1:
        train_module = torch.nn.parallel.DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
    if cfg.runtime.compile:
        train_module = torch.compile(train_module)

    accum = pc.optim.accum_steps
    clips_per_step = pc.batch_size * accum * env.world_size
    bar = tqdm(total=total_steps, initial=pos["step"], desc=f"pretrain {cfg.rq}/{cfg.name}", unit="step",
               disable=env.rank != 0, dynamic_ncols=True)
    t_last = time.time()
    t_stage = time.time() - pos["wall_s"]
    module.train()
    if pc.freeze_cnn:
        _freeze_cnns(model)
    with loop:
        try:
            while pos["epoch"] < pc.epochs:
                loader = pipeline.make_pretrain_loader(
                    cfg.data, data_root / pc.dataset, batch_size=pc.batch_size,
                    batches_per_epoch=pc.steps_per_epoch * accum, rank=env.rank, world_size=env.world_size,
                    seed=cfg.seed, epoch=pos["epoch"], skip_batches=pos["micro"], pin_memory=device.type == "cuda")
                for batch in loop.batches(loader):  # no RNG draw at the (resumed) epoch start
                    if pos["micro"] % accum == 0:
                        loop.begin_step()  # until the optimizer step, the live state is between steps
                    video, audio = model_inputs(batch, cfg.data.video, device)
                    if cfg.runtime.channels_last and device.type == "cuda":
                        video = video.contiguous(memory_format=torch.contiguous_format)
                    last_micro = (pos["micro"] + 1) % accum == 0
                    sync = contextlib.nullcontext() if last_micro or env.world_size == 1 else train_module.no_sync()
                    with sync, runtime.autocast(device, cfg.runtime.amp):
                        out = train_module(video, audio)
                        loss = out["loss"] / accum
                    loss.backward()
                    sums = window["sums"]
                    for k, v in out.items():  # detached device scalars: no host sync per step
                        sums[k] = sums.get(k, 0.0) + v.detach().float() / accum
                    pos["micro"] += 1
                    if not last_micro:
                        continue
                    if pc.optim.grad_clip > 0:
                        torch.nn.utils.clip_grad_norm_(module.parameters(), pc.optim.grad_clip)
                    opt.step()
                    sched.step()
                    opt.zero_grad(set_to_none=True)
                    pos["step"] += 1
                    pos["wall_s"] = time.time() - t_stage
                    window["steps"] += 1
                    bar.update(1)
                    if pos["step"] % cfg.runtime.log_every == 0 or pos["step"] == total_steps:
                        n = window["steps"]
                        vals = {k: float(v) / n for k, v in window["sums"].items()}  # one sync per log line
                        if not all(math.isfinite(v) for v in vals.values()):
                            raise FloatingPointError(f"non-finite pretraining loss at step {pos['step']}: {vals}")
                        dt = time.time() - t_last
                        rate = clips_per_step * n / max(dt, 1e-9)
                        log.write(stage=STAGE, step=pos["step"], epoch=pos["epoch"], lr=sched.get_last_lr()[0],
                                  clips_per_s=round(rate, 2), **{k: round(v, 5) for k, v in vals.items()})
                        bar.set_postfix(loss=f"{vals['loss']:.3f}", clips_s=f"{rate:.1f}")
                        pos["last"] = {k: round(v, 5) for k, v in vals.items()}
                        window["sums"], window["steps"], t_last = {}, 0, time.time()
                    loop.end_step()  # the step is complete (position, logging window): what last.pt saves
                    loop.stop_if_requested(f"pretraining step {pos['step']}")
                    if pos["step"] % pc.checkpoint_every == 0:
                        loop.save()
                # held-out metrics change no training state (eval mode, own RNGs): computed between
                # steps, so a checkpoint signal during a long pass is saved at once (and the pass redone)
                heldout = None
                if pc.heldout_dataset and env.rank == 0:
                    heldout = heldout_metrics(cfg, module, data_root, device, pos["epoch"])
                with loop.step():  # epoch end: its log lines, next epoch
                    if heldout is not None:
                        pos["heldout"] = heldout
                        log.write(stage=STAGE, event="heldout", epoch=pos["epoch"], step=pos["step"], **heldout)
                    report_skipped(log, stage=STAGE, epoch=pos["epoch"])
                    pos["epoch"] += 1
                    pos["micro"] = 0
        finally:
            bar.close()
        loop.save()
    # losses are the averages over the last logging window
    return {"steps": pos["step"], "wall_s": round(time.time() - t_stage, 2),
            "clips_seen": pos["step"] * clips_per_step, **pos["last"], **pos.get("heldout", {})}
