"""What a search trial or a training job came to: ``TrialOutcome``, ``TrainingOutcome`` and a one-shot search seed's ``SeedOutcome``, the records every path hands on.

A trial is trained in-process or in a Ray Tune worker (``runner.trial.evaluate_candidate``),
looked up in a replay table (``tables.TableEntry.outcome``), read back from ``results.db``
(a reused cell, a resumed search) or cut short by Tune (a worker that died, a trial the
scheduler stopped early); whichever it was, the search ``Controller`` receives a
``TrialOutcome``, records it as one row of ``results.db`` and tells the strategy the same
object (``Strategy.tell``). Crossing the process boundary (Ray) is ``runner.wire``'s.

A training job of the final evaluation protocol (``runner.final``) or of a study
(``runner.gate_study``, ``reproduce``) comes to a ``TrainingOutcome``
(``runner.worker.train_job``): in the worker, through Ray (``runner.wire`` again) and into
the ``retrains`` table of ``results.db``. (One training run's own record, with its history and
losses, is ``train.TrainResult``: both outcomes are made from it.)

One search seed of a one-shot search (``runner.oneshot``: a supernet trained, cells scored with
it) comes to a ``SeedOutcome``, reported as it goes (status ``running``) and at its end.

This module is a leaf (no cellsearch imports), so the layers that build outcomes (``tables``,
below the runner), the strategies that read them and the runner can all use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TrialOutcome:
    """One trial's result; the fields are the ``trials`` columns of ``results.db`` they fill.

    ``TrialOutcome(0.7)`` is a trial that scored 0.7; ``TrialOutcome(None, "failed")`` one that
    gave no score."""

    score: float | None  # higher is better; None when there is none
    status: str = "ok"  # ok | rejected | diverged | failed | stopped-early | missing (the store's FINAL_STATUSES)
    metrics: dict[str, Any] = field(default_factory=dict)  # {task: {metric: value, ...}}
    stage: str | None = None  # staged plans: the stage that rejected the cell, or "passed"
    params: int | None = None  # the cell's parameter count
    seconds: float | None = None  # what the trial cost (a replay: what training cost when the table was made)
    error: str | None = None  # what went wrong (failed, missing)
    # the search's other objectives (storage.objectives): filled by the search from the cell, not stored
    objectives: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """No usable score (None, NaN or infinite): a strategy treats the candidate as bad, and does not crash."""
        return self.score is None or not math.isfinite(self.score)


@dataclass(frozen=True)
class TrainingOutcome:
    """What one training job gave: its status, its metrics per split, and its cost."""

    status: str  # ok | diverged | stopped | failed (the job raised: see error)
    metric: str | None = None  # the task's primary metric
    score: float | None = None  # ... on the validation split
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # split → metrics ({} before any)
    params: int | None = None  # cell parameters (None when the model was never built)
    steps: int = 0
    seconds: float = 0.0
    error: str | None = None  # "ExceptionType: message" of a failed job
    traceback: str | None = None  # ... and where it came from

    def value(self, split: str) -> float | None:
        """The primary metric on ``split`` (None when that split was not scored)."""
        return self.metrics.get(split, {}).get(self.metric) if self.metric else None


TRAINING_STATUSES = ("ok", "diverged", "stopped", "failed")  # a TrainingOutcome's
JobOutcome = TrainingOutcome | list[TrainingOutcome]  # a training job's, or a population job's (one per member)

__all__ = ["TRAINING_STATUSES", "JobOutcome", "TrainingOutcome", "TrialOutcome"]


@dataclass(frozen=True)
class SeedOutcome:
    """One search seed of a one-shot search: how far it has come (status ``running``: ``phase`` train or
    score, ``done`` of ``total``, ``value`` the last loss or score) or what it came to (``ok``: ``result``,
    the seed's best cells and its costs, as ``oneshot.search.seed_result`` gives them; ``failed``: ``error``)."""

    status: str  # running | ok | failed
    seed: int
    phase: str | None = None
    done: int = 0
    total: int | None = None
    value: float | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
