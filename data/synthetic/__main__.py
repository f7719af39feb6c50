"""CLI: `python -m data.synthetic --out DIR --scale tiny|paper [--seed 0 --workers N]`.

Generates (or verifies) the synthetic benchmark at DIR with the scale's DataConfig (tiny = the tiny
profile's data section, paper = the code defaults) and size preset; counts can be overridden.
Shards: tiny 40 clips per shard, paper at least 128 shards per split (enough for 8 GPUs x 10 loader
workers; ours), or at least --shards.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time

from data.synthetic.generate import RECORD, ensure_synthetic
from data.synthetic.spec import SyntheticSpec, data_config, preset


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m data.synthetic", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="benchmark root (e.g. data/cache/synthetic/tiny)")
    p.add_argument("--scale", choices=("tiny", "smoke", "paper"), default="tiny")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="processes (default: CPU count, at most 8)")
    p.add_argument("--pretrain-clips", type=int, default=None)
    p.add_argument("--split-clips", type=int, nargs=3, metavar=("TRAIN", "VAL", "TEST"), default=None)
    d = SyntheticSpec()  # the defaults the help names
    p.add_argument("--nuisance", type=float, default=None,
                   help=f"scale all nuisances (default {d.nuisance:g}; 0 = clean, 0.5 = v3-v7, 1 = harder)")
    p.add_argument("--types-per-clip", type=int, default=None,
                   help=f"bound event types per pretraining / bind_like clip (default {d.types_per_clip}, each on 8 / K segments; 1-8)")
    p.add_argument("--background", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                   help="per-clip background colour range per channel (default %g %g; within [0, 1])" % d.background)
    p.add_argument("--event-size", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                   help="event object radius range, fraction of the frame side (default %g %g; HI <= 0.3)" % d.event_size)
    p.add_argument("--shards", type=int, default=None,
                   help="at least this many shards per split (default: tiny 40 clips per shard, paper 128 shards)")
    args = p.parse_args(argv)
    cfg = data_config(args.scale)
    spec = preset(args.scale)
    if args.pretrain_clips is not None:
        spec = dataclasses.replace(spec, pretrain_clips=args.pretrain_clips)
    if args.split_clips is not None:
        spec = dataclasses.replace(spec, splits=dict(zip(("train", "val", "test"), args.split_clips)))
    for flag, key in (("--types-per-clip", "types_per_clip"), ("--background", "background"),
                      ("--event-size", "event_size")):
        value = getattr(args, key)
        if value is not None:  # the spec checks its own bounds
            try:
                spec = dataclasses.replace(spec, **{key: tuple(value) if isinstance(value, list) else value})
            except ValueError as e:
                p.error(f"{flag}: {e}")
    if args.nuisance is not None:
        spec = dataclasses.replace(spec, nuisance=args.nuisance)
    t0 = time.time()
    root = ensure_synthetic(args.out, cfg, seed=args.seed, workers=args.workers, spec=spec, shards=args.shards)
    rec = json.loads((root / RECORD).read_text())
    print(f"{root}: {json.dumps(rec['clips'])} (generated in {rec['wall_s']} s; this call {time.time() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
