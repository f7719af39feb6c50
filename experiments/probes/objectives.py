"""Do the objectives learn on real clips? Pretrain the configured model on clips decoded once, in minutes.

`python -m experiments.probes.objectives [--config C] [--root DIR] [--steps N] [--freeze-cnns] [key=value ...]`

Why: a pretraining run (experiments/run.py) decodes every clip again in every epoch (0.46 s per tiny
step on 2 cores here, 1 s on a slower machine), and a run that ends at chance cannot say whether the
CNNs, the renders or the transformer side is at fault. Here the pretraining and held-out clips are
decoded once (the training loader's augmentation, drawn once per clip, not per epoch as in a run),
then the run's own model, objective, optimiser, LR split, warm-up and schedule train on random
batches of them (0.25-0.3 s per tiny step), from `pretrain.init_checkpoint` when set, as in a run.
Every `--log-every` steps it prints the training losses and the held-out CPP accuracy (chance 0.5)
and MEP top-1 against the clip's other segments (chance 1/S), as the run's per-epoch held-out
metrics; the last two lines are the final held-out values. `--freeze-cnns` keeps the CNNs at their
initialisation (standard init, or the init checkpoint's): what the transformer side can learn from
those embeddings.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from common import paths
from data.synthetic import ensure_synthetic
from experiments.config import load_config
from experiments.optim import build_optimizer, build_scheduler, cnn_split_groups, optimizer_step
from experiments.pretrain import PretrainModule, _freeze_cnns
from experiments.probes.segments import decode
from experiments.stages import load_init_file
from model.build import build_model
from model.config import standard_init
from model.pretrain_objective import AVPretrainObjective

DEFAULT_CONFIG = "experiments/rq1_end_to_end/configs/end_to_end.yaml"


def decode_once(cfg, folder: Path, clips: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(video [N,S,3,T,H,W], audio [N,S,1,F,Tm]) of the first `clips` clips the pretraining loader yields."""
    d = decode(cfg, folder, clips, seed)
    return d["video"], d["audio"]


@torch.no_grad()
def heldout(module, video: torch.Tensor, audio: torch.Tensor, seed: int, freeze: bool, batch: int = 32) -> dict:
    module.eval()
    g = torch.Generator().manual_seed(seed)
    cpp, mep = [], []
    for i in range(0, len(video), batch):
        out = module.objective(module.model, video[i:i + batch], audio[i:i + batch], g, heldout=True)
        cpp.append(float(out["cpp_acc"]))
        mep.append(float(out["mep_acc"]))
    module.train()
    if freeze:
        _freeze_cnns(module.model)
    return {"cpp_acc": sum(cpp) / len(cpp), "mep_top1": sum(mep) / len(mep)}


def train(cfg, data: dict, steps: int, freeze: bool, log_every: int, seed: int, log=print) -> dict:
    """Train on the decoded clips; returns the final held-out metrics and the training time."""
    pc = cfg.pretrain
    torch.manual_seed(seed)
    # as a run builds it: frozen CNNs get the standard init, pretrain.init_checkpoint's weights go on top
    model = build_model(standard_init(cfg.model) if freeze else cfg.model)
    init = load_init_file(pc.init_checkpoint)
    if init is not None:
        model.load_state_dict(init["model"])
    module = PretrainModule(model, AVPretrainObjective(model, pc.mep, pc.cpp, pc.negatives))
    groups = cnn_split_groups(module.named_parameters(), pc.optim, ("model.visual_cnn.", "model.audio_cnn."))
    opt = build_optimizer(groups, pc.optim, torch.device("cpu"))
    sched = build_scheduler(opt, pc.optim, steps)
    module.train()
    if freeze:
        _freeze_cnns(model)
    g = torch.Generator().manual_seed(seed + 1)
    video, audio = data["train"]
    sums: dict[str, float] = {}
    t0 = time.time()
    res = {}
    for step in range(1, steps + 1):
        ix = torch.randint(0, len(video), (pc.batch_size,), generator=g)
        out = module(video[ix], audio[ix])
        optimizer_step(out["loss"], module, opt, sched, pc.optim.grad_clip)
        for k in ("loss", "cpp", "mep", "cpp_acc", "mep_acc"):
            sums[k] = sums.get(k, 0.0) + float(out[k].detach())
        if step % log_every == 0 or step == steps:
            n = log_every if step % log_every == 0 else step % log_every
            res = heldout(module, *data["heldout"], seed + 2, freeze)
            log(f"step {step}/{steps} ({time.time() - t0:.0f} s): train " + " ".join(f"{k} {v / n:.3f}" for k, v in sums.items())
                + f" | held-out CPP {res['cpp_acc']:.3f} MEP top-1 {res['mep_top1']:.3f}")
            sums = {}
    return {**res, "train_s": round(time.time() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.probes.objectives", description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=DEFAULT_CONFIG, help=f"run config (default {DEFAULT_CONFIG})")
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--root", help="benchmark root with pretrain/ and the held-out split (default: the config's data.root)")
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the config's pretraining steps)")
    ap.add_argument("--clips", type=int, default=2048, help="pretraining clips decoded (default 2048)")
    ap.add_argument("--heldout-clips", type=int, default=256)
    ap.add_argument("--freeze-cnns", action="store_true", help="keep the CNNs at their initialisation")
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. pretrain.cpp.weight=2")
    args = ap.parse_args(argv)
    cfg = load_config(args.config, args.overrides, profile=args.profile)
    steps = args.steps if args.steps is not None else cfg.pretrain.total_steps
    if steps < 1 or args.clips < 16 or args.heldout_clips < 16 or args.log_every < 1:
        ap.error("--steps and --log-every must be >= 1, --clips and --heldout-clips >= 16")
    if not cfg.pretrain.heldout_dataset:
        ap.error(f"{args.config}: pretrain.heldout_dataset is empty; the held-out metrics need one")
    root = Path(args.root) if args.root else paths.resolve(cfg.data.root)
    if not args.root and cfg.data.synthetic:
        ensure_synthetic(root, cfg.data, seed=0)  # as runs do: generated on first use
    for name in (cfg.pretrain.dataset, cfg.pretrain.heldout_dataset):
        if not (root / name).is_dir():
            ap.error(f"{root / name} does not exist (--root must hold {cfg.pretrain.dataset}/ and {cfg.pretrain.heldout_dataset}/)")
    torch.set_num_threads(args.threads)
    t0 = time.time()
    data = {"train": decode_once(cfg, root / cfg.pretrain.dataset, args.clips, cfg.seed),
            "heldout": decode_once(cfg, root / cfg.pretrain.heldout_dataset, args.heldout_clips, cfg.seed)}
    print(f"decoded {len(data['train'][0])} + {len(data['heldout'][0])} clips from {root} in {time.time() - t0:.0f} s", flush=True)
    res = train(cfg, data, steps, args.freeze_cnns, args.log_every, args.seed, log=lambda s: print(s, flush=True))
    print(f"{cfg.model.fusion} fusion, {cfg.model.sharing} sharing, {cfg.pretrain.negatives.sampler} negatives, "
          f"embedding_norm {cfg.model.embedding_norm}, CNNs {'frozen' if args.freeze_cnns else 'trained'}, "
          f"{steps} steps x {cfg.pretrain.batch_size} clips, {res['train_s']} s")
    print(f"heldout CPP accuracy {res['cpp_acc']:.3f} (chance 0.500)")
    print(f"heldout MEP top-1 {res['mep_top1']:.3f} (chance {1.0 / cfg.data.segments:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
