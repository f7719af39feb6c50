"""Decoded clips kept on disk: a clip's decode and log-mel are paid once per machine, not once per
epoch, run and seed (`data.decode_cache`, ours; on in the tiny profile and the tests' smoke profile).

Why: at the tiny size decoding a clip (5.5 ms) and its log-mel (1.4 ms) are 80 % of the loader's
8.6 ms per clip, and on 2 cores the loader worker takes CPU from the training step; every run and seed
of the tiny benchmark reads the same 8,944 clips, nearly all with one plan (8 s clips of 8 segments; the
jittered segments of downstream training clips add an entry per seed and clip). At paper size a
clip's decoded frames are about 50 MB (some 30 TB for Kinetics-700): leave it off there.

An entry is keyed by everything its arrays depend on: the mp4 bytes, the plan (frame indices, audio
starts and length), the decode and log-mel settings, and a fingerprint of the code and library
versions that compute them. So a hit returns exactly what decoding would (batches stay bit-identical)
and any change misses. Entries are written atomically (common.fsutil; its fsync costs about 0.5 ms
per entry, once per clip and machine); an entry that cannot be read is decoded and written again. A
cache that cannot be written (disk full, read-only) warns once per process and the loader goes on
decoding.
"""
from __future__ import annotations

import hashlib
import io
import warnings
import zipfile
from functools import lru_cache
from pathlib import Path

import av
import numpy as np
import torch
import torchaudio

from common import paths
from common.fsutil import atomic_write_bytes

_CODE = ("decode.py", "transforms.py", "samples.py")  # the code whose output an entry holds


@lru_cache(maxsize=1)
def fingerprint() -> bytes:
    """Digest of the modules that decode and transform clips and of the libraries they call: a change
    of either makes every existing entry miss."""
    h = hashlib.blake2b(digest_size=16)
    here = Path(__file__).resolve().parent
    for name in _CODE:
        h.update((here / name).read_bytes())
    h.update(f"av {av.__version__} torch {torch.__version__} torchaudio {torchaudio.__version__} "
             f"numpy {np.__version__}".encode())
    return h.digest()


class DecodeCache:
    """Entries `<root>/<kk>/<key>.npz` (uncompressed), one per (clip bytes, plan, settings)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.writable = True

    @staticmethod
    def key(data: bytes, *parts: object, arrays: tuple[np.ndarray, ...] = ()) -> str:
        """Hex key of the mp4 bytes, the settings (`parts`, by repr) and the plan's arrays (by value)."""
        h = hashlib.blake2b(fingerprint(), digest_size=20)
        h.update(data)
        h.update(repr(parts).encode())
        for a in arrays:
            a = np.ascontiguousarray(a)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
        return h.hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        """The entry's arrays, or None when it is missing or unreadable."""
        try:
            with np.load(self.path(key), allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):  # missing, truncated, not a zip
            return None

    def store(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        if not self.writable:
            return
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        try:
            atomic_write_bytes(self.path(key), buf.getvalue())
        except OSError as e:
            self.writable = False
            warnings.warn(f"data.decode_cache {self.root} cannot be written ({e}); decoding without it", stacklevel=2)


def cache_at(root: str) -> DecodeCache | None:
    """The process's cache for a `data.decode_cache` value ("" = off; relative paths from the repository
    root, like data.root)."""
    return _cache(paths.resolve(root)) if root else None


@lru_cache(maxsize=8)
def _cache(root: Path) -> DecodeCache:
    return DecodeCache(root)
