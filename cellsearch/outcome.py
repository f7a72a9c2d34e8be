"""What one search trial came to: ``TrialOutcome``, the one record every trial path hands on.

A trial is trained in-process or in a Ray Tune worker (``runner.trial.evaluate_candidate``),
looked up in a replay table (``tables.TableEntry.outcome``), read back from ``results.db``
(a reused cell, a resumed search) or cut short by Tune (a worker that died, a trial the
scheduler stopped early); whichever it was, the search ``Controller`` receives a
``TrialOutcome``, records it as one row of ``results.db`` and tells the strategy the same
object (``Strategy.tell``). Crossing the process boundary (Ray) is ``runner.wire``'s.

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

    @property
    def failed(self) -> bool:
        """No usable score (None, NaN or infinite): a strategy treats the candidate as bad, and does not crash."""
        return self.score is None or not math.isfinite(self.score)


__all__ = ["TrialOutcome"]
