"""The experiment launcher shared by every research question (`experiments/rq*/launch.py`).

    python experiments/rq3_sharing/launch.py                          # tiny profile, local executor
    python experiments/rq3_sharing/launch.py --dry-run                # print every job, submit nothing
    python experiments/rq3_sharing/launch.py --cluster slurm --profile paper --partition gpu
    python experiments/rq3_sharing/launch.py --only part,none pretrain.optim.lr=1e-4

What one launch does, in order (see `launch()`):
 1. load and validate EVERY config of the RQ (`configs/*.yaml` except `_*.yaml`) with the profile and the
    trailing key=value overrides, and the cluster profile `slurm/<profile>.yaml` with the resource flags;
    any error (file, key, expected type) stops the launch before anything is submitted;
 2. classify runs: complete for this config hash -> skipped; unfinished -> submitted, resumes from
    last.pt; not in this profile (`profiles:` key) -> skipped; still queued on SLURM -> skipped;
 3. snapshot the code into `results/.snapshots/<hash>/` and submit from there (editing the tree while
    jobs queue changes nothing); generate the synthetic benchmark once, here, if runs need it;
 4. submit (SLURM: one job array; local: at most `array_parallelism` runs at a time; debug: in-process),
    wait with a progress display (unless --no-wait), print a summary; exit status 1 if anything failed,
    2 on invalid configs.
`launch(rq_dir, argv) -> Summary` does all of it without exiting, for tests and scripts.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from common import paths
from data.synthetic import ensure_synthetic
from experiments import logs, run_lock
from experiments.cluster_profile import ClusterProfile, load_cluster_profile
from experiments.config import PROFILES, ConfigError, explain_config
from experiments.launch_jobs import Outcome, active_job, run_debug, submit_local, submit_slurm, wait
from experiments.launch_plan import QUEUED, RunPlan, discover, load_plans, seed_overrides, select
from experiments.pretrain_reuse import submission_order
from experiments.snapshot import make_snapshot
from experiments.submitit_job import DEFAULT_TARGET, RunJob

CLUSTERS = ("local", "slurm", "debug")
POLL_S = {"slurm": 30.0, "local": 0.5, "debug": 0.0}
RESOURCE_FLAGS = {  # flag -> ClusterProfile field
    "partition": "partition", "gpus_per_node": "gpus_per_node", "nodes": "nodes", "tasks_per_node": "tasks_per_node",
    "cpus_per_task": "cpus_per_task", "mem_gb": "mem_gb", "time_min": "timeout_min", "account": "account",
    "qos": "qos", "constraint": "constraint", "array_parallelism": "array_parallelism"}


@dataclass
class Summary:
    rq: str
    profile: str
    cluster: str
    outcomes: list[Outcome] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    resources: ClusterProfile | None = None
    dry_run: bool = False
    snapshot: Path | None = None

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    def get(self, name: str) -> Outcome:
        return next(o for o in self.outcomes if o.plan.name == name)

    @property
    def jobs(self) -> list:
        return [o.job for o in self.outcomes if o.job is not None]

    @property
    def exit_code(self) -> int:
        if self.errors:
            return 2
        return 1 if any(o.status in ("failed", "unfinished") for o in self.outcomes) else 0


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds wants comma-separated integers, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"--seeds wants distinct non-negative integers, got {text!r}")
    return seeds


def build_parser(rq_name: str = "<rq>") -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=f"python experiments/{rq_name}/launch.py",
        description=f"Launch every config of {rq_name} (configs/*.yaml except _*.yaml) with submitit. "
                    "Complete runs are skipped, unfinished ones resume from their last checkpoint.",
        epilog="examples:\n"
               f"  python experiments/{rq_name}/launch.py --dry-run\n"
               f"  python experiments/{rq_name}/launch.py                       # tiny, local, one run at a time\n"
               f"  python experiments/{rq_name}/launch.py --cluster slurm --profile paper --partition gpu\n"
               f"  python experiments/{rq_name}/launch.py --only part pretrain.optim.lr=1e-4",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cluster", choices=CLUSTERS, default="local",
                    help="local (default): subprocesses on this machine; slurm: one sbatch job array; "
                         "debug: in-process, one after the other")
    ap.add_argument("--profile", choices=PROFILES, default="tiny",
                    help="experiments/profiles/<p>.yaml for the configs, slurm/<p>.yaml for resources (default: tiny)")
    ap.add_argument("--dry-run", action="store_true", help="print every job and its resources; submit nothing")
    ap.add_argument("--print-config", action="store_true",
                    help="print every run's resolved config, each value with the layer it came from; submit nothing")
    ap.add_argument("--only", metavar="NAME[,NAME]", help="run only these configs (file names without .yaml)")
    ap.add_argument("--seeds", metavar="N[,N]", type=parse_seeds,
                    help="run every config once per seed (seed 0 keeps the config's folder name, seed N writes "
                         "<name>_seed<N>; the tables average over them); default: the configs' own seed")
    ap.add_argument("--configs-dir", type=Path, help="default: <rq>/configs")
    ap.add_argument("--no-wait", action="store_true", help="submit and return (local runs then all start at once)")
    ap.add_argument("--no-snapshot", action="store_true", help="run jobs from the live tree instead of a copy")
    ap.add_argument("--poll-s", type=float, help="seconds between status polls (default: slurm 30, local 0.5)")
    ap.add_argument("--wait-timeout-min", type=float, help="stop waiting after this long (jobs keep running)")
    ap.add_argument("--target", default=DEFAULT_TARGET, help=argparse.SUPPRESS)  # tests: module:function
    res = ap.add_argument_group("resources (override slurm/<profile>.yaml)")
    res.add_argument("--partition")
    res.add_argument("--gpus-per-node", type=int)
    res.add_argument("--nodes", type=int)
    res.add_argument("--tasks-per-node", type=int, help="DDP ranks per node (default: one per GPU, 1 on CPU)")
    res.add_argument("--cpus-per-task", type=int)
    res.add_argument("--mem-gb", type=float)
    res.add_argument("--time-min", type=int, help="time limit per job attempt (minutes)")
    res.add_argument("--account")
    res.add_argument("--qos")
    res.add_argument("--constraint")
    res.add_argument("--array-parallelism", type=int, help="runs at once (SLURM array %%N, local executor)")
    ap.add_argument("overrides", nargs="*", metavar="key=value",
                    help="config overrides applied to every run, e.g. pretrain.optim.lr=1e-4")
    return ap


def tables_command(rq: str, profile: str, results: Path | None = None) -> str:
    """The table script for this RQ's runs; `--results` when they are not under the default results/."""
    script = "make_table2.py" if rq.startswith("rq5") else "make_table1.py"
    where = f" --results {results}" if results is not None and results != paths.repo_root() / "results" else ""
    return f"python tables/{script} --profile {profile}{where}"


