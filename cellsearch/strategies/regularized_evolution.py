"""Regularized (aging) evolution, Real et al. 2019 ("Regularized Evolution for Image
Classifier Architecture Search", AAAI), in its asynchronous form.

* Until ``population_size`` random candidates have been asked (or while nothing has been
  told yet), ``ask`` returns random samples of the space.
* Afterwards ``ask`` draws ``sample_size`` distinct members of the current population
  uniformly (the tournament), takes the one with the best score (the earliest told wins
  ties) and returns ``space.mutate(winner)``.
* ``tell`` appends the evaluated candidate to the population (a failed result counts as
  worse than every real score) and, when the population is over ``population_size``,
  removes the *oldest* member, whatever its score: that aging is the regularisation.

With several objectives (``objectives=["score", "params"]``, say) the tournament is NSGA-II's
(Deb et al. 2002): the population is sorted into Pareto fronts (``cellsearch.pareto``) and a
tournament's winner is the member on the best front, then the one with the largest crowding
distance within its front (the oldest on a tie); a failed member is on a front behind all the
others. Aging is unchanged.

Asked-but-not-yet-told candidates are not tracked: any number may be in flight (parallel
trials), and a candidate the strategy never asked (a seed cell, a deduplicated cell) joins
the population like any other when it is told.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from cellsearch.errors import ConfigError
from cellsearch.pareto import crowding_distance, non_dominated_sort
from cellsearch.storage.outcome import TrialOutcome
from cellsearch.spaces.base import Candidate, InvalidCandidate, Space
from cellsearch.strategies.base import Strategy, candidate_from_json, candidate_to_json

TOURNAMENT_TRIES = 10  # tournaments whose winner could not be mutated before falling back to a random sample


@dataclass
class Member:
    candidate: Candidate
    score: float  # -inf for a failed result
    told: int  # the strategy's ``told`` count when it joined (its age)
    vector: tuple[float, ...] | None = None  # several objectives: its values to maximise (None: failed)


def _int_option(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"option {name} must be an integer >= {low}, got {value!r}")
    return value


class RegularizedEvolution(Strategy):
    name = "regularized-evolution"
    multi_objective = True

    def __init__(self, space: Space, seed: int = 0, *, population_size: int = 20, sample_size: int = 5,
                 **options: Any):
        super().__init__(space, seed, **options)
        self.population_size = _int_option("population_size", population_size, 1)
        self.sample_size = _int_option("sample_size", sample_size, 1)
        if self.sample_size > self.population_size:
            raise ConfigError(f"sample_size ({sample_size}) cannot exceed population_size ({population_size})")
        self.population: list[Member] = []  # oldest first
        self.random_asked = 0

    # ------------------------------------------------------------------ ask / tell
    def ask(self) -> Candidate:
        candidate = None
        if self.random_asked >= self.population_size and self.population:
            for _ in range(TOURNAMENT_TRIES):
                parent = self.tournament()
                try:
                    candidate = self.space.mutate(parent.candidate, self.rng)
                    break
                except InvalidCandidate:
                    continue
        if candidate is None:
            candidate = self.space.sample(self.rng)
            self.random_asked += 1
        self.asked += 1
        return candidate

    def tournament(self) -> Member:
        """The best of ``sample_size`` distinct random members (ties: the oldest)."""
        k = min(self.sample_size, len(self.population))
        picked = sorted(self.rng.sample(range(len(self.population)), k))
        if self.several:
            fitness = self.pareto_fitness()
            return self.population[max(picked, key=lambda i: fitness[i])]
        return max((self.population[i] for i in picked), key=lambda m: m.score)

    def pareto_fitness(self) -> list[tuple[int, float]]:
        """Each member's NSGA-II fitness, higher is better: (minus its front, its crowding distance)."""
        alive = [i for i, m in enumerate(self.population) if m.vector is not None]
        vectors = [v for m in self.population if (v := m.vector) is not None]
        fitness = [(-len(self.population), 0.0)] * len(self.population)  # failed members: behind every front
        for k, front in enumerate(non_dominated_sort(vectors)):
            crowding = crowding_distance(vectors, front)
            for j in front:
                fitness[alive[j]] = (-k, crowding[j])
        return fitness

    def tell(self, candidate: Candidate, result: TrialOutcome) -> None:
        score = -math.inf if result.failed or result.score is None else float(result.score)
        self.population.append(Member(candidate, score, self.told, self.values(result) if self.several else None))
        self.told += 1
        while len(self.population) > self.population_size:
            self.population.pop(0)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The base state (JSON) plus the sizes and the population, oldest first, with scores and ages."""
        state = super().state_dict()
        state.update({
            "population_size": self.population_size,
            "sample_size": self.sample_size,
            "random_asked": self.random_asked,
            # JSON has no -inf: a failed member's score is stored as null
            "population": [{"candidate": candidate_to_json(m.candidate),
                            "score": m.score if math.isfinite(m.score) else None,
                            "told": m.told, **({"vector": list(m.vector) if m.vector else None}
                                               if self.several else {})} for m in self.population],
        })
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume exactly from what ``state_dict`` returned (ConfigError for another strategy's state)."""
        super().load_state_dict(state)
        self.population_size = state["population_size"]
        self.sample_size = state["sample_size"]
        self.random_asked = state["random_asked"]
        self.population = [Member(candidate_from_json(m["candidate"]),
                                   -math.inf if m["score"] is None else float(m["score"]), m["told"],
                                   tuple(m["vector"]) if m.get("vector") else None)
                           for m in state["population"]]
