"""Code snapshots: queued jobs run the code as it was at submission, not as it is when they start.

Why: a submitit job unpickles module *references* and imports them when it starts (submitit
docs/tips.md), and plain sbatch jobs read the .py files when they start; editing the tree while runs
queue or requeue would silently mix code versions inside one sweep. The launcher copies the code into
`<results>/.snapshots/<content hash>/` and submits from there (the job's working directory, hence the
first entry of its sys.path). Results and data still go to the real checkout: the job gets the real
root as AVBERT_ROOT and an absolute output_root.

Why not `submitit.helpers.RsyncSnapshot`: it snapshots only files committed to git (a new, not yet
committed module makes every job fail with ImportError), it clones the repository per snapshot, it
runs a shell pipeline, and it chdir()s the launching process for the whole `with` block. Ours copies
the tracked *and* untracked-but-not-ignored code files (`git ls-files --cached --others
--exclude-standard`; a plain directory walk without git), is content-addressed (relaunching unchanged
code reuses the same folder), is written to a temporary folder and renamed (never half-copied), and
records the origin commit + dirty flag in SNAPSHOT_COMMIT for provenance.json.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

CODE_SUFFIXES = {".py", ".yaml", ".yml", ".sh", ".sbatch", ".toml", ".txt", ".cfg", ".json"}
SKIP_TOP = {".git", ".venv", "venv", "results", ".pytest_cache", ".submitit"}
SKIP_ANY = {"__pycache__", ".ipynb_checkpoints"}
SKIP_PREFIXES = ("data/cache/",)
DONE_MARK = ".complete"


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.decode() if out.returncode == 0 else None


def _wanted(rel: str) -> bool:
    parts = rel.split("/")
    return (parts[0] not in SKIP_TOP and not SKIP_ANY.intersection(parts)
            and not rel.startswith(SKIP_PREFIXES) and Path(rel).suffix in CODE_SUFFIXES)


def code_files(root: Path) -> list[str]:
    """Relative paths of the code/config files to snapshot, sorted."""
    root = Path(root)
    listed = _git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    if listed is not None:
        candidates = [f for f in listed.split("\0") if f]
    else:  # not a git checkout (e.g. a release tarball)
        candidates = []
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = Path(dirpath).relative_to(root).as_posix()
            dirnames[:] = [d for d in dirnames if not (rel_dir == "." and d in SKIP_TOP) and d not in SKIP_ANY]
            candidates += [f if rel_dir == "." else f"{rel_dir}/{f}" for f in filenames]
    return sorted(f for f in set(candidates) if _wanted(f) and (root / f).is_file())


def origin(root: Path) -> str:
    """'<commit> dirty|clean' of the checkout ('' outside git), as provenance.py expects."""
    commit = (_git(root, "rev-parse", "HEAD") or "").strip()
    if not commit:
        return ""
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return f"{commit} {'dirty' if status else 'clean'}"


def make_snapshot(root: Path, dest_root: Path) -> Path:
    """Copy the code of `root` into `dest_root/<hash16>/` (reused when it already exists); return it."""
    root, dest_root = Path(root).resolve(), Path(dest_root).resolve()
    files = code_files(root)
    stamp = origin(root)
    digest = hashlib.sha256(stamp.encode())
    for rel in files:
        digest.update(rel.encode() + b"\0" + (root / rel).read_bytes() + b"\0")
    dest = dest_root / digest.hexdigest()[:16]
    if (dest / DONE_MARK).is_file():
        return dest
    tmp = dest_root / f".tmp-{dest.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    for rel in files:
        target = tmp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)
    (tmp / "SNAPSHOT_COMMIT").write_text(stamp + "\n")
    (tmp / DONE_MARK).write_text(f"{len(files)} files from {root}\n")
    try:
        os.replace(tmp, dest)
    except OSError:  # another launcher made the same snapshot meanwhile (or a stale partial one exists)
        if not (dest / DONE_MARK).is_file():
            shutil.rmtree(dest, ignore_errors=True)
            os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
