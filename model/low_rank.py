"""Low-rank, partly shared dense maps: the paper's "Part" sharing (released `FactorLinear`).

Each dense map W (d_in -> d_out) of a transformer layer becomes, for modality group g,

    x -> U( normalize(V_g x) @ R_g ) + b

with V_g (d_in -> rank, no bias) and R_g (rank x rank, orthogonal) private to the group, and U
(rank -> d_out) plus its bias shared by all groups. As in the released code, R_g is a full
orthogonal matrix (not a diagonal of singular values), kept exactly orthogonal by the matrix
exponential of a skew-symmetric matrix built from a free parameter A_g (only its strict upper
triangle matters, but A_g is stored, and counted, as rank x rank like the released code), and the
L2 normalisation makes every factored map invariant to the scale of its input.
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn


class Dense(nn.Linear):
    """nn.Linear that accepts (and ignores) the modality group, so layers can use either map."""

    def forward(self, x: torch.Tensor, group: int = 0) -> torch.Tensor:  # noqa: ARG002
        return super().forward(x)


def skew(a: torch.Tensor) -> torch.Tensor:
    upper = torch.triu(a, diagonal=1)
    return upper - upper.transpose(-1, -2)


def cayley_init_(a: torch.Tensor) -> torch.Tensor:
    """Block-diagonal 2x2 rotations with angle theta ~ U[0, pi/2] (released ORTHOGONAL_INIT=cayley)."""
    with torch.no_grad():
        a.zero_()
        n = a.shape[0] // 2
        theta = torch.empty(n).uniform_(0.0, math.pi / 2)
        idx = torch.arange(n) * 2
        a[idx, idx + 1] = -torch.tan(theta / 2)
    return a


class FactorLinear(nn.Module):
    """`groups` private (V_g, R_g) pairs in front of one shared U; forward(x, group)."""

    def __init__(self, groups: int, d_in: int, rank: int, d_out: int):
        super().__init__()
        self.groups, self.rank = groups, rank
        self.down = nn.ParameterList([nn.Parameter(torch.empty(rank, d_in)) for _ in range(groups)])
        self.rot = nn.ParameterList([nn.Parameter(cayley_init_(torch.empty(rank, rank))) for _ in range(groups)])
        self.up = nn.Linear(rank, d_out)
        self._cache: dict[int, torch.Tensor] | None = None
        for v in self.down:
            nn.init.kaiming_uniform_(v, a=math.sqrt(5))

    def rotation(self, group: int) -> torch.Tensor:
        """R_g = exp(skew(A_g)), exactly orthogonal; computed once per forward inside `cached_rotations`."""
        if self._cache is not None and group in self._cache:
            return self._cache[group]
        a = self.rot[group]
        # in the parameter's dtype (float64 models stay exact to ~1e-15), at least float32 (bf16 / fp16
        # parameters would make the exponential inaccurate)
        r = torch.linalg.matrix_exp(skew(a.to(torch.promote_types(a.dtype, torch.float32))))
        if self._cache is not None:
            self._cache[group] = r
        return r

    def forward(self, x: torch.Tensor, group: int = 0) -> torch.Tensor:
        z = F.normalize(F.linear(x, self.down[group]), dim=-1)
        z = z @ self.rotation(group).to(z.dtype)
        return self.up(z)


@contextlib.contextmanager
def cached_rotations(module: nn.Module):
    """Within the block every FactorLinear computes each R_g once, however often it is applied
    (cross-layer sharing applies the same map 6 times per role)."""
    factors = [m for m in module.modules() if isinstance(m, FactorLinear)]
    for m in factors:
        m._cache = {}
    try:
        yield
    finally:
        for m in factors:
            m._cache = None
