"""cellsearch: neural architecture search for recurrent cells — the public Python API.

Describe a cell in YAML (``cellsearch.dsl``), compile it to a fast PyTorch layer
(``cellsearch.compile``, ``cellsearch.nn``), train and score it (``cellsearch.training``,
``cellsearch.tasks``), search for new cells (``cellsearch.spaces``, ``cellsearch.strategies``,
``cellsearch.runner``), evaluate (``cellsearch.analysis``) and export (``cellsearch.export``).

The names in ``__all__`` are the API a user needs, importable from here::

    from cellsearch import loads_cell, CellRNN, TrainConfig, train

They load on first use (PEP 562): ``import cellsearch`` stays cheap and does not load torch, so
the command line starts fast; the ``TYPE_CHECKING`` imports below give type checkers and IDEs
the same names.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version
from typing import TYPE_CHECKING

try:
    __version__ = _version("cellsearch")
except PackageNotFoundError:  # a source tree that was not installed
    __version__ = "0+unknown"

if TYPE_CHECKING:
    from cellsearch.analysis.evaluation import EvaluationReport, evaluate_run
    from cellsearch.analysis.fidelity import FidelityReport, fidelity_run
    from cellsearch.compile.cell import CompiledCell
    from cellsearch.dsl.graph import CellGraph
    from cellsearch.dsl.io import dumps_cell, load_cell, loads_cell, save_cell
    from cellsearch.errors import CellError, CellsearchError, ConfigError, DataError
    from cellsearch.export import export_cell
    from cellsearch.library import builtin_names, get_cell
    from cellsearch.nn.layers import CellRNN
    from cellsearch.nn.model import ModelConfig, SeqModel
    from cellsearch.runner.jobs import JobSettings
    from cellsearch.runner.protocol import Protocol, protocol_for_run
    from cellsearch.runner.search import SearchRun
    from cellsearch.spaces.base import Space
    from cellsearch.spaces.registry import load_space
    from cellsearch.storage.outcome import TrialOutcome
    from cellsearch.storage.results import leaderboard
    from cellsearch.storage.settings import SearchConfig
    from cellsearch.strategies import make_strategy
    from cellsearch.strategies.base import Strategy
    from cellsearch.tasks import make_task
    from cellsearch.tasks.base import Task
    from cellsearch.training.config import TrainConfig
    from cellsearch.training.population import Member, train_population
    from cellsearch.training.recipes import Recipe, load_recipe
    from cellsearch.training.result import TrainResult
    from cellsearch.training.trainer import Trainer, train

# name -> the module that defines it (tests/test_public_api.py checks this table against the
# TYPE_CHECKING imports above, so the two cannot drift apart)
_HOMES: dict[str, str] = {
    # cells: load, check, write
    "CellGraph": "cellsearch.dsl.graph",
    "load_cell": "cellsearch.dsl.io",
    "loads_cell": "cellsearch.dsl.io",
    "dumps_cell": "cellsearch.dsl.io",
    "save_cell": "cellsearch.dsl.io",
    "get_cell": "cellsearch.library",
    "builtin_names": "cellsearch.library",
    # compiling a layer
    "CompiledCell": "cellsearch.compile.cell",
    "CellRNN": "cellsearch.nn.layers",
    "SeqModel": "cellsearch.nn.model",
    "ModelConfig": "cellsearch.nn.model",
    # training, solo and population
    "TrainConfig": "cellsearch.training.config",
    "train": "cellsearch.training.trainer",
    "Trainer": "cellsearch.training.trainer",
    "TrainResult": "cellsearch.training.result",
    "Member": "cellsearch.training.population",
    "train_population": "cellsearch.training.population",
    "Recipe": "cellsearch.training.recipes",
    "load_recipe": "cellsearch.training.recipes",
    # tasks
    "Task": "cellsearch.tasks.base",
    "make_task": "cellsearch.tasks",
    # spaces and strategies
    "Space": "cellsearch.spaces.base",
    "load_space": "cellsearch.spaces.registry",
    "Strategy": "cellsearch.strategies.base",
    "make_strategy": "cellsearch.strategies",
    # searching and its results
    "SearchConfig": "cellsearch.storage.settings",
    "SearchRun": "cellsearch.runner.search",
    "TrialOutcome": "cellsearch.storage.outcome",
    "leaderboard": "cellsearch.storage.results",
    # evaluating
    "Protocol": "cellsearch.runner.protocol",
    "protocol_for_run": "cellsearch.runner.protocol",
    "JobSettings": "cellsearch.runner.jobs",
    "evaluate_run": "cellsearch.analysis.evaluation",
    "EvaluationReport": "cellsearch.analysis.evaluation",
    "fidelity_run": "cellsearch.analysis.fidelity",
    "FidelityReport": "cellsearch.analysis.fidelity",
    # exporting
    "export_cell": "cellsearch.export",
    # errors
    "CellsearchError": "cellsearch.errors",
    "CellError": "cellsearch.errors",
    "ConfigError": "cellsearch.errors",
    "DataError": "cellsearch.errors",
}

# a literal list (documentation tools read it without running the module); the test keeps it
# equal to the table above
__all__ = [
    "__version__", "CellGraph", "load_cell", "loads_cell", "dumps_cell", "save_cell", "get_cell",
    "builtin_names", "CompiledCell", "CellRNN", "SeqModel", "ModelConfig", "TrainConfig", "train",
    "Trainer", "TrainResult", "Member", "train_population", "Recipe", "load_recipe", "Task",
    "make_task", "Space", "load_space", "Strategy", "make_strategy", "SearchConfig", "SearchRun",
    "TrialOutcome", "leaderboard", "Protocol", "protocol_for_run", "JobSettings", "evaluate_run",
    "EvaluationReport", "fidelity_run", "FidelityReport", "export_cell", "CellsearchError",
    "CellError", "ConfigError", "DataError",
]


def _load(name: str) -> object:
    """Load a public name from its home module on first use (PEP 562) and keep it here."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'cellsearch' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value  # later lookups find it without calling __getattr__
    return value


# Only at run time: a type checker that saw a module __getattr__ would take any name as an
# attribute, so `from cellsearch import Typo` would pass; it sees the imports above instead.
if not TYPE_CHECKING:
    __getattr__ = _load


def __dir__() -> list[str]:
    """The module's own names and the whole public API (``__all__``), loaded or not."""
    return sorted(set(globals()) | set(__all__))
