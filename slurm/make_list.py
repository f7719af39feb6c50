"""Write the config list for `slurm/run_array.sbatch` and print the matching sbatch command.

    python slurm/make_list.py rq3_sharing [--profile tiny] [--all] [--out FILE] [key=value ...]

Why a helper rather than `ls configs/*.yaml > list`: the list must leave out `_*.yaml` deltas, runs not
in the profile (`profiles:` key, e.g. the AudioSet transfer run at tiny scale) and, unless --all, runs
already complete for this config hash; every config is validated first (same loader as the launcher),
and the printed command carries the resources of slurm/<profile>.yaml.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments.cluster_profile import ClusterProfile, load_cluster_profile  # noqa: E402
from experiments.config import PROFILES, ConfigError  # noqa: E402
from experiments.launch_plan import COMPLETE, discover, load_plans  # noqa: E402


def sbatch_flags(res: ClusterProfile, n: int) -> list[str]:
    flags = [f"--array=0-{n - 1}%{min(n, res.array_parallelism)}", f"--nodes={res.nodes}",
             f"--ntasks-per-node={res.ntasks_per_node}", f"--cpus-per-task={res.cpus_per_task}",
             f"--time={res.timeout_min}", f"--signal=B:USR1@{res.signal_delay_s}"]
    if res.gpus_per_node:
        flags.append(f"--gpus-per-node={res.gpus_per_node}")
    if res.mem_gb:
        flags.append(f"--mem={int(round(res.mem_gb * 1024))}M")
    flags += [f"--{k}={getattr(res, k)}" for k in ("partition", "account", "qos", "constraint") if getattr(res, k)]
    return flags


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rq", help="research question folder, e.g. rq3_sharing")
    ap.add_argument("--profile", choices=PROFILES, default="tiny")
    ap.add_argument("--all", action="store_true", help="also list runs that are already complete")
    ap.add_argument("--out", type=Path, help="default: results/slurm/<rq>.<profile>.txt")
    ap.add_argument("overrides", nargs="*", metavar="key=value")
    args = ap.parse_intermixed_args(argv)
    try:
        plans, errors = load_plans(discover(ROOT / "experiments" / args.rq / "configs"), args.overrides, args.profile)
        res = load_cluster_profile(args.profile)
    except ConfigError as e:
        errors, plans = [str(e)], []
    if errors:
        print("invalid configs; no list written:\n  - " + "\n  - ".join(errors), file=sys.stderr)
        return 2
    keep = [p for p in plans if p.submit or (args.all and p.state == COMPLETE)]
    for p in plans:
        print(f"{'list' if p in keep else 'skip'}  {p.name:<18} {p.state}{': ' + p.note if p.note else ''}",
              file=sys.stderr)
    if not keep:
        print("nothing to run", file=sys.stderr)
        return 0
    out = args.out or ROOT / "results" / "slurm" / f"{args.rq}.{args.profile}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    (ROOT / "results" / "slurm").mkdir(parents=True, exist_ok=True)  # run_array.sbatch's --output folder
    out.write_text("".join(f"{p.path.resolve().relative_to(ROOT)}\n" for p in keep))
    cmd = ["sbatch", *sbatch_flags(res, len(keep)), "slurm/run_array.sbatch",
           str(out.resolve().relative_to(ROOT) if out.resolve().is_relative_to(ROOT) else out),
           "--profile", args.profile, *args.overrides]
    print(f"wrote {len(keep)} config(s) to {out}; submit from {ROOT} with:", file=sys.stderr)
    print(shlex.join(cmd))
    return 0


if __name__ == "__main__":
    sys.exit(main())
