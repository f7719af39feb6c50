"""Config loading: defaults (schema.py) <- profile <- RQ profile deltas <- run YAML <- CLI overrides.

`load_config("experiments/rq3_sharing/configs/part.yaml", ["pretrain.epochs=2"], profile="tiny")`
merges, in order:
  1. `experiments/profiles/<profile>.yaml`        (tiny: synthetic CPU minutes; paper: real data, GPUs)
  2. `<config dir>/_<profile>.yaml` if present   (the research question's profile-specific deltas)
  3. the run YAML itself (with its own `_base_` chain), then its `by_profile: {<profile>: {...}}` section
  4. dotted overrides
then validates the result into a RunConfig, raising ConfigError on any unknown key or wrong type.
"""
from __future__ import annotations

import copy
import dataclasses
import typing
from pathlib import Path

import yaml

from common.fsutil import atomic_write_text
from common.paths import CODE_ROOT, shown

from .loader import (ConfigError, apply_overrides, build_dataclass, config_hash, deep_merge,
                     load_yaml_with_bases, to_dict)
from .schema import (CPPConfig, EvalConfig, MEPConfig, NegativesConfig, OptimConfig, PretrainConfig,
                     RunConfig, RuntimeConfig)

PROFILES_DIR = CODE_ROOT / "experiments" / "profiles"
PROFILES = ("tiny", "paper", "smoke")
DEFAULT_PROFILE = "tiny"

__all__ = [
    "ConfigError", "RunConfig", "EvalConfig", "PretrainConfig", "OptimConfig", "MEPConfig", "CPPConfig",
    "NegativesConfig", "RuntimeConfig", "load_config", "resolve_dict", "save_config", "config_hash",
    "to_dict", "explain_config", "resolve_layers", "NON_RESULT_KEYS", "without_keys", "PROFILES", "DEFAULT_PROFILE",
]


def resolve_layers(path: str | Path, overrides: list[str] | None = None, profile: str | None = None
                   ) -> tuple[dict, list[tuple[str, dict]]]:
    """The merged plain-dict config (before validation; see the module docstring for the order) and
    the layers it was merged from, as (where, partial dict) in merge order."""
    path = Path(path)
    run = load_yaml_with_bases(path)
    overrides = list(overrides or [])
    chosen = [o.partition("=")[2].strip() for o in overrides if o.partition("=")[0].strip() == "profile"]
    if chosen:  # `profile=X` selects the profile (as --profile X), it is not a label to overwrite
        if profile and chosen[-1] != profile:
            raise ConfigError(f"{path}: profile given twice: --profile {profile} and override profile={chosen[-1]}")
        profile = chosen[-1]
        overrides = [o for o in overrides if o.partition("=")[0].strip() != "profile"]
    profile = profile or run.get("profile") or DEFAULT_PROFILE
    if profile not in PROFILES:
        raise ConfigError(f"{path}: unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    profile_file = PROFILES_DIR / f"{profile}.yaml"
    layers = [(f"profile {shown(profile_file)}", load_yaml_with_bases(profile_file))]
    rq_profile = path.resolve().parent / f"_{profile}.yaml"
    if rq_profile.is_file():
        layers.append((f"RQ delta {shown(rq_profile)}", load_yaml_with_bases(rq_profile)))
    by_profile = run.pop("by_profile", {}) or {}
    if not isinstance(by_profile, dict) or set(by_profile) - set(PROFILES):
        raise ConfigError(f"{path}: by_profile must map profile names ({', '.join(PROFILES)}) to mappings")
    layers.append((f"run {shown(path)}", run))
    if isinstance(by_profile.get(profile), dict):
        layers.append((f"run {shown(path)} by_profile.{profile}", by_profile[profile]))
    merged: dict = {}
    for _, layer in layers:
        merged = deep_merge(merged, layer)
    merged["profile"] = profile
    merged.setdefault("name", path.stem)
    if overrides:
        layers.append(("override", apply_overrides({}, overrides)))
    return apply_overrides(merged, overrides), layers


def resolve_dict(path: str | Path, overrides: list[str] | None = None, profile: str | None = None) -> dict:
    """Merged plain-dict config (before validation); see the module docstring for the order."""
    return resolve_layers(path, overrides, profile)[0]


def _leaves(d: dict, prefix: str = "") -> dict[str, object]:
    """Dotted key -> value; mappings recurse, lists (e.g. downstream) are one leaf."""
    out: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def explain_config(path: str | Path, overrides: list[str] | None = None, profile: str | None = None) -> str:
    """The fully resolved config, one `key: value  # where it came from` line per leaf (default, profile,
    RQ delta, run file, override); what `--print-config` prints."""
    data, layers = resolve_layers(path, overrides, profile)
    cfg = build_dataclass(RunConfig, data, source=_source(path, overrides))
    origin: dict[str, str] = {"profile": "profile (--profile / the run file / default tiny)",
                              "name": "the run file's name"}
    for where, layer in layers:  # later layers win, as in the merge
        origin.update(dict.fromkeys(_leaves(layer), where))
    lines = []
    for key, value in _leaves(to_dict(cfg)).items():
        where = origin.get(key) or next((origin[p] for p in _parents(key) if p in origin), "default (schema.py)")
        items = list(enumerate(value)) if isinstance(value, list) and value and isinstance(value[0], dict) else None
        for label, v in ([(f"{key}[{i}]", v) for i, v in items] if items else [(key, value)]):
            text = yaml.safe_dump(v, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()
            lines.append(f"{label}: {text}  # {where}")
    return "\n".join(lines)


def _parents(key: str) -> list[str]:
    parts = key.split(".")
    return [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]


def load_config(path: str | Path, overrides: list[str] | None = None, profile: str | None = None) -> RunConfig:
    """Load, merge and validate one run config. Raises ConfigError naming file, key and expected type."""
    return build_dataclass(RunConfig, resolve_dict(path, overrides, profile), source=_source(path, overrides))


def _source(path: str | Path, overrides: list[str] | None) -> str:
    """How a config error names where the config came from."""
    return str(path) + (f" (+ overrides {' '.join(overrides)})" if overrides else "")


# resolved-config keys that never change a result, marked on the schema classes (NO_RESULT): where
# results go, logging cadence, loader workers, where video is normalised (the same float32 operations
# either way) and whether an identical pretraining is reused (experiments/run_folder.py result_hash,
# experiments/pretrain_reuse.py; tables/aggregate.py SEED_FREE_KEYS mirrors them, since tables do not
# import experiments)
def _no_result_keys(cls: type, prefix: str = "") -> tuple[str, ...]:
    """Dotted keys of the fields a schema class marks in its NO_RESULT (nested config classes included)."""
    hints = typing.get_type_hints(cls)
    marked = getattr(cls, "NO_RESULT", ())
    unknown = [name for name in marked if name not in {f.name for f in dataclasses.fields(cls)}]
    if unknown:  # a typo would silently put the field back into the hash
        raise TypeError(f"{cls.__name__}.NO_RESULT names no field: {', '.join(unknown)}")
    keys = [prefix + name for name in marked]
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            keys += _no_result_keys(hints[f.name], f"{prefix}{f.name}.")
    return tuple(keys)


NON_RESULT_KEYS = _no_result_keys(RunConfig)


def without_keys(config: dict, dotted: tuple[str, ...] = NON_RESULT_KEYS) -> dict:
    """A deep copy of a resolved config dict without the given dotted keys (missing ones are fine)."""
    out = copy.deepcopy(config)
    for key in dotted:
        *parents, last = key.split(".")
        node = out
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return out


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
