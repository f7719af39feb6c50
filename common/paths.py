"""Where the code is and where relative paths in configs point.

Two roots, computed here and nowhere else:
* CODE_ROOT: the folder this code runs from (the checkout, or a job's code snapshot); profiles,
  cluster profiles and the paper's numbers ship with the code and are read from here.
* repo_root(): where data and results go, the checkout, even for jobs that run from a code snapshot
  (the launcher sets AVBERT_ROOT to the real root before submitting).
"""
from __future__ import annotations

import os
from pathlib import Path

CODE_ROOT = Path(__file__).resolve().parents[1]


def repo_root() -> Path:
    env = os.environ.get("AVBERT_ROOT")
    return Path(env).resolve() if env else CODE_ROOT


def resolve(path: str | Path) -> Path:
    """Absolute paths stay; relative ones are taken from the repository root, not the cwd."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else repo_root() / path


def shown(path: str | Path) -> str:
    """A path as a user would type it: relative to the repository root when inside it, else as given."""
    try:
        return str(Path(path).resolve().relative_to(repo_root()))
    except ValueError:
        return str(path)
