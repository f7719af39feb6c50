"""The one place that decides rank, world size and rendezvous for a process, and the few collectives
the training code needs.

Why one function (`resolve_env`) with a fixed order: the same code runs under `torchrun`, under
submitit (SLURM or its local executor), under plain `sbatch` + `srun`, and as a single process on a
laptop/CI box. Each launcher describes the process differently, and mixing sources (e.g. RANK from
torchrun but MASTER_ADDR from nowhere) hangs `init_process_group` instead of failing. So:

  1. a complete torchrun env (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), else
     PartialEnvError when only some of them are set;
  2. submitit's local executor (its JobEnvironment: SUBMITIT_LOCAL_* variables, master = 127.0.0.1);
  3. a SLURM step (srun, or submitit's SLURM executor which uses srun): rank SLURM_PROCID, local rank
     SLURM_LOCALID, world SLURM_STEP_NUM_TASKS (= SLURM_NTASKS of the step), master = first host of
     SLURM_JOB_NODELIST from `scontrol show hostnames`, port derived from SLURM_JOB_ID (unique per
     array task, so two jobs sharing a node never collide). Never RANK=SLURM_LOCALID (wrong beyond one
     node) and never MASTER_ADDR=$HOSTNAME (wrong on every node but the first). A SLURM batch script
     that calls python without srun is one process (no step variables), whatever --ntasks says;
  4. otherwise a single process.

Process groups use NCCL when CUDA is available and gloo on CPU, so the whole stack, DDP included,
runs in CI. With world size 1 no process group is created and the collectives below are no-ops, and
torch is not even imported (keeps fake-target launcher tests fast).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Callable, Mapping

TORCHRUN_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
DEFAULT_PORT = 29500
PORT_BASE, PORT_SPAN = 20000, 10000  # 20000-29999: below Linux's ephemeral range (32768+)


class PartialEnvError(RuntimeError):
    """Some but not all torchrun variables are set: refuse to guess (a guess hangs at rendezvous)."""


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = DEFAULT_PORT
    source: str = "single"  # torchrun | submitit-local | slurm | single

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def as_environ(self) -> dict[str, str]:
        return {"RANK": str(self.rank), "WORLD_SIZE": str(self.world_size), "LOCAL_RANK": str(self.local_rank),
                "MASTER_ADDR": self.master_addr, "MASTER_PORT": str(self.master_port)}


def port_from_job_id(job_id: str | int) -> int:
    """A rendezvous port that is the same on every task of a job and differs between jobs."""
    digits = re.sub(r"\D", "", str(job_id)) or "0"
    return PORT_BASE + int(digits) % PORT_SPAN


def scontrol_hostnames(nodelist: str) -> list[str]:
    """Expand a SLURM node list (`gpu[01-03],cpu7`) with `scontrol show hostnames` (no shell)."""
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                             timeout=30, check=True).stdout
        hosts = out.split()
        if hosts:
            return hosts
    except (OSError, subprocess.SubprocessError):
        pass
    # scontrol missing or failing (e.g. a container without the SLURM client): our own expansion
    return expand_nodelist(nodelist)


def _split_top(text: str) -> list[str]:
    """Split at the commas that are not inside brackets: `a[1,3],b` -> [`a[1,3]`, `b`]."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch == "[") - (ch == "]")
        if depth < 0:
            raise ValueError(f"unbalanced brackets in node list {text!r}")
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise ValueError(f"unbalanced brackets in node list {text!r}")
    return parts + [text[start:]]


def _expand_one(name: str) -> list[str]:
    """`gpu[01-03]x[1,2]` -> every combination, zero padding as written (`01-03` keeps two digits)."""
    m = re.match(r"([^\[]*)\[([^\]]*)\](.*)$", name)
    if not m:
        return [name]
    head, ranges, tail = m.groups()
    values = []
    for part in ranges.split(","):
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise ValueError(f"bad range {part!r} in node list entry {name!r}")
        width = len(lo)
        values += [str(v).zfill(width) for v in range(int(lo), int(hi or lo) + 1)]
    return [head + v + rest for v in values for rest in _expand_one(tail)]


def expand_nodelist(nodelist: str) -> list[str]:
    """Expand a SLURM node list as `scontrol show hostnames` does, without SLURM (`gpu[01-02],cpu7` ->
    `gpu01 gpu02 cpu7`); ValueError on malformed lists."""
    return [host for item in _split_top(nodelist.strip()) if item for host in _expand_one(item)]


