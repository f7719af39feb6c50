"""Small file-system helpers: atomic writes and an inter-process lock; the one implementation that data,
model, tables and experiments all use (it imports no project module).
"""
from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's 0600 would hide results from a group


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Temp file in the same folder + fsync + rename: readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save through a temp file + rename, so a kill mid-write keeps the previous file."""
    import torch  # lazy: the preparers and the generator do not need torch to write their files

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: Any, indent: int = 2) -> None:
    """Sorted keys, one trailing newline; the data tools' small files (shards, corpus stamps) pass indent=1."""
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    with open(path) as f:
        return json.load(f)


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Exclusive advisory lock (fcntl.flock) held for the `with` block; blocks until it is free.

    flock is released by the kernel when the process dies, so a crashed holder never wedges others.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
