"""The one small interface every search strategy implements: ``ask`` / ``tell`` + state.

``ask()`` proposes a ``Candidate``; ``tell(candidate, outcome)`` reports how it did (the trial's
``outcome.TrialOutcome``, the record ``results.db`` keeps; one without a finite score counts
as failed for every strategy: ``outcome.failed``). The runner
(local loop or Ray Tune) is built on these two calls only. A strategy's whole state is an
explicit, versioned, JSON-serialisable dict (``state_dict``/``load_state_dict``), written
atomically by ``save_state``, so an interrupted search resumes exactly where it stopped.
Randomness comes only from the strategy's own seeded ``random.Random``.

Several objectives: a strategy built with ``objectives=[...]`` (``storage.objectives``; the
runner passes ``SearchConfig.objectives`` when it names more than the score) optimises them
all. Only a class with ``multi_objective = True`` accepts more than ``["score"]``; the others
refuse in one line. ``self.values(result)`` gives a told outcome's objective vector, to
maximise (None for a failed trial).

A strategy may also say how its candidates are evaluated: ``plan(tasks)`` gives the trial's
evaluation **plan**, a list of ``Stage`` (train on one task, optionally as a filter), or None
for ``default_plan`` (one scoring stage per task). The runner's trial (``runner.trial``) runs it.
"""

from __future__ import annotations

import json
import math
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from cellsearch.errors import ConfigError
from cellsearch.fileio import atomic_write, read_regular
from cellsearch.limits import MAX_RUN_JSON_BYTES
from cellsearch.records import random_state, random_state_to_data
from cellsearch.storage.objectives import DEFAULT_OBJECTIVES, check_objectives, oriented, values
from cellsearch.storage.outcome import TrialOutcome
from cellsearch.spaces.base import Candidate, Space

STATE_VERSION = 1
# the shipped strategies that take several objectives (named in the refusal of the others)
MULTI_OBJECTIVE = ("random", "regularized-evolution", "tpe", "nsga2")

@dataclass(frozen=True)
class Stage:
    """One stage of a trial's evaluation plan (``runner.trial`` describes how a plan runs)."""

    task: str
    min_score: float | None = None  # absolute filter on the task's primary metric
    relative: float | None = None  # filter: at least this fraction of the reference's best
    settings: int = 1  # hyperparameter settings tried (the best counts)
    scoring: bool = True  # part of the fitness (a pure filter like memorisation is not)
    steps: int | None = None  # overrides the trial budget for this stage
    task_options: dict[str, Any] = field(default_factory=dict)
    # with min_score: when the reference cell itself scores below min_score at the search's budget,
    # the bar is this fraction of the reference's score instead (``stage_threshold``)
    fallback: float | None = None
    option: str | None = None  # the strategy option that sets this stage's bar (named in advice) ...
    fallback_option: str | None = None  # ... and the one that sets its fallback


def stage_threshold(stage: Stage, reference: dict[str, float] | None) -> float | None:
    """The score a candidate must reach at ``stage`` to pass it, given the reference cell's best per
    task at the same budget (``reference``; None or without the task: unknown), or None (no bar).

    An absolute bar (``min_score``) holds as it is while the reference reaches it; a bar the
    reference itself misses is no bar at this budget, so with a ``fallback`` it becomes
    ``fallback`` × the reference's score. A ``relative`` bar is ``relative`` × the reference's
    score. With both, the higher bar counts."""
    ref = (reference or {}).get(stage.task)
    bars = []
    if stage.min_score is not None:
        if stage.fallback is not None and ref is not None and ref < stage.min_score:
            bars.append(stage.fallback * ref)
        else:
            bars.append(stage.min_score)
    if stage.relative is not None and ref:
        bars.append(stage.relative * ref)
    return max(bars) if bars else None


def default_plan(tasks: list[str]) -> list[Stage]:
    """One scoring stage per task, no filters: the plan of a strategy without its own."""
    return [Stage(task=t) for t in tasks]