def _int(env: Mapping[str, str], key: str) -> int:
    try:
        return int(env[key])
    except (KeyError, ValueError):
        raise RuntimeError(f"environment variable {key}={env.get(key)!r} is not an integer") from None


def resolve_env(environ: Mapping[str, str] | None = None,
                hostnames: Callable[[str], list[str]] = scontrol_hostnames) -> DistEnv:
    """Rank, world size and rendezvous of this process; see the module docstring for the order."""
    env = os.environ if environ is None else environ
    present = [k for k in TORCHRUN_KEYS if env.get(k, "") != ""]
    if len(present) == len(TORCHRUN_KEYS):
        return DistEnv(_int(env, "RANK"), _int(env, "WORLD_SIZE"), _int(env, "LOCAL_RANK"),
                       env["MASTER_ADDR"], _int(env, "MASTER_PORT"), "torchrun")
    if present:
        missing = [k for k in TORCHRUN_KEYS if k not in present]
        raise PartialEnvError(
            f"partial torch.distributed environment: {', '.join(present)} set but {', '.join(missing)} missing. "
            "Launch with torchrun (which sets all five), or unset them to let SLURM/submitit or a single "
            "process define the run.")
    if env.get("SUBMITIT_EXECUTOR") == "local":
        return DistEnv(_int(env, "SUBMITIT_LOCAL_GLOBALID"), _int(env, "SUBMITIT_LOCAL_NTASKS"),
                       _int(env, "SUBMITIT_LOCAL_LOCALID"), "127.0.0.1",
                       port_from_job_id(env.get("SUBMITIT_LOCAL_JOB_ID", "0")), "submitit-local")
    if "SLURM_JOB_ID" in env and "SLURM_STEP_NUM_TASKS" in env and "SLURM_PROCID" in env:
        world = _int(env, "SLURM_STEP_NUM_TASKS")
        master = hostnames(env["SLURM_JOB_NODELIST"])[0] if world > 1 else "127.0.0.1"
        return DistEnv(_int(env, "SLURM_PROCID"), world, _int(env, "SLURM_LOCALID"), master,
                       port_from_job_id(env["SLURM_JOB_ID"]), "slurm")
    return DistEnv()


# ---------------------------------------------------------------------------------------------------
_current: DistEnv | None = None
_saved_environ: dict[str, str | None] = {}  # what setup() overwrote, restored by cleanup()


def _dist():
    """torch.distributed if torch was imported and a process group exists, else None."""
    if "torch" not in sys.modules:
        return None
    import torch.distributed as dist  # lazy (here and below): the launcher imports this module, never torch

    return dist if dist.is_available() and dist.is_initialized() else None


def setup(backend: str | None = None, environ: Mapping[str, str] | None = None) -> DistEnv:
    """Resolve the env, export it as the torchrun variables, and init the process group when
    world_size > 1 (NCCL with CUDA, else gloo). Idempotent: a second call returns the same env."""
    global _current
    if _current is not None and (_current.world_size == 1 or _dist() is not None):
        return _current
    env = resolve_env(environ)
    for key, value in env.as_environ().items():
        _saved_environ.setdefault(key, os.environ.get(key))
        os.environ[key] = value
    if env.world_size > 1:
        import torch
        import torch.distributed as dist

        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(env.local_rank)
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, init_method="env://", rank=env.rank,
                                    world_size=env.world_size)
    _current = env
    return env


def current() -> DistEnv:
    """The env set up by `setup()`, else the one the environment describes (no side effects)."""
    return _current if _current is not None else resolve_env()


def rank() -> int:
    dist = _dist()
    return dist.get_rank() if dist else (_current.rank if _current else 0)


def world_size() -> int:
    dist = _dist()
    return dist.get_world_size() if dist else (_current.world_size if _current else 1)


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    dist = _dist()
    if dist is None:
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[current().local_rank])
    else:
        dist.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (a one-item list without a process group)."""
    dist = _dist()
    if dist is None:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def any_flag(flag: bool) -> bool:
    """True on every rank if it is True on any rank (e.g. 'a stop was requested'), so all ranks stop
    at the same step and no collective is left waiting."""
    dist = _dist()
    if dist is None:
        return bool(flag)
    import torch

    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def cleanup() -> None:
    """Destroy the process group (if any) and restore the variables setup() exported, so the next run
    in the same process (debug cluster, tests) resolves its own env instead of inheriting ours."""
    global _current
    dist = _dist()
    if dist is not None:
        dist.destroy_process_group()
    for key, value in _saved_environ.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _saved_environ.clear()
    _current = None