def _print_plan(summary: Summary, plans: list[RunPlan], target: str, out: TextIO) -> None:
    res = summary.resources
    print(f"{summary.rq}: {len(plans)} config(s), profile {summary.profile}, cluster {summary.cluster}"
          + (f", target {target}" if target != DEFAULT_TARGET else ""), file=out)
    for i, p in enumerate(plans, 1):
        verb = "submit" if p.submit else "skip"
        print(f"[{i}/{len(plans)}] {p.name:<18} {verb} ({p.state}{': ' + p.note if p.note else ''})", file=out)
        if summary.dry_run:
            print(f"      file:      {p.path}", file=out)
            print(f"      config:    {p.facts()}", file=out)
            if p.submit:
                print(f"      resources: cluster={summary.cluster} {res.describe(summary.cluster)}", file=out)
            print(f"      output:    {p.run_dir}  (logs: {p.run_dir / 'submitit'})", file=out)


def _note(o: Outcome) -> str:
    if o.status == "failed" or o.status == "unfinished":
        return o.error
    if o.status == "skipped":
        return o.plan.state + (f": {o.plan.note}" if o.plan.note else "")
    m = o.metrics if isinstance(o.metrics, dict) else {}
    scores = [f"{k} " + "/".join(f"{s}={v[s]:.1f}" for s in ("top1", "mAP") if isinstance(v.get(s), (int, float)))
              for k, v in (m.get("downstream") or {}).items() if isinstance(v, dict)]
    return "; ".join(s for s in scores if "=" in s)[:120] or str(o.plan.run_dir)


_OVERRIDE_ERROR = re.compile(r"(?P<file>\S+\.ya?ml) \(\+ overrides (?P<over>.*?)\): (?P<msg>.*)", re.S)


def collapse_errors(errors: list[str]) -> list[str]:
    """One line per distinct problem: an override error that every config shares is shown once,
    with the configs it hit, instead of once per config."""
    groups: dict[object, tuple[str | None, str, list[str]]] = {}  # in first-seen order
    for i, e in enumerate(errors):
        m = _OVERRIDE_ERROR.fullmatch(e)
        if m is None:
            groups[i] = (None, e, [])
        else:
            groups.setdefault((m["over"], m["msg"]), (m["over"], m["msg"], []))[2].append(m["file"])
    lines = []
    for over, msg, files in groups.values():
        if over is None:
            lines.append(msg)
        elif len(files) == 1:
            lines.append(f"{files[0]} (+ overrides {over}): {msg}")
        else:
            names = ", ".join(Path(f).name for f in files)
            lines.append(f"overrides {over}: {msg} (in each of {len(files)} configs: {names})")
    return lines


