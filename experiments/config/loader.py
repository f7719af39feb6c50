"""YAML -> validated dataclass config.

Why a small hand-written layer and not OmegaConf/Hydra: the user's stack is pyyaml only, and the
rules we need are few and strict: `_base_` inheritance, dotted CLI overrides, and an error that names
the file, the dotted key and the expected type for every unknown key or wrong type, raised before
anything is submitted.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml


class ConfigError(ValueError):
    """A config file, override or value is invalid. The message names source, key and expectation."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"{node.start_mark.name}: line {key_node.start_mark.line + 1}: duplicate key '{key}'")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

_FLOAT_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def read_yaml(path: str | Path) -> dict:
    """Read one YAML mapping with safe_load semantics and duplicate-key rejection."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    with open(path) as f:
        data = yaml.load(f, Loader=_UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def deep_merge(base: dict, child: dict) -> dict:
    """Child overrides base; mappings merge recursively, lists and scalars replace."""
    out = dict(base)
    for k, v in child.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def load_yaml_with_bases(path: str | Path, _stack: tuple = ()) -> dict:
    """Resolve `_base_` (a path or list of paths, relative to the file) depth-first, then merge."""
    path = Path(path).resolve()
    if path in _stack:
        raise ConfigError(f"{path}: _base_ cycle: {' -> '.join(str(p) for p in _stack + (path,))}")
    data = read_yaml(path)
    bases = data.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: _base_ must be a path or a list of paths")
    merged: dict = {}
    for b in bases:
        merged = deep_merge(merged, load_yaml_with_bases(path.parent / b, _stack + (path,)))
    return deep_merge(merged, data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (['a','b','c'], value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}': expected dotted.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{text}': empty key")
    try:
        value = yaml.load(raw, Loader=_UniqueKeyLoader) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override '{text}': value is not valid YAML: {e}") from None
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Set dotted keys in a nested dict (creating intermediate mappings); validation comes later."""
    data = json.loads(json.dumps(data))  # deep copy of plain data
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            if not isinstance(node.get(k, {}), dict):
                raise ConfigError(f"override '{text}': '{k}' is not a mapping")
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return data


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin in (list, tuple):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping of {_type_name(get_args(tp)[1])}"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return f"mapping ({tp.__name__})"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, where: str, source: str) -> Any:
    """Check `value` against annotation `tp`; return the converted value or raise ConfigError."""
    def fail() -> typing.NoReturn:
        raise ConfigError(f"{source}: key '{where}': expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")

    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, where, source)
            except ConfigError as e:
                errors.append(e)
        fail()
    if origin is Literal:
        if value in get_args(tp):
            return value
        fail()
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            fail()
        return build_dataclass(tp, value, source=source, prefix=where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            fail()
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{source}: key '{where}': expected {len(args)} items, got {len(value)}")
            return tuple(_convert(v, a, f"{where}[{i}]", source) for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [_convert(v, item, f"{where}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            fail()
        kt, vt = get_args(tp) or (str, Any)
        return {_convert(k, kt, where, source): _convert(v, vt, f"{where}.{k}", source) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        fail()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        fail()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        # PyYAML (YAML 1.1) reads `1e-4` as a string; accept plain numeric strings for float keys.
        if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
            return float(value)
        fail()
    if tp is str:
        if isinstance(value, str):
            return value
        fail()
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        fail()
    raise TypeError(f"unsupported annotation {tp!r} for {where}")


def _bounds(rng: tuple) -> tuple:
    """A RANGES entry (lo, hi[, lo_open[, hi_open]]) with the open flags filled in (closed by default)."""
    return (*rng, False, False)[:4]


def range_text(rng: tuple) -> str:
    """(lo, hi[, lo_open[, hi_open]]) -> '> 0', '>= 1', 'in [0, 1]', 'in [0, 1)' ..."""
    lo, hi, lo_open, hi_open = _bounds(rng)
    if hi is None:
        return f"{'>' if lo_open else '>='} {lo}"
    return f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"


def check_range(value: Any, rng: tuple, where: str, source: str) -> None:
    """A number (or each number of a list / tuple) inside the field's declared RANGES entry."""
    lo, hi, lo_open, hi_open = _bounds(rng)
    for v in value if isinstance(value, (list, tuple)) else (value,):
        if v is None:
            continue
        bad = (v <= lo if lo_open else v < lo) or (hi is not None and (v >= hi if hi_open else v > hi))
        if bad:
            raise ConfigError(f"{source}: key '{where}': must be {range_text(rng)}, got {value!r}")


def build_dataclass(cls: type, data: dict, *, source: str = "<config>", prefix: str = "") -> Any:
    """Build `cls` from a nested dict: unknown keys and wrong types raise ConfigError naming the key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: key '{prefix or '<root>'}': expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"{source}: unknown key{'s' if len(unknown) > 1 else ''} "
            + ", ".join(f"'{where}{k}'" for k in unknown)
            + f"; valid keys{' under ' + repr(prefix) if prefix else ''}: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    ranges = getattr(cls, "RANGES", {})
    for name, value in data.items():
        where = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _convert(value, hints[name], where, source)
        if name in ranges:
            check_range(kwargs[name], ranges[name], where, source)
    try:
        obj = cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: key '{prefix}': {e}" if prefix else f"{source}: {e}") from None
    return obj


def to_dict(obj: Any) -> Any:
    """Dataclass tree -> plain YAML/JSON-friendly data (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def config_hash(obj: Any) -> str:
    """Stable short hash of a resolved config (canonical JSON)."""
    blob = json.dumps(to_dict(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
