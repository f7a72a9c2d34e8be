"""What one search trial came to: ``TrialOutcome``, the typed record every trial path hands on.

A trial is trained in-process or in a Ray Tune worker (``runner.trial.evaluate_candidate``),
looked up in a replay table (``tables.TableEntry.outcome``) or cut short by Tune (a worker
that died, a trial the scheduler stopped early); whichever it was, the search ``Controller``
receives a ``TrialOutcome`` and records it as one row of ``results.db``. ``to_dict`` /
``from_dict`` carry it through Tune's result dict (as JSON) and back.

This module is a leaf (no cellsearch imports), so the layers that build outcomes (``tables``,
below the runner) and the runner that consumes them can both use it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class TrialOutcome:
    """One trial's result; the fields are the ``trials`` columns of ``results.db`` they fill."""

    status: str  # ok | rejected | diverged | failed | stopped-early | missing (the store's FINAL_STATUSES)
    score: float | None = None  # higher is better; None when there is none
    stage: str | None = None  # staged plans: the stage that rejected the cell, or "passed"
    metrics: dict[str, Any] = field(default_factory=dict)  # {task: {metric: value, ...}}
    params: int | None = None  # the cell's parameter count
    seconds: float | None = None  # what the trial cost (a replay: what training cost when the table was made)
    error: str | None = None  # what went wrong (failed, missing)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable data (every field, always)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrialOutcome":
        """Back from ``to_dict`` (fields left out take their defaults; unknown keys are an error)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise ValueError(f"unknown trial outcome field(s) {', '.join(unknown)}")
        values = dict(data)
        values["metrics"] = values.get("metrics") or {}
        return cls(**values)


__all__ = ["TrialOutcome"]