class Strategy(ABC):
    """Base class: subclasses implement ``ask``/``tell`` and extend the state dict."""

    name: str = "strategy"
    multi_objective: bool = False  # whether it can optimise several objectives (see the module docstring)

    def __init__(self, space: Space, seed: int = 0, *, objectives: Sequence[str] = DEFAULT_OBJECTIVES,
                 **options: Any):
        if options:
            raise ConfigError(f"strategy '{self.name}' has no option(s) {', '.join(sorted(options))}")
        self.objectives = check_objectives(list(objectives) if isinstance(objectives, (list, tuple)) else objectives,
                                           field="objectives")
        if len(self.objectives) > 1 and not self.multi_objective:
            raise ConfigError(f"strategy '{self.name}' optimises the score alone and cannot take objectives "
                              f"{','.join(self.objectives)} (several objectives: {', '.join(MULTI_OBJECTIVE)})",
                              field="SearchConfig.objectives")
        self.space = space
        self.seed = seed
        self.rng = random.Random(seed)
        self.asked = 0
        self.told = 0

    @abstractmethod
    def ask(self) -> Candidate:
        """The next candidate to evaluate."""

    @abstractmethod
    def tell(self, candidate: Candidate, result: TrialOutcome) -> None:
        """Report a candidate's outcome (also for failed or deduplicated candidates)."""

    @property
    def several(self) -> bool:
        """Whether this strategy optimises several objectives (not the score alone)."""
        return len(self.objectives) > 1

    def values(self, result: TrialOutcome) -> tuple[float, ...] | None:
        """The objective vector of a told outcome, to maximise (``storage.objectives.oriented``); None
        when the trial failed or lacks one of the values."""
        raw = values(result, self.objectives)
        return None if raw is None else oriented(raw, self.objectives)

    def plan(self, tasks: list[str]) -> list[Stage] | None:
        """How each candidate is evaluated on ``tasks``; None (the default): ``default_plan(tasks)``."""
        return None

    def abandon_pending(self) -> None:
        """Forget candidates that were asked but will never be told (a resumed search lost them)."""

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The strategy's state as JSON-able data (a subclass adds its own); ``load_state_dict`` resumes it exactly."""
        return {"version": STATE_VERSION, "strategy": self.name, "space": self.space.name, "seed": self.seed,
                "rng": random_state_to_data(self.rng), "asked": self.asked, "told": self.told,
                "objectives": list(self.objectives)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state_dict``'s data; ConfigError for another version, strategy or space."""
        if state.get("version") != STATE_VERSION:
            raise ConfigError(f"strategy state version {state.get('version')} is not supported "
                              f"(expected {STATE_VERSION})")
        if state.get("strategy") != self.name:
            raise ConfigError(f"state is for strategy '{state.get('strategy')}', not '{self.name}'")
        if state.get("objectives", list(DEFAULT_OBJECTIVES)) != self.objectives:  # (a state from before: the score)
            raise ConfigError(f"state is for objectives {','.join(map(str, state.get('objectives') or []))}, "
                              f"not {','.join(self.objectives)}")
        self.seed = state["seed"]
        self.rng.setstate(random_state(state["rng"]))
        self.asked = state["asked"]
        self.told = state["told"]


def candidate_to_json(c: Candidate) -> dict[str, Any]:
    """A candidate as JSON-able data (its graph, decisions, origin and parent) for a strategy's state."""
    from cellsearch.dsl.io import cell_to_dict

    return {"graph": cell_to_dict(c.graph, "graph"), "decisions": list(c.decisions) if c.decisions else None,
            "origin": c.origin, "parent": c.parent, "info": c.info}


def candidate_from_json(data: dict[str, Any]) -> Candidate:
    """Back from ``candidate_to_json`` (a state saved before candidates lost their unused ``plan``
    still loads: the key is ignored)."""
    from cellsearch.dsl.io import cell_from_dict

    return Candidate(cell_from_dict(data["graph"], warn=False),
                     tuple(data["decisions"]) if data.get("decisions") is not None else None,
                     data.get("origin", "sample"), data.get("parent"), info=data.get("info") or {})


def save_state(state: dict[str, Any], path: str | Path) -> Path:
    """Write a state dict as JSON atomically (``fileio.atomic_write``)."""
    return atomic_write(path, json.dumps(state))


def load_state(path: str | Path) -> dict[str, Any]:
    """A strategy's state as ``save_state`` wrote it."""
    try:
        state: dict[str, Any] = json.loads(read_regular(path, "strategy state size", MAX_RUN_JSON_BYTES, follow=False))
    except FileNotFoundError:
        raise ConfigError(f"no strategy state at {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the strategy state {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # not JSON, not UTF-8
        raise ConfigError(f"strategy state {path} is corrupted: {exc}") from None
    return state
