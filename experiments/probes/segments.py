"""What do the CNN segment embeddings encode? Event type, the per-event latent, or the clip?

`python -m experiments.probes.segments [--checkpoint FILE ...] [--supervised-steps N] [--out JSON]`

Why: a pretraining run whose held-out CPP / MEP stay at chance cannot say whether the CNNs never saw
the events or learnt something else. On the synthetic corpus every segment of a stored pretraining
clip is one event whose type and latent (size, brightness, loudness, pitch) are known: the generator's
scene draws are replayed (`data.synthetic.generate.clip_scene`). Each row embeds the pretraining clips
with one set of CNNs and scores, on held-out clips (`pretrain_val`):
* type: a z-scored linear softmax probe of the event type (8, chance 0.125) per segment and modality;
* latent R^2: a ridge probe of the two coupled latent factors (visual: radius, brightness; audio:
  loudness in dB, pitch);
* clip share: the fraction of embedding variance that lies between clips (background, hum: nuisances).
Rows: the hand-crafted features (model/handcrafted.py), the CNNs at the standard init and at the
released init (`zero_init_final_bn`), every `--checkpoint` (a run's checkpoints/pretrained.pt), and
with `--supervised-steps N` the standard-init CNNs trained on the segment types (the ceiling of the
CNNs on this corpus). Probes fit on `--train-clips` pretraining clips, score all held-out clips.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common import paths
from common.fsutil import atomic_write_json
from data.pipeline import make_pretrain_loader, resolve_folder
from data.shards import read_manifest
from data.synthetic import ensure_synthetic
from data.synthetic.generate import clip_scene
from data.synthetic.spec import SyntheticSpec
from experiments.config import load_config
from experiments.stages import load_init_file
from model import handcrafted
from model.build import build_model
from model.config import standard_init

DEFAULT_CONFIG = "experiments/rq1_end_to_end/configs/end_to_end.yaml"
LATENTS = {"visual": ("radius", "brightness"), "audio": ("loudness_db", "pitch")}


def decode(cfg, folder: Path, clips: int, seed: int) -> dict:
    """{video, audio, split, index} of the first `clips` clips the pretraining loader yields."""
    loader = make_pretrain_loader(cfg.data, folder, batch_size=16, batches_per_epoch=max(1, clips // 16), seed=seed)
    vs, aus, keys = [], [], []
    for b in loader:
        video, audio = loader.model_inputs(b)
        vs.append(video)
        aus.append(audio)
        keys += b["key"]
    split = [k.rsplit("_", 2)[-2] for k in keys]  # ids are <task>_<split>_<index>
    return {"video": torch.cat(vs), "audio": torch.cat(aus), "split": split, "index": [int(k.rsplit("_", 1)[1]) for k in keys]}


def segment_truth(root: Path, clips: dict, segments: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Event type [N,S] and latents {visual, audio: [N,S,2]} of stored pretraining clips, by replay."""
    meta = json.loads((root / "synthetic.json").read_text())
    spec = SyntheticSpec.from_json(meta["spec"])
    types, lat_v, lat_a = [], [], []
    for split, index in zip(clips["split"], clips["index"]):
        scene, _ = clip_scene("pretrain", split, index, None, meta["seed"], meta["render"], spec)
        evs = scene.events[:segments]
        types.append([e.etype for e in evs])
        lat_v.append([[e.size, e.bright] for e in evs])
        lat_a.append([[20 * np.log10(e.gain), e.pitch] for e in evs])
    f = lambda x: torch.tensor(x, dtype=torch.float32)
    return torch.tensor(types), {"visual": f(lat_v), "audio": f(lat_a)}


