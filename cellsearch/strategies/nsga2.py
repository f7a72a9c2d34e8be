"""NSGA-II: Optuna's ``NSGAIISampler`` (Deb et al. 2002) over the space's decisions, behind our ask/tell.

The same study as the ``tpe`` strategy (``strategies.tpe``: every decision a categorical
parameter, Optuna's ask/tell, rejected sequences told as FAIL, foreign candidates added as
trials, one direction per objective), with the genetic sampler in place of TPE: generations of
``population_size`` trials, parents chosen by Pareto rank and crowding distance, uniform
crossover of the parents' decisions and per-decision mutation. With the score alone it is a
plain genetic algorithm; it is meant for several objectives (``--objectives score,params``).

Determinism and resume: as for ``tpe``, a fresh sampler seeded from ``(seed, trials so far)``
asks each candidate; the state also keeps what the sampler writes into the study (each
trial's generation, each generation's parents: Optuna's system attributes), so a study rebuilt
from it asks what the uninterrupted one would have asked.

Options: ``population_size`` (default 20: a generation; Optuna's default is 50, large for searches
of tens of cells), ``crossover_prob`` (0.9), ``swapping_prob`` (0.5: per decision, from the
second parent), ``mutation_prob`` (null: 1 / number of decisions), ``max_tries`` (100, as tpe's).
"""

from __future__ import annotations

import random
from typing import Any

import optuna

from cellsearch.errors import ConfigError
from cellsearch.limits import MAX_TRIALS
from cellsearch.strategies.tpe import TPE

NSGA2_DEFAULTS: dict[str, Any] = {
    "population_size": 20,
    "crossover_prob": 0.9,
    "swapping_prob": 0.5,
    "mutation_prob": None,
    "max_tries": 100,
}


def _check(o: dict[str, Any]) -> dict[str, Any]:
    for name, low in (("population_size", 2), ("max_tries", 1)):
        v = o[name]
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= MAX_TRIALS:
            raise ConfigError(f"nsga2 option {name} must be an integer from {low} to {MAX_TRIALS:,} "
                              f"(the limit on trials), got {v!r}")
    for name in ("crossover_prob", "swapping_prob", "mutation_prob"):
        v = o[name]
        if v is None and name == "mutation_prob":
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
            raise ConfigError(f"nsga2 option {name} must be a number from 0 to 1, got {v!r}")
    return o


class NSGA2(TPE):
    """Optuna's NSGA-II over the space's decisions (the module docstring says how)."""

    name = "nsga2"
    defaults = NSGA2_DEFAULTS

    def _check_options(self, o: dict[str, Any]) -> dict[str, Any]:
        return _check(o)

    def _sampler(self, n_trials: int) -> optuna.samplers.BaseSampler:
        sub_seed = random.Random(f"cellsearch-nsga2:{self.seed}:{n_trials}").randrange(2**32)
        o = self.options
        return optuna.samplers.NSGAIISampler(seed=sub_seed, population_size=o["population_size"],
                                             crossover_prob=o["crossover_prob"], swapping_prob=o["swapping_prob"],
                                             mutation_prob=o["mutation_prob"])