def print_summary(summary: Summary, out: TextIO) -> None:
    if summary.errors:
        lines = collapse_errors(summary.errors)
        print(f"\n{len(lines)} error(s); nothing was submitted:", file=out)
        for e in lines:
            print(f"  - {e}", file=out)
        return
    if summary.dry_run:
        print("\ndry run: nothing submitted", file=out)
        return
    c = summary.count
    print(f"\n{summary.rq} ({summary.profile} profile, {summary.cluster}): {c('ran')} ran, {c('skipped')} skipped, "
          f"{c('failed')} failed" + (f", {c('submitted')} submitted" if c("submitted") else "")
          + (f", {c('unfinished')} unfinished" if c("unfinished") else ""), file=out)
    print(f"  {'run':<18} {'status':<10} {'job':<14} {'time':>8}  note", file=out)
    for o in summary.outcomes:
        t = f"{o.wall_s:.0f}s" if o.wall_s is not None else "-"
        print(f"  {o.plan.name:<18} {o.status:<10} {o.job_id or '-':<14} {t:>8}  {_note(o)}", file=out)
        if o.status in ("failed", "unfinished", "submitted") and o.logs:
            print(f"  {'':<18}   stdout: {o.logs[0]}\n  {'':<18}   stderr: {o.logs[1]}", file=out)
    if summary.snapshot:
        print(f"code snapshot: {summary.snapshot}", file=out)
    if c("submitted"):
        print("jobs keep running; relaunch the same command later to collect them (finished runs are skipped)",
              file=out)
    roots = {Path(o.plan.cfg.output_root) for o in summary.outcomes}
    print(f"tables: {tables_command(summary.rq, summary.profile, roots.pop() if len(roots) == 1 else None)}",
          file=out)
    pretrained = [o.plan.run_dir for o in summary.outcomes if o.plan.cfg.pretrain.enabled]
    if pretrained:
        print(f"curves: python tables/plot_curves.py {' '.join(paths.shown(d) for d in pretrained)}", file=out)


def ensure_data(plans: list[RunPlan], out: TextIO) -> None:
    """Generate the synthetic benchmark's tasks that the runs read once here, so parallel jobs never race
    to write them."""
    needed: dict[str, tuple] = {}  # root -> (its data config, the tasks read from it)
    for p in plans:
        if p.submit and p.cfg.data.synthetic:
            data_cfg, tasks = needed.setdefault(str(paths.resolve(p.cfg.data.root)), (p.cfg.data, set()))
            tasks.update(p.cfg.synthetic_tasks)
    for root, (data_cfg, tasks) in needed.items():
        print(f"synthetic benchmark: checking {root} for {', '.join(sorted(tasks))} (generated once if missing)",
              file=out, flush=True)
        ensure_synthetic(Path(root), data_cfg, seed=0, tasks=sorted(tasks))


def launch(rq_dir: Path | str, argv: list[str] | None = None, *, out: TextIO | None = None,
           prepare_data: bool | None = None) -> Summary:
    """Everything `main` does, returning a Summary instead of exiting. `prepare_data=None`: generate the
    synthetic data only for the default target (fake test targets do not read it)."""
    out = out or sys.stdout
    rq_dir = Path(rq_dir).resolve()
    args = build_parser(rq_dir.name).parse_intermixed_args(argv)
    summary = Summary(rq=rq_dir.name, profile=args.profile, cluster=args.cluster, dry_run=args.dry_run)
    if any(o.partition("=")[0].strip() == "profile" for o in args.overrides):
        summary.errors.append("profile is chosen with --profile (it also picks slurm/<profile>.yaml's resources), "
                              "not as an override profile=...")
        print_summary(summary, out)
        return summary
    only = [n.strip() for n in (args.only or "").split(",") if n.strip()]
    try:
        files = select(discover(args.configs_dir or rq_dir / "configs"), only)
    except ConfigError as e:
        summary.errors.append(str(e))
        print_summary(summary, out)
        return summary
    try:
        summary.resources = load_cluster_profile(
            args.profile, {field_: getattr(args, flag) for flag, field_ in RESOURCE_FLAGS.items()})
    except ConfigError as e:
        summary.errors.append(str(e))
    plans, errors = load_plans(files, args.overrides, args.profile, seeds=args.seeds)
    summary.errors += errors
    if summary.errors:
        print_summary(summary, out)
        return summary
    if plans:
        summary.rq = plans[0].cfg.rq
    # runs whose pretraining a later one repeats go first; the repeats reuse their weights
    plans = submission_order(plans, lambda p: p.config, lambda p: p.run_dir)
    if args.print_config:
        for p in plans:
            extra = seed_overrides(p.path.stem, p.cfg.seed) if args.seeds else []
            print(f"# {p.name} ({p.path.name}, profile {args.profile})", file=out)
            print(explain_config(p.path, [*args.overrides, *extra], args.profile), file=out)
        return summary
    for p in plans:  # a run whose SLURM job is still queued/running is not submitted twice
        if p.submit and (job_id := active_job(p)):
            p.state, p.note = QUEUED, f"job {job_id} is still queued/running"
        elif p.submit and (who := run_lock.holder(p.run_dir)):  # a run.py or another launcher's job
            p.state, p.note = QUEUED, f"in use by {who}"
    _print_plan(summary, plans, args.target, out)
    if args.dry_run:
        print_summary(summary, out)
        return summary

    summary.outcomes = [Outcome(p, "pending" if p.submit else "skipped") for p in plans]
    todo = [o for o in summary.outcomes if o.status == "pending"]
    if todo:
        _run(summary, todo, args, out, prepare_data)
    print_summary(summary, out)
    return summary


