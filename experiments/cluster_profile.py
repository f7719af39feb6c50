"""Cluster resources for a launch: `slurm/<profile>.yaml` <- launcher flags, validated like run configs.

Why a typed YAML and not flags only: the paper profile needs a node's worth of settings (8 GPUs, CPUs per
GPU, memory, 72 h, signal delay, requeue budget) that must be reviewable and versioned next to the
sbatch scripts; a typo such as `gpu_per_node` must fail before anything is submitted (unknown keys
raise, naming file, key and the valid keys), not silently fall back to a default.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from common.paths import CODE_ROOT
from experiments.config.loader import ConfigError, build_dataclass, read_yaml

SLURM_DIR = CODE_ROOT / "slurm"


@dataclass
class ClusterProfile:
    partition: str | None = None  # None: the cluster's default partition
    gpus_per_node: int = 0
    nodes: int = 1
    tasks_per_node: int | None = None  # None: one task per GPU (1 without GPUs); set = gpus_per_node
    cpus_per_task: int = 2  # also the torch/OpenMP threads of each task
    mem_gb: float | None = None  # per node; None: no --mem request (the partition's default)
    timeout_min: int = 60  # per job attempt; a time-out requeues (checkpointable) up to max_num_timeout
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    signal_delay_s: int = 120  # SIGUSR2 this long before the time limit: time to write last.pt
    max_num_timeout: int = 20  # requeues after time-outs before submitit gives up
    array_parallelism: int = 1  # runs at once: SLURM array %N, local executor: N subprocesses

    def __post_init__(self) -> None:
        for key in ("nodes", "cpus_per_task", "timeout_min", "array_parallelism"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("gpus_per_node", "signal_delay_s", "max_num_timeout"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.tasks_per_node is not None:
            if self.tasks_per_node < 1:
                raise ValueError(f"tasks_per_node must be >= 1, got {self.tasks_per_node}")
            if self.gpus_per_node and self.tasks_per_node != self.gpus_per_node:
                raise ValueError(f"tasks_per_node ({self.tasks_per_node}) must equal gpus_per_node "
                                 f"({self.gpus_per_node}): one task (DDP rank) per GPU; or leave it null")
        if self.signal_delay_s >= self.timeout_min * 60:
            raise ValueError(f"signal_delay_s ({self.signal_delay_s}) must be shorter than the time limit "
                             f"({self.timeout_min} min)")

    @property
    def ntasks_per_node(self) -> int:
        return self.tasks_per_node or max(1, self.gpus_per_node)

    @property
    def world_size(self) -> int:
        return self.nodes * self.ntasks_per_node

    def describe(self, cluster: str = "slurm") -> str:
        """One line for --dry-run; the local executor only uses tasks, GPUs, threads, time, parallelism."""
        parts = [f"nodes={self.nodes}", f"tasks/node={self.ntasks_per_node}", f"gpus/node={self.gpus_per_node}",
                 f"cpus/task={self.cpus_per_task}", f"time={self.timeout_min}min", f"parallel={self.array_parallelism}"]
        if cluster == "slurm":
            parts = [f"partition={self.partition or '(default)'}", *parts,
                     f"mem={f'{self.mem_gb:g}GB' if self.mem_gb else '(default)'}",
                     f"signal=USR2@{self.signal_delay_s}s", f"max_timeouts={self.max_num_timeout}"]
            parts += [f"{k}={getattr(self, k)}" for k in ("account", "qos", "constraint") if getattr(self, k)]
        return " ".join(parts)


FIELDS = tuple(f.name for f in dataclasses.fields(ClusterProfile))


def profile_path(profile: str, slurm_dir: Path = SLURM_DIR) -> Path:
    return Path(slurm_dir) / f"{profile}.yaml"


def load_cluster_profile(profile: str, overrides: dict | None = None, slurm_dir: Path = SLURM_DIR) -> ClusterProfile:
    """Read `slurm/<profile>.yaml`, apply flag overrides (None values are ignored), validate."""
    path = profile_path(profile, slurm_dir)
    if not path.is_file():
        raise ConfigError(f"cluster profile not found: {path} (choose one of "
                          f"{', '.join(sorted(p.stem for p in Path(slurm_dir).glob('*.yaml'))) or 'none'})")
    res = build_dataclass(ClusterProfile, read_yaml(path), source=str(path))
    changes = {k: v for k, v in (overrides or {}).items() if v is not None}
    if not changes:
        return res
    flags = ", ".join(f"{k}={v}" for k, v in changes.items())
    return build_dataclass(ClusterProfile, {**dataclasses.asdict(res), **changes}, source=f"{path} (+ flags {flags})")


def slurm_parameters(res: ClusterProfile, job_name: str) -> dict:
    """Keyword arguments for `submitit.SlurmExecutor.update_parameters` (sbatch spelling)."""
    params = {"job_name": job_name, "time": res.timeout_min, "nodes": res.nodes,
              "ntasks_per_node": res.ntasks_per_node, "cpus_per_task": res.cpus_per_task,
              "signal_delay_s": res.signal_delay_s, "array_parallelism": res.array_parallelism}
    if res.gpus_per_node:
        params["gpus_per_node"] = res.gpus_per_node
    if res.mem_gb:
        params["mem"] = f"{int(round(res.mem_gb * 1024))}MB"
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(res, key):
            params[key] = getattr(res, key)
    return params


def local_parameters(res: ClusterProfile) -> dict:
    """Keyword arguments for `submitit.LocalExecutor.update_parameters` (one node only)."""
    if res.nodes != 1:
        raise ConfigError(f"the local cluster runs on one node; got nodes={res.nodes} (use --cluster slurm)")
    return {"timeout_min": res.timeout_min, "tasks_per_node": res.ntasks_per_node,
            "gpus_per_node": res.gpus_per_node, "signal_delay_s": res.signal_delay_s}
