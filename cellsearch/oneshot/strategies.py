"""The table of one-shot strategies: each ``--strategy`` name that trains a supernet, and its class.

One entry per strategy (``name: "module:Class"``, the class a ``cellsearch.oneshot.search.OneShotSearch``),
imported only when asked for. The command line, ``SearchRun`` (``cellsearch.runner.oneshot``) and
``cellsearch resume`` all look a one-shot strategy up here: a new one is one more entry.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from cellsearch.errors import ConfigError

if TYPE_CHECKING:
    from cellsearch.oneshot.search import OneShotSearch

ONESHOT_STRATEGIES: dict[str, str] = {
    "rsws": "cellsearch.oneshot.rsws:RSWS",  # random search with weight sharing
    "enas": "cellsearch.oneshot.enas:ENAS",  # the RL controller picks the cells
    "darts": "cellsearch.oneshot.darts:DARTS",  # softmax-relaxed choices learned by gradient
}


def is_oneshot(name: object) -> bool:
    """Whether ``name`` names a one-shot strategy."""
    return isinstance(name, str) and name in ONESHOT_STRATEGIES


def oneshot_strategy(name: str) -> "type[OneShotSearch]":
    """The class of the one-shot strategy ``name`` (ConfigError, one line, for a name not in the table)."""
    if not is_oneshot(name):
        raise ConfigError(f"'{name}' is no one-shot strategy (one-shot: {', '.join(ONESHOT_STRATEGIES)})",
                          field="SearchConfig.strategy")
    module, cls = ONESHOT_STRATEGIES[name].split(":")
    strategy: type[OneShotSearch] = getattr(importlib.import_module(module), cls)
    return strategy
