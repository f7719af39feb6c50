"""`avbert-tables 1|2|claims|curves [options]` (pip install -e .): the same code as
`python tables/make_table1.py`, `make_table2.py`, `make_claims.py` and `plot_curves.py`."""
from __future__ import annotations

import importlib
import sys

from tables.cli import run_main

WHICH = {"1": "make_table1", "2": "make_table2", "claims": "make_claims", "curves": "plot_curves"}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in WHICH:
        print(f"usage: avbert-tables {{{','.join(WHICH)}}} [options]  (avbert-tables 1 --help for the options)",
              file=sys.stderr)
        sys.exit(2)
    module = importlib.import_module(f"tables.{WHICH[argv[0]]}")
    run_main(lambda: module.main(argv[1:]))