def _zscore(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mu, sd = train.mean(0), train.std(0) + 1e-6
    return (train - mu) / sd, (test - mu) / sd


def type_accuracy(xtr, ytr, xte, yte, classes: int = 8, l2: float = 1e-3) -> float:
    """Linear softmax probe (L-BFGS, z-scored inputs): held-out top-1."""
    xtr, xte = _zscore(xtr, xte)
    w = torch.zeros(xtr.shape[1], classes, requires_grad=True)
    b = torch.zeros(classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(xtr @ w + b, ytr) + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((xte @ w + b).argmax(1) == yte).float().mean())


def ridge_r2(xtr, ytr, xte, yte, alpha: float = 10.0) -> list[float]:
    """Ridge regression per target column: held-out R^2 (0: no better than the mean)."""
    xtr, xte = _zscore(xtr, xte)
    xtr, xte = (torch.cat([x, torch.ones(len(x), 1)], 1) for x in (xtr, xte))
    w = torch.linalg.solve(xtr.T @ xtr + alpha * torch.eye(xtr.shape[1]), xtr.T @ ytr)
    return [round(float(v), 3) for v in 1 - ((xte @ w - yte) ** 2).mean(0) / yte.var(0)]


def type_share(x: torch.Tensor, types: torch.Tensor, classes: int = 8) -> float:
    """[N,S,D] features, [N,S] types: between-type variance / total variance of the z-scored features.
    The oracle's is about 1 / (1 + event_scale^2 + noise^2 + clip_scale^2) (learnability check): how much of an
    embedding the event type is, which a linear probe's accuracy does not say."""
    x, t = x.flatten(0, 1), types.flatten()
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    means = torch.stack([x[t == k].mean(0) if (t == k).any() else torch.zeros(x.shape[1]) for k in range(classes)])
    return float(means[t].var(0).sum() / x.var(0).sum())


def clip_share(x: torch.Tensor) -> float:
    """[N,S,D]: between-clip variance / total variance."""
    return float(x.mean(1).var(0).sum() / x.flatten(0, 1).var(0).sum())


@torch.no_grad()
def embed(fns: dict, data: dict, batch: int = 32) -> dict[str, torch.Tensor]:
    """{modality: [N,S,D]} from per-segment feature functions."""
    out = {}
    for m, key in (("visual", "video"), ("audio", "audio")):
        x = data[key]
        out[m] = torch.cat([fns[m](x[i:i + batch].flatten(0, 1).float()).view(min(batch, len(x) - i), x.shape[1], -1)
                            for i in range(0, len(x), batch)])
    return out


def score(train: dict, test: dict, truth_tr, truth_te) -> dict:
    (ttr, ltr), (tte, lte) = truth_tr, truth_te
    row = {}
    for m in ("visual", "audio"):
        xtr, xte = train[m].flatten(0, 1), test[m].flatten(0, 1)
        row[f"{m}_type"] = round(type_accuracy(xtr, ttr.flatten(), xte, tte.flatten()), 3)
        for name, r2 in zip(LATENTS[m], ridge_r2(xtr, ltr[m].flatten(0, 1), xte, lte[m].flatten(0, 1))):
            row[f"{m}_{name}_r2"] = r2
        row[f"{m}_type_share"] = round(type_share(test[m], tte), 3)
        row[f"{m}_clip_share"] = round(clip_share(test[m]), 3)
    return row


def cnn_fns(model) -> dict:
    model.eval()
    return {"visual": model.visual_cnn, "audio": model.audio_cnn}


def supervised(model, data: dict, types: torch.Tensor, steps: int, seed: int, lr: float = 1e-3):
    """Train both CNNs + linear heads on the segment type (the CNNs' ceiling on this corpus)."""
    g = torch.Generator().manual_seed(seed)
    heads = {m: torch.nn.Linear(d, 8) for m, d in (("visual", model.visual_dim), ("audio", model.audio_dim))}
    params = [p for m in (model.visual_cnn, model.audio_cnn, *heads.values()) for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=lr)
    model.train()
    for _ in range(steps):
        ix = torch.randint(0, len(types), (16,), generator=g)
        y = types[ix].flatten()
        loss = sum(F.cross_entropy(heads[m](cnn(data[k][ix].flatten(0, 1).float())), y)
                   for m, k, cnn in (("visual", "video", model.visual_cnn), ("audio", "audio", model.audio_cnn)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.probes.segments", description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=DEFAULT_CONFIG, help=f"run config (model sizes, data; default {DEFAULT_CONFIG})")
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--root", help="a corpus written by python -m data.synthetic, used as it is (any spec; default: "
                    "the config's data.root, generated on first use)")
    ap.add_argument("--checkpoint", action="append", default=[], help="a pretrained.pt to score (repeatable)")
    ap.add_argument("--supervised-steps", type=int, default=0, help="also train the CNNs on segment types for N steps")
    ap.add_argument("--train-clips", type=int, default=512, help="pretraining clips the probes fit on")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", help="also write the rows as JSON here")
    ap.add_argument("--check", metavar="JSON", help="compare the rows with a written result (e.g. results/tiny/"
                    "segment_probe.json) within their tolerance; exit 1 if a value is outside")
    ap.add_argument("overrides", nargs="*", help="dotted config overrides")
    args = ap.parse_args(argv)
    if args.train_clips < 16 or args.supervised_steps < 0:
        ap.error("--train-clips must be >= 16 and --supervised-steps >= 0")
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.overrides, profile=args.profile)
    root = Path(args.root) if args.root else paths.resolve(cfg.data.root)
    if cfg.data.synthetic and not args.root:
        ensure_synthetic(root, cfg.data, seed=0)  # as runs do: generated on first use
    if not (root / "synthetic.json").is_file():
        raise SystemExit(f"{root} is not a synthetic corpus (no synthetic.json): the probe needs the generator's "
                         "scene draws; generate one with python -m data.synthetic")
    t0 = time.time()
    train = decode(cfg, root / cfg.pretrain.dataset, args.train_clips, args.seed)
    held = root / cfg.pretrain.heldout_dataset
    test = decode(cfg, held, _count(held), args.seed)
    s = cfg.data.segments
    truth = segment_truth(root, train, s), segment_truth(root, test, s)
    print(f"decoded {len(train['index'])} + {len(test['index'])} clips in {time.time() - t0:.0f} s", flush=True)

    rows = []

    def add(name: str, fns: dict) -> None:
        row = {"features": name, **score(embed(fns, train), embed(fns, test), *truth)}
        rows.append(row)
        print(json.dumps(row), flush=True)

    add("hand-crafted", {"visual": handcrafted.visual_features, "audio": handcrafted.audio_features})
    torch.manual_seed(args.seed)
    add("random, standard init", cnn_fns(build_model(standard_init(cfg.model))))
    torch.manual_seed(args.seed)
    add("random, released init (zero_init_final_bn)", cnn_fns(build_model(replace(cfg.model, zero_init_final_bn=True))))
    for ck in args.checkpoint:
        model = build_model(cfg.model)
        model.load_state_dict(load_init_file(ck)["model"])
        add(ck, cnn_fns(model))
    if args.supervised_steps:
        torch.manual_seed(args.seed)
        model = supervised(build_model(standard_init(cfg.model)), train, truth[0][0], args.supervised_steps, args.seed)
        add(f"supervised on segment types ({args.supervised_steps} steps)", cnn_fns(model))
    if args.out:
        atomic_write_json(Path(args.out), {"config": args.config, "profile": args.profile, "seed": args.seed,
                                           "train_clips": len(train["index"]), "test_clips": len(test["index"]),
                                           "rows": rows}, indent=1)
    print(_table(rows))
    if args.check:
        want = json.loads(Path(args.check).read_text())
        ctx = {"profile": args.profile, "seed": args.seed, "train_clips": len(train["index"]),
               "test_clips": len(test["index"])}
        bad_ctx = {k: (want.get(k), v) for k, v in ctx.items() if want.get(k) != v}
        if bad_ctx:
            raise SystemExit(f"{args.check} was made with other settings {bad_ctx} (theirs, ours): rerun with them")
        problems, n = check_rows(rows, want["rows"], len(test["index"]) * s)
        for line in problems:
            print(line)
        print(f"checked {n} values against {args.check}: " + (f"{len(problems)} outside their tolerance"
                                                              if problems else "all within their tolerance"))
        return 1 if problems else 0
    return 0


def tolerance(key: str, value: float, segments: int) -> float:
    """How far a rerun on another machine may land from a written value: 2 binomial standard errors over
    the held-out segments for a type accuracy, 0.03 for an R^2 or a variance share (ours; both cover
    the floating-point differences between machines, which move single decisions, not the estimate)."""
    if key.endswith("_type"):
        return 2 * (max(value * (1 - value), 1e-4) / segments) ** 0.5 + 0.001
    return 0.03


def check_rows(rows: list[dict], want: list[dict], segments: int) -> tuple[list[str], int]:
    """(lines naming every value outside its tolerance, number of values compared), rows matched by
    `features`; rows only one side has are skipped."""
    theirs = {r["features"]: r for r in want}
    problems, n = [], 0
    for row in rows:
        ref = theirs.get(row["features"])
        for k, v in row.items() if ref is not None else ():
            if k == "features" or k not in ref:
                continue
            n += 1
            tol = tolerance(k, ref[k], segments)
            if abs(v - ref[k]) > tol:
                problems.append(f"{row['features']}: {k} = {v:.3f}, written {ref[k]:.3f} +- {tol:.3f}")
    return problems, n


def _count(folder: Path) -> int:
    return int(read_manifest(resolve_folder(folder))["total"])


def _table(rows: list[dict]) -> str:
    cols = [c for c in rows[0] if c != "features"]
    lines = ["| features | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    lines += [f"| {r['features']} | " + " | ".join(f"{r[c]:.3f}" for c in cols) + " |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
