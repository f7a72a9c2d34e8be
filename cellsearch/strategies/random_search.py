"""Random search: every ask is an independent uniform sample of the space (the baseline).

``space.sample`` draws each decision uniformly and rejects invalid cells, so the distribution
is uniform over valid decision sequences (not over distinct cells: cells reachable by many
sequences are proportionally more likely). ``tell`` only counts results; with several
objectives too (they are only recorded: the run's Pareto front is read from results.db).
"""

from __future__ import annotations

from typing import Any

from cellsearch.storage.outcome import TrialOutcome
from cellsearch.spaces.base import Candidate, Space
from cellsearch.strategies.base import Strategy


class RandomSearch(Strategy):
    name = "random"
    multi_objective = True

    def __init__(self, space: Space, seed: int = 0, **options: Any):
        """A random search of ``space`` (options: only ``objectives``, which it records and ignores)."""
        super().__init__(space, seed, **options)

    def ask(self) -> Candidate:
        candidate = self.space.sample(self.rng)
        self.asked += 1
        return candidate

    def tell(self, candidate: Candidate, result: TrialOutcome) -> None:
        self.told += 1
