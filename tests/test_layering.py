"""The layering rule: model, data and tables never import experiments (configs flow one way; the lower
layers stay usable without the training code). Read from the source with ast, so a lazy import inside
a function counts too."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the known exceptions, to be moved to a ground-level home (issue 14): the loader and preparation
# benchmarks write their JSON with the training code's provenance (git state, versions) and repository root
KNOWN = {"data/bench_loader.py", "data/bench_prepare.py"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_model_data_and_tables_do_not_import_experiments():
    offenders = {}
    for package in ("model", "data", "tables"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            bad = sorted(m for m in imported_modules(path) if m == "experiments" or m.startswith("experiments."))
            if bad and rel not in KNOWN:
                offenders[rel] = bad
    assert not offenders, f"imports of experiments from a lower layer: {offenders}"
    for rel in KNOWN:  # an exception that no longer applies is removed from the list
        assert any(m.startswith("experiments") for m in imported_modules(ROOT / rel)), rel


def test_tables_mirror_of_the_keys_that_never_change_a_result():
    """tables/aggregate.py cannot import experiments, so it mirrors experiments.config.NON_RESULT_KEYS:
    a key added there (e.g. data.normalize_video) must be allowed to differ between seeds here too."""
    from experiments.config import NON_RESULT_KEYS
    from tables.aggregate import SEED_FREE_KEYS

    assert set(SEED_FREE_KEYS) == set(NON_RESULT_KEYS) | {"name", "seed"}
