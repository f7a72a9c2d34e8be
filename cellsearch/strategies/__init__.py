"""Search strategies: one ``ask``/``tell`` interface (``base.Strategy``), several algorithms.

``make_strategy(name, space, seed=0, **options)`` builds one by name:

==========================  =========================================================  ======================
name                        algorithm                                                  class
==========================  =========================================================  ======================
``random``                  uniform samples of the space (the baseline)                ``RandomSearch``
``evolution``               Jozefowicz et al. 2015 (staged filters, seeded with LSTM)  ``JozefowiczEvolution``
``regularized-evolution``   Real et al. 2019 aging evolution (tournament + mutation)   ``RegularizedEvolution``
``rl``                      Zoph & Le 2017 LSTM controller trained with REINFORCE      ``RLController``
``tpe``                     Optuna's Tree-structured Parzen Estimator over decisions   ``TPE``
``nsga2``                   Optuna's NSGA-II (genetic; Pareto rank and crowding)       ``NSGA2``
==========================  =========================================================  ======================

``objectives=[...]`` (several objectives) is taken by ``random``, ``regularized-evolution``,
``tpe`` and ``nsga2``; the others refuse it (``base.Strategy``).

Modules are imported lazily, so the registry works even where an optional dependency
(optuna for ``tpe``) is missing until that strategy is asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

from cellsearch.errors import ConfigError
from cellsearch.storage.outcome import TrialOutcome  # what ``Strategy.tell`` hears (here for a strategy's author)
from cellsearch.strategies.base import Stage, Strategy, default_plan, load_state, save_state

# name -> (module, class). Order = how they are listed to users.
_REGISTRY: dict[str, tuple[str, str]] = {
    "random": ("cellsearch.strategies.random_search", "RandomSearch"),
    "evolution": ("cellsearch.strategies.jozefowicz", "JozefowiczEvolution"),
    "regularized-evolution": ("cellsearch.strategies.regularized_evolution", "RegularizedEvolution"),
    "rl": ("cellsearch.strategies.rl", "RLController"),
    "tpe": ("cellsearch.strategies.tpe", "TPE"),
    "nsga2": ("cellsearch.strategies.nsga2", "NSGA2"),
}

STRATEGY_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def strategy_class(name: str) -> type[Strategy]:
    """The class registered under ``name`` (ConfigError for an unknown or unavailable one)."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown strategy '{name}' (known: {', '.join(STRATEGY_NAMES)})")
    module_name, class_name = _REGISTRY[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ConfigError(f"strategy '{name}' is not available in this installation "
                              f"(module {module_name} is missing)") from None
        raise ConfigError(f"strategy '{name}' needs the package '{exc.name}': "
                          f"pip install 'cellsearch[search]'") from None
    found: type[Strategy] = getattr(module, class_name)
    return found


def make_strategy(name: str, space: Any, seed: int = 0, **options: Any) -> Strategy:
    """Build the strategy ``name`` over ``space``; unknown names or options raise ConfigError."""
    return strategy_class(name)(space, seed=seed, **options)


__all__ = ["STRATEGY_NAMES", "Stage", "Strategy", "default_plan", "load_state", "make_strategy",
           "save_state", "strategy_class", "TrialOutcome"]
