"""The layering rule: model, data and tables never import experiments (configs flow one way; the lower
layers stay usable without the training code), and common/ (atomic I/O, paths, provenance) imports no
project package at all. Read from the source with ast, so a lazy import inside a function counts too."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("model", "data", "experiments", "tables", "slurm")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _offenders(packages: tuple[str, ...], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    out = {}
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            bad = sorted(m for m in imported_modules(path) if m.split(".")[0] in forbidden)
            if bad:
                out[path.relative_to(ROOT).as_posix()] = bad
    return out


def test_model_data_and_tables_do_not_import_experiments():
    offenders = _offenders(("model", "data", "tables"), ("experiments",))
    assert not offenders, f"imports of experiments from a lower layer: {offenders}"


def test_common_imports_no_project_package():
    offenders = _offenders(("common",), PROJECT)
    assert not offenders, f"common/ must stay below every layer: {offenders}"


def test_the_repository_root_is_computed_in_common_only():
    """One place says where the code and the data are (common/paths.py); a second computation drifts
    (only one of six honoured AVBERT_ROOT before). Scripts that put the root on sys.path so that
    `python tables/make_table1.py` works from a clone are the exception: they run before any import."""
    computed = {}
    for package in ("model", "data", "experiments", "tables", "common"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if "resolve().parents[" in line and "sys.path" not in line and "_ROOT =" not in line:
                    computed[f"{path.relative_to(ROOT).as_posix()}:{n}"] = line.strip()
    assert set(computed) <= {"common/paths.py:14"}, computed


def test_tables_mirror_of_the_keys_that_never_change_a_result():
    """tables/aggregate.py cannot import experiments, so it mirrors experiments.config.NON_RESULT_KEYS:
    a key added there (e.g. data.normalize_video) must be allowed to differ between seeds here too."""
    from experiments.config import NON_RESULT_KEYS
    from tables.aggregate import SEED_FREE_KEYS

    assert set(SEED_FREE_KEYS) == set(NON_RESULT_KEYS) | {"name", "seed"}
