"""A search's objectives: their names, directions, checks, and each candidate's values of them.

``SearchConfig.objectives`` names what a search optimises; ``["score"]`` (the default) is the
single-objective search of every strategy. The objectives:

=========  =========  ==========================================================================
name       direction  value
=========  =========  ==========================================================================
score      maximise   the search's score of the candidate (the ``score`` column of results.db)
params     minimise   the cell's parameter count at the search's sizes (the ``params`` column)
macs       minimise   multiply-accumulates of the cell per time step and batch element at the
                      search's sizes (``CellGraph.multiply_adds``: its matrix-vector products and
                      elementwise work), computed from the recorded cell: nothing more is stored
latency    minimise   the cell's measured forward time per step in milliseconds (``nn.latency``:
                      median of repeats, batch 1, at the search's sizes), measured by each trial
                      and kept in its first task's metrics as ``step_latency_ms``; it depends on
                      the machine and its load: compare it within one run only
=========  =========  ==========================================================================

``score`` must be one of them (a search trains its candidates for the score anyway, and a
front without it would rank cells by size alone), each name once. ``oriented`` turns values
into a vector to maximise for ``cellsearch.pareto`` (minimised objectives negated); a value
that is missing (a failed trial) gives no vector at all.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Mapping, Sequence

from cellsearch.errors import ConfigError
from cellsearch.storage.outcome import TrialOutcome

# name -> +1 (maximise) or -1 (minimise)
DIRECTIONS: dict[str, int] = {"score": 1, "params": -1, "macs": -1, "latency": -1}
LATENCY_METRIC = "step_latency_ms"  # the metric under which a trial (``runner.trial``) keeps its latency
OBJECTIVE_NAMES: tuple[str, ...] = tuple(DIRECTIONS)
DEFAULT_OBJECTIVES: tuple[str, ...] = ("score",)


def check_objectives(names: Any, field: str = "SearchConfig.objectives") -> list[str]:
    """``names`` as a checked list: known objectives, each once, ``score`` among them."""
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"objectives must be a list of names ({', '.join(OBJECTIVE_NAMES)})", field=field)
    for n in names:
        if n not in DIRECTIONS:
            raise ConfigError(f"unknown objective '{n}' (known: {', '.join(OBJECTIVE_NAMES)})", field=field)
    seen = [n for i, n in enumerate(names) if n in names[:i]]
    if seen:
        raise ConfigError(f"objective '{seen[0]}' is given twice", field=field)
    if "score" not in names:
        raise ConfigError("objectives must include score (e.g. score,params)", field=field)
    return list(names)


def parse_objectives(text: str) -> list[str]:
    """``"score,params"`` as a checked list (``check_objectives``)."""
    return check_objectives([t.strip() for t in text.split(",") if t.strip()], field="--objectives")


def directions(names: Sequence[str]) -> list[Literal["maximize", "minimize"]]:
    """Optuna's study directions for ``names`` (``maximize``/``minimize``)."""
    return ["maximize" if DIRECTIONS[n] > 0 else "minimize" for n in names]


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def values(result: TrialOutcome, names: Sequence[str]) -> list[float] | None:
    """The raw values of ``names`` for a told outcome (None when it failed or a value is missing):
    ``score`` and ``params`` from their fields, the others from ``result.objectives``."""
    if result.failed:
        return None
    out = []
    for n in names:
        v = _finite(result.score if n == "score" else result.objectives.get(n, result.params if n == "params"
                                                                          else None))
        if v is None:
            return None
        out.append(v)
    return out


def oriented(raw: Sequence[float], names: Sequence[str]) -> tuple[float, ...]:
    """Raw values as a vector to maximise (minimised objectives negated)."""
    return tuple(DIRECTIONS[n] * v for n, v in zip(names, raw))


def measured(graph: Any, train: Mapping[str, Any], params: int | None,
             metrics: Mapping[str, Any] | None = None) -> dict[str, float]:
    """The cost objectives of a cell (a ``CellGraph``) trained with settings ``train`` (its
    ``hidden_size`` and ``embed_size``): ``params`` (as the trial counted them, when it did),
    ``macs``, and ``latency`` when the trial's ``metrics`` hold one."""
    hidden = int(train.get("hidden_size") or 64)
    embed = int(train.get("embed_size") or hidden)
    out: dict[str, float] = {"macs": float(graph.multiply_adds(embed, hidden))}
    count = params if params else graph.param_count(embed, hidden)
    out["params"] = float(count)
    for task_metrics in (metrics or {}).values():
        value = _finite(task_metrics.get(LATENCY_METRIC)) if isinstance(task_metrics, Mapping) else None
        if value is not None:
            out["latency"] = value
    return out


__all__ = ["DEFAULT_OBJECTIVES", "DIRECTIONS", "LATENCY_METRIC", "OBJECTIVE_NAMES", "check_objectives", "directions", "measured",
           "oriented", "parse_objectives", "values"]
