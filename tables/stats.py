"""Mean and t-based 95 % confidence interval over a few seeds, without scipy: the tables and the claim
verdicts use the same helper, so a table's "± x" and a claim's CI always agree."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

# Two-sided 95 % (0.975 quantile) of Student's t, df = 1..30; beyond 30 the normal 1.96.
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
        2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
        2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
Z975 = 1.96


def t975(df: int) -> float:
    """0.975 quantile of t with `df` degrees of freedom (df >= 1)."""
    if df < 1:
        raise ValueError(f"t quantile needs df >= 1, got {df}")
    return T975[df - 1] if df <= len(T975) else Z975


@dataclass(frozen=True)
class MeanCI:
    """mean, sample std and 95 % CI half-width of n values; std/half are None when n < 2."""

    n: int
    mean: float | None
    std: float | None
    half: float | None

    @property
    def low(self) -> float | None:
        return None if self.half is None else self.mean - self.half

    @property
    def high(self) -> float | None:
        return None if self.half is None else self.mean + self.half


def mean_ci(values: list[float]) -> MeanCI:
    """Mean ± t(0.975, n-1) * std / sqrt(n); no interval from fewer than two values."""
    vals = [float(v) for v in values]
    n = len(vals)
    if n == 0:
        return MeanCI(0, None, None, None)
    mean = statistics.fmean(vals)
    if n < 2:
        return MeanCI(n, mean, None, None)
    std = statistics.stdev(vals)
    return MeanCI(n, mean, std, t975(n - 1) * std / math.sqrt(n))
