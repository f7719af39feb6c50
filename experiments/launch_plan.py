"""Which runs a launch would submit: discover the RQ's configs, load and validate *all* of them, and
classify each run folder (new / resume / complete / excluded / conflict) before anything is submitted.

Why all up front: a sweep that dies on its fourth config after three jobs went out leaves a half
sweep and a confusing queue. Every error (file, key, expected type) is collected and reported at once.
Why classify here: relaunching a sweep must be idempotent (complete runs of the same config hash are
skipped, unfinished ones resume from last.pt), and a folder holding a *different* config must stop the
launch instead of failing inside a job an hour later.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import yaml

from common import paths
from experiments.config import ConfigError, RunConfig, load_config, to_dict
from experiments.run_folder import FolderState, RunFolder, result_hash, run_dir


class PlanState(str, Enum):
    """A run's state in a launch: its folder's (run_folder.FolderState, same values) or the launch's own."""
    NEW = FolderState.NEW.value
    RESUME = FolderState.RESUME.value
    COMPLETE = FolderState.COMPLETE.value
    CONFLICT = FolderState.CONFLICT.value
    EXCLUDED = "excluded"  # not part of this profile
    QUEUED = "queued"  # a job of this run is still queued or running

    def __str__(self) -> str:
        return self.value


NEW, RESUME, COMPLETE, EXCLUDED, CONFLICT, QUEUED = (PlanState.NEW, PlanState.RESUME, PlanState.COMPLETE,
                                                      PlanState.EXCLUDED, PlanState.CONFLICT, PlanState.QUEUED)
TO_SUBMIT = (NEW, RESUME)


@dataclass
class RunPlan:
    path: Path
    name: str  # the config file's stem (what --only selects), `<stem>_seed<N>` for --seeds N > 0
    cfg: RunConfig
    state: PlanState = NEW
    note: str = ""
    config: dict = field(default_factory=dict)  # the resolved plain dict the job receives

    @property
    def run_dir(self) -> Path:
        return run_dir(self.cfg)

    @property
    def submit(self) -> bool:
        return self.state in TO_SUBMIT

    def facts(self) -> str:
        """The config keys that tell runs of one sweep apart, on one line (for --dry-run)."""
        c = self.cfg
        p = c.pretrain
        pre = (f"pretrain={p.epochs}x{p.steps_per_epoch} steps batch {p.batch_size} lr {p.optim.lr:g} "
               f"neg={p.negatives.sampler}{' freeze_cnn' if p.freeze_cnn else ''}") if p.enabled else "pretrain=off"
        names = [e.name for e in c.downstream]
        evals = ",".join(names[:4]) + (f" (+{len(names) - 4} more)" if len(names) > 4 else "") if names else "-"
        return (f"fusion={c.model.fusion} sharing={c.model.sharing} {pre} evals={evals} "
                f"data={c.data.root}{' (synthetic)' if c.data.synthetic else ''} device={c.runtime.device} "
                f"seed={c.seed} hash={result_hash(c)}")


def folder_state(cfg: RunConfig) -> tuple[PlanState, str]:
    """(state, note) of the run's results folder."""
    state, note = RunFolder.of(cfg).state()
    return PlanState(state.value), note


# ---- discovery and loading --------------------------------------------------------------------------
def discover(configs_dir: Path) -> list[Path]:
    """Run configs of an RQ: `configs/*.yaml`, except `_*.yaml` (profile deltas and shared bases)."""
    configs_dir = Path(configs_dir)
    if not configs_dir.is_dir():
        raise ConfigError(f"configs folder not found: {configs_dir}")
    found = sorted(p for p in configs_dir.iterdir()
                   if p.suffix in (".yaml", ".yml") and not p.name.startswith("_") and p.is_file())
    if not found:
        raise ConfigError(f"no run configs (*.yaml not starting with '_') in {configs_dir}")
    return found


def select(found: list[Path], only: list[str] | None) -> list[Path]:
    if not only:
        return found
    by_name = {p.stem: p for p in found}
    unknown = [n for n in only if n not in by_name]
    if unknown:
        raise ConfigError(f"--only: unknown run name(s) {', '.join(unknown)}; available: {', '.join(by_name)}")
    return [by_name[n] for n in only]


def seed_overrides(stem: str, seed: int | None) -> list[str]:
    """Overrides of one seed's run: seed 0 keeps the config's name, seed N writes `<name>_seed<N>`."""
    if seed is None:
        return []
    return [f"seed={seed}"] + ([f"name={stem}_seed{seed}"] if seed else [])


def load_plans(files: list[Path], overrides: list[str], profile: str,
               seeds: list[int] | None = None) -> tuple[list[RunPlan], list[str]]:
    """Load + validate every file (once per seed when `seeds` is given); return the plans and the list
    of error messages (empty if all good)."""
    plans, errors = [], []
    for path, seed in ((f, s) for f in files for s in (seeds or [None])):
        try:
            cfg = load_config(path, [*overrides, *seed_overrides(path.stem, seed)], profile)
        except ConfigError as e:
            errors.append(str(e))
            continue
        except yaml.YAMLError as e:
            errors.append(f"{path}: invalid YAML: {e}")
            continue
        # absolute output_root: jobs run from a code snapshot, results must land in the real checkout
        cfg = dataclasses.replace(cfg, output_root=str(paths.resolve(cfg.output_root)))
        plan = RunPlan(path=path, name=cfg.name if seed else path.stem, cfg=cfg, config=to_dict(cfg))
        if profile not in cfg.profiles:
            plan.state, plan.note = EXCLUDED, f"not part of the {profile} profile (profiles: {', '.join(cfg.profiles)})"
        else:
            plan.state, plan.note = folder_state(cfg)
            if plan.state == CONFLICT:
                errors.append(plan.note)
        plans.append(plan)
    seen: dict[Path, Path] = {}
    for plan in plans:
        if plan.state == EXCLUDED:
            continue
        other = seen.setdefault(plan.run_dir, plan.path)
        if other != plan.path:
            errors.append(f"{plan.path} and {other} both write {plan.run_dir}: give them different names")
    return plans, errors
