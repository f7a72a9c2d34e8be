"""The statistics behind honest comparisons: confidence intervals, Welch's t-test, win rates and
rank correlations (scipy does the distributions).

Used by the final evaluation protocol (``cellsearch evaluate``), the search-fidelity report
(``cellsearch fidelity``) and the gate study. Every function takes plain sequences of numbers
and ignores non-finite ones (a run that diverged has no score to average).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence


def finite(values: Sequence[float | None]) -> list[float]:
    """The values that are numbers and finite, as floats (None, NaN and infinities left out)."""
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


@dataclass(frozen=True)
class Interval:
    """Mean with a two-sided Student-t confidence interval (NaN bounds with fewer than two values)."""

    n: int
    mean: float
    std: float  # sample standard deviation (ddof=1)
    lo: float
    hi: float
    confidence: float = 0.95

    @property
    def half_width(self) -> float:
        """Half the interval's width: the ± of ``text`` (NaN with fewer than two values)."""
        return (self.hi - self.lo) / 2

    def overlaps(self, other: "Interval") -> bool:
        """Whether the two intervals share a point (unknown bounds count as overlapping)."""
        if any(math.isnan(v) for v in (self.lo, self.hi, other.lo, other.hi)):
            return True
        return self.lo <= other.hi and other.lo <= self.hi

    def text(self, fmt: str = ".4f") -> str:
        """``mean ± half width`` for a table ("–" with no value, ``mean (n=1)`` with one)."""
        if self.n == 0:
            return "–"
        if self.n == 1 or math.isnan(self.lo):
            return f"{self.mean:{fmt}} (n=1)"
        return f"{self.mean:{fmt}} ± {self.half_width:{fmt}}"


def mean_ci(values: Sequence[float | None], confidence: float = 0.95) -> Interval:
    """Mean and ``confidence`` interval of the mean: mean ± t(1-α/2, n-1) · s/√n."""
    from scipy import stats

    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    xs = finite(values)
    n = len(xs)
    if n == 0:
        return Interval(0, math.nan, math.nan, math.nan, math.nan, confidence)
    mean = sum(xs) / n
    if n == 1:
        return Interval(1, mean, math.nan, math.nan, math.nan, confidence)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return Interval(n, mean, std, mean - half, mean + half, confidence)


def welch(a: Sequence[float | None], b: Sequence[float | None]) -> tuple[float, float]:
    """Welch's unequal-variance t-test of mean(a) vs mean(b): ``(t, two-sided p)``.

    NaN with fewer than two values on a side. Two samples without any spread have no t
    distribution: equal means give ``(0, 1)``, different ones ``(±inf, 0)``.
    """
    from scipy import stats

    xa, xb = finite(a), finite(b)
    if len(xa) < 2 or len(xb) < 2:
        return math.nan, math.nan
    ma, mb = sum(xa) / len(xa), sum(xb) / len(xb)
    if max(xa) == min(xa) and max(xb) == min(xb):
        return (0.0, 1.0) if ma == mb else (math.copysign(math.inf, ma - mb), 0.0)
    with warnings.catch_warnings():  # nearly equal samples: scipy's precision-loss warning
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_ind(xa, xb, equal_var=False)
    return float(res.statistic), float(res.pvalue)


def win_rate(a: dict[int, float | None], b: dict[int, float | None]) -> tuple[float, int]:
    """How often ``a`` beats ``b`` over the seeds both ran (paired by seed; a tie counts half).

    A seed where only one side has a finite score counts as a win for that side. Returns
    ``(rate, pairs)``; the rate is NaN when no seed is shared.
    """
    wins, pairs = 0.0, 0
    for seed in sorted(set(a) & set(b)):
        va, vb = finite([a[seed]]), finite([b[seed]])
        if not va and not vb:
            continue
        pairs += 1
        if va and (not vb or va[0] > vb[0]):
            wins += 1
        elif va and vb and va[0] == vb[0]:
            wins += 0.5
    return (wins / pairs if pairs else math.nan), pairs


@dataclass(frozen=True)
class RankCorrelation:
    n: int
    spearman: float
    spearman_p: float
    kendall: float
    kendall_p: float


def rank_correlation(x: Sequence[float], y: Sequence[float]) -> RankCorrelation:
    """Spearman's ρ and Kendall's τ (τ-b, with ties) between paired values; pairs with a
    non-finite side are left out. NaN with fewer than three pairs or a constant side."""
    from scipy import stats

    pairs = [(float(a), float(b)) for a, b in zip(x, y)
             if a is not None and b is not None and math.isfinite(float(a)) and math.isfinite(float(b))]
    n = len(pairs)
    xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
    if n < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return RankCorrelation(n, math.nan, math.nan, math.nan, math.nan)
    rho = stats.spearmanr(xs, ys)
    tau = stats.kendalltau(xs, ys)
    return RankCorrelation(n, float(rho.statistic), float(rho.pvalue), float(tau.statistic), float(tau.pvalue))
