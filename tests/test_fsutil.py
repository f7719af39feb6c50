"""Atomic writes: the file appears whole or not at all, with the permissions open() would give."""
from __future__ import annotations

import os
import stat

import pytest

from common.fsutil import atomic_write_bytes


def test_atomic_write_replaces_whole_and_is_readable_by_the_group(tmp_path):
    old = os.umask(0o022)
    try:
        import importlib

        import common.fsutil as fsutil

        importlib.reload(fsutil)  # the mode is derived from the umask at import
        target = tmp_path / "sub" / "metrics.json"
        fsutil.atomic_write_bytes(target, b"one")
        fsutil.atomic_write_bytes(target, b"two")
        assert target.read_bytes() == b"two"
        assert stat.S_IMODE(target.stat().st_mode) == 0o644
        assert [p.name for p in target.parent.iterdir()] == ["metrics.json"]  # no temp file left
    finally:
        os.umask(old)
        importlib.reload(fsutil)


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "last.pt"
    atomic_write_bytes(target, b"good")

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"half")
    assert target.read_bytes() == b"good" and [p.name for p in tmp_path.iterdir()] == ["last.pt"]
