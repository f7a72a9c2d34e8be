"""The mutation search of Jozefowicz, Zaremba & Sutskever 2015.

Keep the best ``population_size`` architectures (default 100), seeded with the space's seed
cells (LSTM and GRU). Each step either re-evaluates a random member under new
hyperparameters (probability ``reevaluate``) or mutates a random member. Children go
through staged filters — memorisation ≥ 95% (or, when the reference cell itself misses 95% at the
search's budget, ≥ ``memorize_fallback`` = 0.9 × the reference's memorisation), then every task in
turn, dropped below 90% of the reference cell's (GRU's) best — each stage with a few random hyperparameter settings
(``settings``); fitness = min over tasks of (best ÷ reference best). The filters are what
make the search cheap: the results table records the stage that rejected each child.
Registered as the strategy ``evolution``.
"""

from __future__ import annotations

from typing import Any

from cellsearch.errors import ConfigError
from cellsearch.limits import shown
from cellsearch.storage.outcome import TrialOutcome
from cellsearch.spaces.base import Candidate, InvalidCandidate
from cellsearch.strategies.base import Stage, Strategy, candidate_from_json, candidate_to_json


class JozefowiczEvolution(Strategy):
    name = "evolution"

    def __init__(self, space, seed: int = 0, population_size: int = 100, reevaluate: float = 0.1,
                 settings: int = 2, memorize_threshold: float | None = 0.95, relative_threshold: float = 0.9,
                 memorize_options: dict | None = None, memorize_steps: int | None = None,
                 memorize_fallback: float | None = 0.9, **options):
        super().__init__(space, seed, **options)
        self.population_size = population_size
        self.reevaluate = reevaluate
        self.settings = settings
        self.memorize_threshold = memorize_threshold
        self.relative_threshold = relative_threshold
        # The paper memorised 5 symbols of 26; with a few hundred training steps that filter rejects
        # even the GRU, so the default is 3 symbols of 8: it still rejects cells that cannot carry
        # information across steps (set memorize_options to make it stricter).
        self.memorize_options = dict(memorize_options if memorize_options is not None else {"length": 3, "symbols": 8})
        self.memorize_steps = memorize_steps
        # A bar no cell reaches at a short budget would reject every child (the LSTM seed too) and
        # leave the reference as the search's best: below the reference's own score it falls to
        # this fraction of that score (None: the absolute bar alone)
        if memorize_fallback is not None and (isinstance(memorize_fallback, bool)
                                              or not isinstance(memorize_fallback, (int, float))
                                              or not 0 < memorize_fallback <= 1):
            raise ConfigError(f"option memorize_fallback must be a fraction in (0, 1] or null, "
                              f"got {shown(memorize_fallback)}")
        self.memorize_fallback = None if memorize_fallback is None else float(memorize_fallback)
        self.population: list[tuple[Candidate, float]] = []  # best first
        self.pending_seeds = [Candidate(g, decisions=space.encode(g), origin="seed") for g in space.seeds()]

    def plan(self, tasks: list[str]) -> list[Stage]:
        """Staged filters: memorisation, then each task relative to the reference."""
        stages = []
        if self.memorize_threshold is not None:
            stages.append(Stage("memorize", min_score=self.memorize_threshold, settings=self.settings, scoring=False,
                                steps=self.memorize_steps, task_options=self.memorize_options,
                                fallback=self.memorize_fallback, option="memorize_threshold",
                                fallback_option="memorize_fallback"))
        stages += [Stage(t, relative=self.relative_threshold, settings=self.settings, option="relative_threshold")
                   for t in tasks]
        return stages

    def ask(self) -> Candidate:
        self.asked += 1
        if self.pending_seeds:
            return self.pending_seeds.pop(0)
        if not self.population:
            return self.space.sample(self.rng)
        parent, _ = self.rng.choice(self.population)
        if self.rng.random() < self.reevaluate:
            return Candidate(parent.graph, parent.decisions, origin="reevaluate", parent=parent.hash,
                             info={"reevaluation": self.asked})
        try:
            return self.space.mutate(parent, self.rng)
        except InvalidCandidate:
            return self.space.sample(self.rng)

    def tell(self, candidate: Candidate, result: TrialOutcome) -> None:
        self.told += 1
        if result.failed or result.score is None or result.status != "ok":  # (failed covers None)
            return  # rejected by a filter, diverged or failed: never joins the population
        score = float(result.score)
        h = candidate.hash
        for i, (member, old) in enumerate(self.population):
            if member.hash == h:  # a re-evaluation (or a duplicate): keep the best score seen
                self.population[i] = (member, max(old, score))
                break
        else:
            self.population.append((candidate, score))
        self.population.sort(key=lambda m: -m[1])
        del self.population[self.population_size:]

    def state_dict(self) -> dict[str, Any]:
        """The base state (JSON) plus the population with its scores and the seeds not yet asked."""
        return {**super().state_dict(),
                "population": [[candidate_to_json(c), s] for c, s in self.population],
                "pending_seeds": [candidate_to_json(c) for c in self.pending_seeds]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume exactly from what ``state_dict`` returned (ConfigError for another strategy's state)."""
        super().load_state_dict(state)
        self.population = [(candidate_from_json(c), float(s)) for c, s in state["population"]]
        self.pending_seeds = [candidate_from_json(c) for c in state["pending_seeds"]]
