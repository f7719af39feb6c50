"""Training-step benchmark: throughput, CNN vs transformer time, memory, per sharing scheme and fusion.

    python -m experiments.bench --profile tiny                       # CPU, every sharing scheme, mid fusion
    python -m experiments.bench --profile paper --device cuda --batch-size 4 --amp
    python -m experiments.bench --profile paper --device cuda --max-batch [--activation-checkpointing]

One pretraining step (MEP + CPP, AdamW) on random inputs of the profile's size (the loader is
benchmarked separately by data/bench_loader.py). Reported per configuration:
* clips/s of the whole step, and the step split into CNN forward, transformer + objective forward,
  backward, optimizer; the backward is split into its transformer part (measured with the CNN
  outputs detached) and the CNN rest;
* peak memory: CUDA max allocated on GPU; on CPU the peak RSS of a fresh subprocess per
  configuration (RSS is a process high-water mark);
* parameter, gradient and AdamW-state memory.
Timings are medians over `--steps` after `--warmup` steps. Results: results/bench/<name>.json.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import dataclasses
import json
import statistics
import subprocess
import time

import torch

from common import paths
from common.fsutil import atomic_write_json
from common.provenance import collect
from experiments import runtime
from experiments.config import load_config
from experiments.optim import build_optimizer, decay_groups
from experiments.pretrain import PretrainModule
from model.build import build_model
from model.params import count_params
from model.pretrain_objective import AVPretrainObjective

SHARINGS = ("multi2", "none", "cross_layer", "all", "part")
BASE_CONFIG = "experiments/rq3_sharing/configs/part.yaml"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device, fn):
    _sync(device)
    t = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t


def build(profile: str, sharing: str, fusion: str, overrides: list[str]):
    cfg = load_config(paths.repo_root() / BASE_CONFIG, [f"model.sharing={sharing}", f"model.fusion={fusion}", *overrides], profile)
    return cfg


def inputs(cfg, batch: int, device: torch.device):
    d = cfg.data
    s, t, c = d.segments, d.video.frames_per_segment, d.video.crop
    video = torch.randn(batch, s, 3, t, c, c, device=device)
    audio = torch.randn(batch, s, 1, d.audio.mel_bins, d.audio.mel_frames, device=device)
    return video, audio


def measure(cfg, batch: int, device: torch.device, steps: int, warmup: int, *, amp: bool, act_ckpt: bool,
            channels_last: bool, compile_: bool) -> dict:
    torch.manual_seed(0)
    model = build_model(cfg.model)
    pc = cfg.pretrain
    module = PretrainModule(model, AVPretrainObjective(model, pc.mep, pc.cpp, pc.negatives)).to(device)
    if act_ckpt:
        model.visual_cnn.set_grad_checkpointing(True)
        model.audio_cnn.set_grad_checkpointing(True)
    if channels_last:  # as a run with runtime.channels_last (GPU) / runtime.channels_last_cpu (CPU)
        runtime.set_memory_format(model, dataclasses.replace(cfg.runtime, channels_last=True, channels_last_cpu=True), device)
    opt = build_optimizer(decay_groups(module.named_parameters(), 0.01), pc.optim, device)
    step_fn = torch.compile(module) if compile_ else module
    video, audio = inputs(cfg, batch, device)
    runtime.reset_peak_memory(device)
    rec: dict[str, list[float]] = {k: [] for k in ("step", "cnn_fwd", "rest_fwd", "bwd", "bwd_transformer", "opt")}
    for i in range(warmup + steps):
        # full step, split into phases with syncs (the syncs cost a little; "step" is measured unsplit)
        with runtime.autocast(device, amp):
            _, t_step = _timed(device, lambda: _full_step(step_fn, opt, video, audio))
        with runtime.autocast(device, amp):
            b, s = video.shape[:2]
            (ev, ea), t_cnn = _timed(device, lambda: (model.encode_visual(video.flatten(0, 1)).view(b, s, -1),
                                                      model.encode_audio(audio.flatten(0, 1)).view(b, s, -1)))
            out, t_rest = _timed(device, lambda: _objective_from_embeddings(module, ev, ea))
        _, t_bwd = _timed(device, lambda: out["loss"].backward())
        _, t_opt = _timed(device, lambda: (opt.step(), opt.zero_grad(set_to_none=True)))
        with runtime.autocast(device, amp):
            out_t = _objective_from_embeddings(module, ev.detach(), ea.detach())
        _, t_bwd_t = _timed(device, lambda: out_t["loss"].backward())
        opt.zero_grad(set_to_none=True)
        if i >= warmup:
            for k, v in zip(rec, (t_step, t_cnn, t_rest, t_bwd, t_bwd_t, t_opt)):
                rec[k].append(v)
    med = {k: statistics.median(v) for k, v in rec.items()}
    params = count_params(model)
    n_params = sum(p.numel() for p in module.parameters())
    bytes_per = 4
    result = {
        "sharing": cfg.model.sharing, "fusion": cfg.model.fusion, "batch_clips": batch,
        "segments": cfg.data.segments, "clips_per_s": round(batch / med["step"], 3),
        "step_s": round(med["step"], 4),
        "cnn_forward_s": round(med["cnn_fwd"], 4), "transformer_objective_forward_s": round(med["rest_fwd"], 4),
        "backward_s": round(med["bwd"], 4), "transformer_backward_s": round(med["bwd_transformer"], 4),
        "cnn_backward_s": round(max(0.0, med["bwd"] - med["bwd_transformer"]), 4), "optimizer_s": round(med["opt"], 4),
        "params": params, "trainable_params_incl_heads": n_params,
        "param_mb": round(n_params * bytes_per / 2**20, 1), "grad_mb": round(n_params * bytes_per / 2**20, 1),
        "adamw_state_mb": round(2 * n_params * bytes_per / 2**20, 1),
    }
    if device.type == "cuda":
        result["peak_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return result


def _full_step(step_fn, opt, video, audio):
    out = step_fn(video, audio)
    out["loss"].backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def _objective_from_embeddings(module, ev, ea):
    return module.objective.from_embeddings(module.model, ev, ea)


def fits(cfg, batch, device, args) -> bool:
    try:
        measure(cfg, batch, device, 1, 1, amp=args.amp, act_ckpt=args.activation_checkpointing,
                channels_last=args.channels_last, compile_=False)
        return True
    except torch.OutOfMemoryError:
        return False
    finally:
        torch.cuda.empty_cache()


def max_batch(cfg, device, args) -> int:
    """Largest per-GPU batch (clips) that fits: doubling, then bisection."""
    lo, hi = 0, 1
    while fits(cfg, hi, device, args):
        lo, hi = hi, hi * 2
        if hi > 4096:
            return lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(cfg, mid, device, args) else (lo, mid)
    return lo


def run_one(args, sharing: str, fusion: str) -> dict:
    device = torch.device(args.device)
    cfg = build(args.profile, sharing, fusion, args.overrides)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    batch = args.batch_size or cfg.pretrain.batch_size
    res = measure(cfg, batch, device, args.steps, args.warmup, amp=args.amp, act_ckpt=args.activation_checkpointing,
                  channels_last=args.channels_last, compile_=args.compile)
    if args.max_batch and device.type == "cuda":
        res["max_batch_clips"] = max_batch(cfg, device, args)
    if device.type == "cpu":
        res["peak_memory_mb"] = round(runtime.peak_memory_mb(device), 1)
    return res


def table(rows: list[dict]) -> str:
    head = ("| sharing | fusion | batch | clips/s | step s | CNN fwd | transf.+obj fwd | CNN bwd | transf. bwd | optim | "
            "transformer params | peak MB |")
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        lines.append(f"| {r['sharing']} | {r['fusion']} | {r['batch_clips']} | {r['clips_per_s']:.2f} | {r['step_s']:.3f} | "
                     f"{r['cnn_forward_s']:.3f} | {r['transformer_objective_forward_s']:.3f} | {r['cnn_backward_s']:.3f} | "
                     f"{r['transformer_backward_s']:.3f} | {r['optimizer_s']:.3f} | {r['params']['transformer']:,} | "
                     f"{r.get('peak_memory_mb', float('nan')):.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="tiny", choices=("tiny", "paper", "smoke"))
    ap.add_argument("--sharing", default=",".join(SHARINGS))
    ap.add_argument("--fusion", default="mid")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=0, help="clips per step (default: the profile's)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--amp", action="store_true", help="bf16 autocast (GPU)")
    ap.add_argument("--channels-last", action="store_true",
                    help="channels-last CNNs: the visual CNN on GPU, both CNNs on CPU (runtime.channels_last[_cpu])")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--activation-checkpointing", action="store_true")
    ap.add_argument("--max-batch", action="store_true", help="also search the largest batch that fits (GPU)")
    ap.add_argument("--num-threads", type=int, default=0)
    ap.add_argument("--name", default="", help="output name (default: <profile>_<device>)")
    ap.add_argument("--out-dir", default="results/bench")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # internal: one config, JSON to stdout
    ap.add_argument("overrides", nargs="*", help="config overrides, e.g. data.segments=4")
    args = ap.parse_args(argv)
    sharings, fusions = args.sharing.split(","), args.fusion.split(",")
    if args.one:
        print(json.dumps(run_one(args, sharings[0], fusions[0])))
        return 0
    rows = []
    for fusion in fusions:
        for sharing in sharings:
            if args.device == "cpu":  # fresh process per config so peak RSS is that config's
                cmd = [sys.executable, "-m", "experiments.bench", "--one", *_forward(argv or sys.argv[1:]),
                       "--sharing", sharing, "--fusion", fusion]
                out = subprocess.run(cmd, cwd=paths.repo_root(), capture_output=True, text=True, check=False)
                if out.returncode:
                    raise SystemExit(f"benchmark of {sharing}/{fusion} failed:\n{out.stderr[-3000:]}")
                row = json.loads(out.stdout.strip().splitlines()[-1])
            else:
                row = run_one(args, sharing, fusion)
            rows.append(row)
            print(f"{fusion}/{sharing}: {row['clips_per_s']:.2f} clips/s", file=sys.stderr)
    report = {"command": " ".join(["python -m experiments.bench", *(argv or sys.argv[1:])]),
              "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(0),
              "amp": args.amp, "activation_checkpointing": args.activation_checkpointing,
              "channels_last": args.channels_last, "compile": args.compile,
              "provenance": collect(0), "rows": rows}
    name = args.name or f"{args.profile}_{args.device}"
    out_path = paths.resolve(args.out_dir) / f"{name}.json"
    atomic_write_json(out_path, report)
    print(table(rows))
    print(f"\nwrote {out_path}")
    return 0


def _forward(argv: list[str]) -> list[str]:
    """argv without --sharing/--fusion/--name/--out-dir (set per subprocess)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--sharing", "--fusion", "--name", "--out-dir"):
            skip = True
            continue
        if a.startswith(("--sharing=", "--fusion=", "--name=", "--out-dir=")):
            continue
        out.append(a)
    return out


if __name__ == "__main__":
    sys.exit(main())
