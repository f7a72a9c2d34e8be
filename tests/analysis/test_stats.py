"""The statistics of evaluation and fidelity (analysis.stats) on synthetic numbers with known
answers: Student-t intervals, Welch's test, win rates paired by seed, rank correlations."""

from __future__ import annotations

import math
import random

import pytest

from cellsearch.analysis.stats import mean_ci, rank_correlation, welch, win_rate


def test_confidence_interval_is_student_t():
    ci = mean_ci([1.0, 2.0, 3.0])
    assert ci.n == 3 and ci.mean == 2.0 and ci.std == 1.0
    assert ci.half_width == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)  # t(0.975, 2) · s/√n
    assert mean_ci([1.0, None, float("nan"), 3.0]).n == 2  # non-finite values are left out
    one = mean_ci([0.5])
    assert one.n == 1 and math.isnan(one.lo) and one.text() == "0.5000 (n=1)"
    assert mean_ci([]).n == 0


def test_welch_detects_a_known_difference_and_not_an_identical_pair():
    rng = random.Random(0)
    a = [0.60 + rng.gauss(0, 0.01) for _ in range(5)]
    b = [0.50 + rng.gauss(0, 0.01) for _ in range(5)]
    t, p = welch(a, b)
    assert t > 0 and p < 1e-4
    assert welch(a, list(a)) == pytest.approx((0.0, 1.0))
    assert welch([0.5, 0.5], [0.5, 0.5]) == (0.0, 1.0)  # no spread, equal means
    assert welch([0.6, 0.6], [0.5, 0.5])[1] == 0.0
    assert math.isnan(welch([0.5], [0.4, 0.3])[1])  # one value: no test


def test_win_rate_pairs_by_seed():
    assert win_rate({0: 0.9, 1: 0.8, 2: 0.1}, {0: 0.5, 1: 0.5, 2: 0.5}) == (pytest.approx(2 / 3), 3)
    assert win_rate({0: 0.5, 1: 0.5}, {0: 0.5, 1: 0.5}) == (0.5, 2)  # ties count half
    assert win_rate({0: 0.1, 1: None}, {0: 0.2, 1: 0.2, 5: 1.0}) == (0.0, 2)  # a failed run loses
    assert math.isnan(win_rate({0: 1.0}, {1: 1.0})[0])


def test_rank_correlation():
    x = [0.1, 0.2, 0.3, 0.4, 0.5]
    up = rank_correlation(x, [1, 2, 3, 4, 5])
    assert up.spearman == pytest.approx(1) and up.kendall == pytest.approx(1) and up.n == 5
    down = rank_correlation(x, [5, 4, 3, 2, 1])
    assert down.kendall == pytest.approx(-1)
    assert rank_correlation(x, [1, None, 3, float("nan"), 5]).n == 3
    assert math.isnan(rank_correlation([1, 2], [1, 2]).kendall)
