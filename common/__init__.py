"""Ground-level utilities that every layer uses: atomic file writes and the lock (`fsutil`), where the
repository is (`paths`), which code and libraries produced a result (`provenance`).

Why a package of its own: model, data, tables and experiments all need these, and the layering rule
(tests/test_layering.py) lets no lower layer import experiments; so they live below all of them and
import none of them.
"""