def _run(summary: Summary, todo: list[Outcome], args: argparse.Namespace, out: TextIO,
         prepare_data: bool | None) -> None:

    res = summary.resources
    if prepare_data or (prepare_data is None and args.target == DEFAULT_TARGET):
        ensure_data([o.plan for o in todo], out)
    code_dir = None
    if args.cluster != "debug" and not args.no_snapshot:
        code_dir = summary.snapshot = make_snapshot(paths.repo_root(), todo[0].plan.run_dir.parents[1] / ".snapshots")
        print(f"code snapshot: {code_dir}", file=out, flush=True)

    def make_job() -> RunJob:
        return RunJob(args.target, repo_root=str(paths.repo_root()), cpus_per_task=res.cpus_per_task)

    poll_s = args.poll_s if args.poll_s is not None else POLL_S[args.cluster]
    timeout_s = args.wait_timeout_min * 60 if args.wait_timeout_min else None
    if args.cluster == "debug":
        for o in todo:
            print(f"running {o.plan.name} in-process ...", file=out, flush=True)
            run_debug(o, make_job)
        return
    def failed_submission(o: Outcome, e: Exception) -> None:
        o.status, o.error = "failed", f"submission failed: {type(e).__name__}: {str(e).strip()[:300]}"

    try:
        if args.cluster == "slurm":
            try:
                submit_slurm(todo, res, make_job, code_dir)
            except Exception as e:  # noqa: BLE001 - e.g. sbatch rejected the job (bad partition/account)
                for o in todo:
                    failed_submission(o, e)
                return
            print(f"submitted {len(todo)} run(s): job(s) {', '.join(o.job_id for o in todo)}", file=out, flush=True)
            if not args.no_wait:
                wait(todo, poll_s=poll_s, timeout_s=timeout_s)
            return
        parallel = len(todo) if args.no_wait else res.array_parallelism
        if args.no_wait and len(todo) > res.array_parallelism:
            print(f"warning: --no-wait starts all {len(todo)} local runs at once "
                  f"(array_parallelism={res.array_parallelism} needs the launcher to pace them)", file=out)

        def start_next() -> None:
            while sum(o.status == "submitted" for o in todo) < parallel:
                nxt = next((o for o in todo if o.status == "pending"), None)
                if nxt is None:
                    return
                try:
                    submit_local(nxt, res, make_job, code_dir)
                except Exception as e:  # noqa: BLE001 - report per run, keep going with the others
                    failed_submission(nxt, e)
                    continue
                print(f"started {nxt.plan.name} (pid {nxt.job_id}, logs {nxt.plan.run_dir / 'submitit'})",
                      file=out, flush=True)

        start_next()
        if not args.no_wait:
            wait(todo, poll_s=poll_s, timeout_s=timeout_s, start_next=start_next)
    except KeyboardInterrupt:
        for o in todo:
            if o.status == "submitted" and args.cluster == "local":
                o.job.cancel()  # local runs are children of this launcher: stop them; last.pt stays
            if o.status in ("submitted", "pending"):
                o.status, o.error = "unfinished", "interrupted (Ctrl-C)"
        if args.cluster == "slurm":
            print("interrupted: SLURM jobs keep running (squeue --me); relaunch to collect", file=out)


def wait_for(summary: Summary, *, timeout_s: float | None = None, poll_s: float = 2.0,
             out: TextIO | None = None) -> Summary:
    """Wait for the jobs of a `--no-wait` launch (tests, notebooks) and reprint the summary."""
    wait([o for o in summary.outcomes if o.status == "submitted"], poll_s=poll_s, timeout_s=timeout_s,
         progress=False)
    print_summary(summary, out or sys.stdout)
    return summary


def main(rq_dir: Path | str, argv: list[str] | None = None) -> int:
    logs.configure(0)  # the launcher is one process; it generates the synthetic data (the `data` logger)
    summary = launch(rq_dir, sys.argv[1:] if argv is None else argv)
    return summary.exit_code
