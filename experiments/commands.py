"""Installed commands (`pip install -e .`, pyproject.toml [project.scripts]); each is the same code as
the script a plain clone runs:

    avbert-run --config X [...]          = python experiments/run.py --config X [...]
    avbert-launch rq3_sharing [...]      = python experiments/rq3_sharing/launch.py [...]
"""
from __future__ import annotations

import sys
from pathlib import Path

from common.paths import CODE_ROOT
from experiments import launcher
from experiments import run as run_module

RQ_ROOT = CODE_ROOT / "experiments"


def research_questions() -> list[str]:
    """The folders that hold a research question: a launch.py beside a configs/ folder."""
    return sorted(p.parent.name for p in RQ_ROOT.glob("*/launch.py") if (p.parent / "configs").is_dir())


def config_path(arg: str) -> str:
    """An installed command runs from any folder: a relative --config that is not there is looked up
    in the checkout (experiments/rq3_sharing/configs/part.yaml works from anywhere)."""
    path = Path(arg)
    if path.is_absolute() or path.exists() or not (CODE_ROOT / path).exists():
        return arg
    return str(CODE_ROOT / path)


def run(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            argv[i] = "--config=" + config_path(arg.partition("=")[2])
        elif arg == "--config" and i + 1 < len(argv):
            argv[i + 1] = config_path(argv[i + 1])
    return run_module.main(argv)


def launch(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    known = research_questions()
    if not argv or argv[0] not in known:
        given = f"unknown research question {argv[0]!r}; " if argv and not argv[0].startswith("-") else ""
        print(f"usage: avbert-launch RQ [launcher options] [key=value ...]\n{given}RQ is one of: {', '.join(known)}"
              "\n(avbert-launch RQ --help lists the options)", file=sys.stderr)
        return 2
    return launcher.main(rq_dir=RQ_ROOT / argv[0], argv=argv[1:])
