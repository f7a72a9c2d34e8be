"""Pareto dominance over several objectives: dominance, non-dominated sorting, crowding distance (NSGA-II) and the 2-D hypervolume.

Every function takes objective vectors **to maximise** (tuples of floats of one length): a
caller negates an objective it minimises (``storage.objectives.oriented``). Pure functions of
their arguments, no cellsearch imports: the strategies, the run's readers and the analysis
share them.

* ``dominates(a, b)``: ``a`` is at least as good as ``b`` everywhere and better somewhere.
* ``non_dominated_sort(points)``: Deb et al. 2002's fast non-dominated sort, the fronts as
  lists of indices (front 0 is the Pareto front); equal points share a front.
* ``crowding_distance(points, front)``: NSGA-II's crowding distance of each member of one
  front (the extremes of every objective are infinitely far; a larger distance is a member in
  a sparser region).
* ``hypervolume_2d(points, reference)``: the area dominated by ``points`` and dominating
  ``reference`` (two maximised objectives; points that do not dominate the reference add nothing).
"""

from __future__ import annotations

import math
from typing import Sequence

Vector = Sequence[float]


def dominates(a: Vector, b: Vector) -> bool:
    """Whether ``a`` Pareto-dominates ``b`` (maximising every objective)."""
    if len(a) != len(b):
        raise ValueError(f"vectors of different lengths: {len(a)} and {len(b)}")
    better = False
    for x, y in zip(a, b):
        if x < y:
            return False
        if x > y:
            better = True
    return better


def non_dominated_sort(points: Sequence[Vector]) -> list[list[int]]:
    """The indices of ``points`` sorted into fronts (front 0 non-dominated, front k dominated only by
    members of fronts before it); within a front, indices ascend."""
    n = len(points)
    dominated_by: list[list[int]] = [[] for _ in range(n)]  # i -> the points i dominates
    count = [0] * n  # how many points dominate i
    for i in range(n):
        for j in range(i + 1, n):
            if dominates(points[i], points[j]):
                dominated_by[i].append(j)
                count[j] += 1
            elif dominates(points[j], points[i]):
                dominated_by[j].append(i)
                count[i] += 1
    fronts: list[list[int]] = []
    current = [i for i in range(n) if count[i] == 0]
    while current:
        fronts.append(sorted(current))
        following = []
        for i in current:
            for j in dominated_by[i]:
                count[j] -= 1
                if count[j] == 0:
                    following.append(j)
        current = following
    return fronts


def pareto_ranks(points: Sequence[Vector]) -> list[int]:
    """Each point's front number in ``non_dominated_sort`` (0: on the Pareto front)."""
    ranks = [0] * len(points)
    for k, front in enumerate(non_dominated_sort(points)):
        for i in front:
            ranks[i] = k
    return ranks


def crowding_distance(points: Sequence[Vector], front: Sequence[int]) -> dict[int, float]:
    """NSGA-II's crowding distance of each index of ``front`` among the others of that front: per
    objective, the normalised gap between its two neighbours, summed; the extremes (and every
    member of a front of two or fewer) get infinity."""
    distance = {i: 0.0 for i in front}
    if len(front) <= 2:
        return {i: math.inf for i in front}
    for m in range(len(points[front[0]])):
        order = sorted(front, key=lambda i: (points[i][m], i))
        low, high = points[order[0]][m], points[order[-1]][m]
        distance[order[0]] = distance[order[-1]] = math.inf
        if high == low:
            continue
        for k in range(1, len(order) - 1):
            distance[order[k]] += (points[order[k + 1]][m] - points[order[k - 1]][m]) / (high - low)
    return distance


def hypervolume_2d(points: Sequence[Vector], reference: Vector) -> float:
    """The area dominated by ``points`` (two maximised objectives) and dominating ``reference``."""
    if len(reference) != 2 or any(len(p) != 2 for p in points):
        raise ValueError("hypervolume_2d takes two objectives")
    rx, ry = reference
    inside = sorted(((x, y) for x, y in points if x > rx and y > ry), key=lambda p: (-p[0], -p[1]))
    area, top = 0.0, ry
    for x, y in inside:  # by x descending: each point adds the strip above the best y so far
        if y > top:
            area += (x - rx) * (y - top)
            top = y
    return area


__all__ = ["crowding_distance", "dominates", "hypervolume_2d", "non_dominated_sort", "pareto_ranks"]
