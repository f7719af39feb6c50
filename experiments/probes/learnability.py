"""Can the objectives learn at all? Train the configured transformer stack on oracle segment embeddings.

`python -m experiments.probes.learnability [--config C] [--steps N] [key=value ...]`

Why: a pretraining run on real clips that ends at chance cannot say whether the CNNs, the data, the
objective or the optimiser is at fault. Here the CNNs are replaced by an oracle: each segment's
embedding is a fixed random vector of its signature (visual and audio separately) plus a per-event
component from a latent shared by both modalities (what the generator's coupled size / brightness and
loudness / pitch give, `event_coupling`) plus a per-clip component (what a background or a hum adds
to every segment of a clip) plus per-segment noise, with the event timelines of the real pretraining
corpus (data/synthetic/scenes.py). Everything after the CNNs is the run's own: model config (fusion,
sharing, sizes), MEP / CPP / negatives config, optimiser, LR split, warm-up and schedule, batch size
and step count (default: the config's pretraining steps).

Held-out metrics (fresh oracle clips, eval mode): CPP accuracy (chance 0.5) and MEP top-1 of the masked
segment against every other segment of its clip (chance 1/S; the sampler-independent form of
`AVPretrainObjective.from_embeddings(heldout=True)`; the mean over the MEP streams, each stream's on the
line before). The last two lines printed are those two. `--batch-form` adds, before them, MEP top-1
against the other clips' masked segments of a training-size batch (the issue's first measurement,
chance 1/B with one masked segment per clip) beside what copying the mean of the clip's visible
segments scores on the same candidates (no learning): why that form is not the bar.
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from data.synthetic.scenes import sample_scene
from data.synthetic.spec import preset
from experiments.config import load_config
from experiments.optim import build_optimizer, build_scheduler, decay_groups, optimizer_step
from model.build import build_model
from model.mep import mask_positions, mask_to_positions, masked_count
from model.negatives import flat_positions
from model.pretrain_objective import HELDOUT_NEGATIVES, AVPretrainObjective

DEFAULT_CONFIG = "experiments/rq1_end_to_end/configs/end_to_end.yaml"


def segment_signatures(n_clips: int, cfg, seed: int, types_per_clip: int | None = None) -> np.ndarray:
    """[n, S, 2] (visual, audio) signature per segment, from the synthetic generator's pretraining scenes
    (its `types_per_clip`, or the one given: k distinct types per clip, each on S / k segments)."""
    spec = preset("tiny")
    if types_per_clip is not None:
        spec = dataclasses.replace(spec, types_per_clip=types_per_clip)
    seg_s = cfg.data.video.frames_per_segment / cfg.data.video.fps
    s = cfg.data.segments
    out = np.zeros((n_clips, s, 2), dtype=np.int64)
    for i in range(n_clips):
        rng = np.random.default_rng([seed, 0x0AC1E, i])
        scene = sample_scene("pretrain", None, s * seg_s, seg_s, rng, spec)
        for k, ev in enumerate(scene.events[:s]):
            out[i, k] = (ev.vis, ev.aud)
    return out


class Oracle:
    """x_m = E_m[signature] + event_scale * z_event A_m + clip_scale * c_clip + noise * eps per modality
    m, with z_event ~ N(0, I_2) one latent per segment shared by both modalities (A_m: fixed random maps,
    2 dimensions like the generator's two coupled factors; event_scale 0: no per-event agreement)."""

    EVENT_DIMS = 2

    def __init__(self, dims: dict[str, int], seed: int, clip_scale: float, noise: float, event_scale: float = 1.0):
        g = torch.Generator().manual_seed(seed)
        self.table = {m: torch.randn(8, d, generator=g) for m, d in dims.items()}
        self.maps = {m: torch.randn(self.EVENT_DIMS, d, generator=g) / self.EVENT_DIMS ** 0.5 for m, d in dims.items()}
        self.clip_scale, self.noise, self.event_scale = clip_scale, noise, event_scale

    def __call__(self, sigs: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.randn(*sigs.shape[:2], self.EVENT_DIMS, generator=g)
        out = []
        for j, (m, table) in enumerate(self.table.items()):
            x = table[sigs[..., j]] + self.event_scale * z @ self.maps[m]
            clip = torch.randn(x.shape[0], 1, x.shape[2], generator=g)
            x = x + self.clip_scale * clip + self.noise * torch.randn(x.shape, generator=g)
            out.append(x)
        return out[0], out[1]


@torch.no_grad()
def heldout_metrics(model, objective, oracle: Oracle, sigs: torch.Tensor, batch: int, seed: int,
                    form: str = "clip") -> dict:
    model.eval()
    objective.eval()
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(0, sigs.shape[0], batch):
        ev, ea = oracle(sigs[i:i + batch], g)
        out = objective.from_embeddings(model, ev, ea, g, heldout=form)
        rows.append({k: float(v) for k, v in out.items() if k == "cpp_acc" or k.startswith("mep_acc")})
    model.train()
    objective.train()
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    streams = {k.removeprefix("mep_acc_"): v for k, v in mean.items() if k.startswith("mep_acc_")}
    return {"cpp_acc": mean["cpp_acc"], "mep_top1": mean["mep_acc"], "mep_top1_streams": streams}


def heldout_by_pairing(model, objective, oracle: Oracle, sigs: torch.Tensor, batch: int, seed: int) -> dict:
    """Held-out MEP top-1 per stream with every clip's own audio ("paired") and with every clip's audio
    swapped for another's ("swapped"), as CPP's negatives have it. Why: the multimodal stream can read a
    masked segment's per-event latent off the other modality only in the paired clips, so the mean over
    streams at the configured CPP fraction mixes two regimes."""
    cfg = objective.cpp_cfg
    out = {}
    try:
        for name, fraction in (("paired", 0.0), ("swapped", 1.0)):
            objective.cpp_cfg = dataclasses.replace(cfg, fraction=fraction)
            out[name] = heldout_metrics(model, objective, oracle, sigs, batch, seed)["mep_top1_streams"]
    finally:
        objective.cpp_cfg = cfg
    return out


@torch.no_grad()
def clip_mean_top1(oracle: Oracle, sigs: torch.Tensor, batch: int, seed: int, mask_ratio: float, form: str) -> float:
    """MEP top-1 of a predictor that learns nothing: the cosine of each candidate with the mean of the
    clip's visible segments, masks as the objective draws them, both modalities averaged."""
    g = torch.Generator().manual_seed(seed)
    accs = []
    for i in range(0, sigs.shape[0], batch):
        for x in oracle(sigs[i:i + batch], g):
            b, s, _ = x.shape
            mask = mask_positions(b, s, mask_ratio, g)
            pos = mask_to_positions(mask, masked_count(s, mask_ratio))
            visible = (~mask).unsqueeze(-1).to(x.dtype)
            pred = torch.nn.functional.normalize((x * visible).sum(1) / visible.sum(1), dim=-1)[pos[:, 0]]
            cand = torch.cat([flat_positions(pos, s)[:, None], HELDOUT_NEGATIVES[form](pos, s)], 1)
            scores = (pred[:, None] * torch.nn.functional.normalize(x.reshape(b * s, -1), dim=-1)[cand]).sum(-1)
            accs.append(float((scores.argmax(1) == 0).float().mean()))
    return float(np.mean(accs))


def run(cfg, steps: int, seed: int, clip_scale: float = 0.5, noise: float = 0.5, heldout_clips: int = 512,
        log_every: int = 0, event_scale: float = 1.0, types_per_clip: int | None = None,
        by_pairing: bool = False, batch_form: bool = False) -> dict:
    """Train cfg's transformer stack on oracle embeddings; returns held-out metrics and timings."""
    torch.manual_seed(seed)
    pc = cfg.pretrain
    model = build_model(cfg.model)
    objective = AVPretrainObjective(model, pc.mep, pc.cpp, pc.negatives)
    module = torch.nn.ModuleDict({"model": model, "objective": objective})
    # no CNNs here: every trained parameter is on the non-CNN side of the run's LR split
    named = [(n, p) for n, p in module.named_parameters() if not n.startswith(("model.visual_cnn.", "model.audio_cnn."))]
    groups = decay_groups(named, pc.optim.weight_decay, pc.optim.lr * pc.optim.transformer_lr_scale)
    opt = build_optimizer(groups, pc.optim, torch.device("cpu"))
    sched = build_scheduler(opt, pc.optim, steps)
    oracle = Oracle({"visual": model.visual_dim, "audio": model.audio_dim}, seed, clip_scale, noise, event_scale)
    b = pc.batch_size
    train_sigs = torch.from_numpy(segment_signatures(steps * b, cfg, seed, types_per_clip))
    test_sigs = torch.from_numpy(segment_signatures(heldout_clips, cfg, seed + 10_000, types_per_clip))
    g = torch.Generator().manual_seed(seed + 1)
    t0 = time.time()
    model.train()
    for step in range(steps):
        ev, ea = oracle(train_sigs[step * b:(step + 1) * b], g)
        out = objective.from_embeddings(model, ev, ea, g)
        optimizer_step(out["loss"], module, opt, sched, pc.optim.grad_clip)
        if log_every and (step + 1) % log_every == 0:
            print(f"step {step + 1}: loss {float(out['loss'].detach()):.3f} cpp_acc {float(out['cpp_acc']):.2f} "
                  f"mep_acc {float(out['mep_acc']):.2f}", flush=True)
    train_s = time.time() - t0
    res = heldout_metrics(model, objective, oracle, test_sigs, 64, seed + 2)
    if by_pairing and objective.cpp_head is not None:
        res["mep_top1_by_pairing"] = heldout_by_pairing(model, objective, oracle, test_sigs, 64, seed + 2)
    if batch_form and objective.streams:
        res["mep_batch_form"] = {
            "batch": b, "chance": 1.0 / (1 + (b - 1) * masked_count(cfg.data.segments, pc.mep.mask_ratio)),
            "top1": heldout_metrics(model, objective, oracle, test_sigs, b, seed + 2, form="batch")["mep_top1"],
            "clip_mean_top1": clip_mean_top1(oracle, test_sigs, b, seed + 2, pc.mep.mask_ratio, "batch")}
    return {**res, "mep_chance": 1.0 / cfg.data.segments, "steps": steps, "batch_size": b, "train_s": round(train_s, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.probes.learnability", description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=DEFAULT_CONFIG, help=f"run config whose stack is trained (default {DEFAULT_CONFIG})")
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the config's pretraining steps)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clip-scale", type=float, default=0.5, help="per-clip component of the oracle embeddings")
    ap.add_argument("--noise", type=float, default=0.5, help="per-segment noise of the oracle embeddings")
    ap.add_argument("--event-scale", type=float, default=1.0,
                    help="per-event component shared by both modalities (0: none, the coupling-off control)")
    ap.add_argument("--types-per-clip", type=int, default=None,
                    help="distinct bound types per clip, each on S / k segments (default: the generator's, 7 since v9)")
    ap.add_argument("--heldout-clips", type=int, default=512)
    ap.add_argument("--by-pairing", action="store_true",
                    help="also print held-out MEP per stream on clips with their own audio and with swapped audio")
    ap.add_argument("--batch-form", action="store_true",
                    help="also print held-out MEP against the other clips' masked segments, and what copying "
                         "the clip's mean scores there")
    ap.add_argument("--log-every", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: the small tensors of this loop run faster on one thread than on two, "
                         "with the same metrics; README \"Performance\")")
    ap.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. pretrain.optim.lr=3e-4")
    args = ap.parse_args(argv)
    cfg = load_config(args.config, args.overrides, profile=args.profile)
    steps = args.steps if args.steps is not None else cfg.pretrain.total_steps
    if steps < 1 or args.heldout_clips < 1 or args.threads < 1:
        ap.error("--steps, --heldout-clips and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    if args.types_per_clip is not None:  # the generator's spec checks its own bounds
        try:
            dataclasses.replace(preset("tiny"), types_per_clip=args.types_per_clip)
        except ValueError as e:
            ap.error(f"--types-per-clip: {e}")
    t0 = time.time()
    res = run(cfg, steps, args.seed, args.clip_scale, args.noise, args.heldout_clips, args.log_every, args.event_scale,
              args.types_per_clip, args.by_pairing, args.batch_form)
    print(f"{cfg.model.fusion} fusion, {cfg.model.sharing} sharing, {cfg.pretrain.negatives.sampler} negatives, "
          f"lr {cfg.pretrain.optim.lr:g} x transformer_lr_scale {cfg.pretrain.optim.transformer_lr_scale:g}, "
          f"{steps} steps x {res['batch_size']} clips, {time.time() - t0:.1f} s")
    for name, streams in res.get("mep_top1_by_pairing", {}).items():
        print(f"heldout MEP top-1 per stream, {name} audio: " + ", ".join(f"{k} {v:.3f}" for k, v in streams.items()))
    if "mep_batch_form" in res:
        bf = res["mep_batch_form"]
        print(f"heldout MEP top-1 against the other clips' masked segments (batch {bf['batch']}, chance "
              f"{bf['chance']:.3f}): {bf['top1']:.3f} ({bf['top1'] / bf['chance']:.1f}x); copying the clip's "
              f"mean, no learning: {bf['clip_mean_top1']:.3f} ({bf['clip_mean_top1'] / bf['chance']:.1f}x)")
    if len(res["mep_top1_streams"]) > 1:
        print("heldout MEP top-1 per stream: " + ", ".join(f"{k} {v:.3f}" for k, v in res["mep_top1_streams"].items()))
    print(f"heldout CPP accuracy {res['cpp_acc']:.3f} (chance 0.500)")
    print(f"heldout MEP top-1 {res['mep_top1']:.3f} (chance {res['mep_chance']:.3f}, "
          f"{res['mep_top1'] / res['mep_chance']:.1f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
