"""Fixtures shared by several test modules."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture
def restore_threads():
    """The probes' CLIs set torch's thread count (--threads); put it back for the tests after them."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)
