"""Pareto dominance, non-dominated sorting, crowding distance and 2-D hypervolume: hand-computed fronts and properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings, strategies as st

from cellsearch.pareto import crowding_distance, dominates, hypervolume_2d, non_dominated_sort, pareto_ranks

POINTS = [(1.0, 5.0), (2.0, 4.0), (3.0, 3.0), (2.0, 2.0), (1.0, 1.0), (4.0, 1.0), (0.5, 0.5)]


def test_dominates():
    assert dominates((2, 2), (1, 2)) and dominates((2, 3), (1, 2))
    assert not dominates((1, 2), (1, 2))  # equal: neither
    assert not dominates((3, 1), (1, 3)) and not dominates((1, 3), (3, 1))
    with pytest.raises(ValueError):
        dominates((1,), (1, 2))


def test_sort_hand_computed():
    # front 0: (1,5) (2,4) (3,3) (4,1); then (2,2); then (1,1); then (0.5,0.5)
    assert non_dominated_sort(POINTS) == [[0, 1, 2, 5], [3], [4], [6]]
    assert pareto_ranks(POINTS) == [0, 0, 0, 1, 2, 0, 3]
    assert non_dominated_sort([(1, 1), (1, 1)]) == [[0, 1]]  # equal points share a front
    assert non_dominated_sort([]) == []


def test_crowding_hand_computed():
    front = [0, 1, 2, 5]  # x: 1,2,3,4 (range 3); y: 5,4,3,1 (range 4)
    d = crowding_distance(POINTS, front)
    assert d[0] == d[5] == math.inf
    assert d[1] == pytest.approx((3 - 1) / 3 + (5 - 3) / 4)
    assert d[2] == pytest.approx((4 - 2) / 3 + (4 - 1) / 4)
    assert crowding_distance(POINTS, [3, 4]) == {3: math.inf, 4: math.inf}


def test_hypervolume_hand_computed():
    # staircase over reference (0, 0): (1,5) (2,4) (3,3) (4,1) -> 1*5 + 1*4 + 1*3 + 1*1 ... by strips
    assert hypervolume_2d([(1, 5), (2, 4), (3, 3), (4, 1)], (0, 0)) == pytest.approx(4 * 1 + 3 * 2 + 2 * 1 + 1 * 1)
    assert hypervolume_2d([(2, 2)], (0, 0)) == 4
    assert hypervolume_2d([(2, 2), (1, 1)], (0, 0)) == 4  # a dominated point adds nothing
    assert hypervolume_2d([(2, 2), (-1, 5)], (0, 0)) == 4  # nor one that does not dominate the reference
    assert hypervolume_2d([], (0, 0)) == 0
    with pytest.raises(ValueError):
        hypervolume_2d([(1, 2, 3)], (0, 0))


vectors = st.lists(st.tuples(st.integers(-5, 5), st.integers(-5, 5)).map(lambda t: (float(t[0]), float(t[1]))),
                   max_size=25)


@settings(max_examples=60, deadline=None)
@given(vectors)
def test_sort_properties(points):
    fronts = non_dominated_sort(points)
    assert sorted(i for f in fronts for i in f) == list(range(len(points)))  # a partition
    for k, front in enumerate(fronts):
        for i in front:
            assert not any(dominates(points[j], points[i]) for j in front)  # no dominance within a front
            if k:
                assert any(dominates(points[j], points[i]) for j in fronts[k - 1])  # dominated by the front before


@settings(max_examples=60, deadline=None)
@given(vectors, st.tuples(st.integers(-3, 3), st.integers(-3, 3)))
def test_hypervolume_properties(points, extra):
    ref = (-6.0, -6.0)
    hv = hypervolume_2d(points, ref)
    front = [points[i] for i in non_dominated_sort(points)[0]] if points else []
    assert hv == pytest.approx(hypervolume_2d(front, ref))  # only the front counts
    assert hypervolume_2d(points + [tuple(map(float, extra))], ref) >= hv - 1e-9  # monotone in the set
    # bounded by the box of the best values
    if points:
        assert hv <= (max(p[0] for p in points) - ref[0]) * (max(p[1] for p in points) - ref[1]) + 1e-9
