"""What one training returns: ``TrainResult`` (status, steps, time, validation metrics, history)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainResult:
    """The outcome of one training: its status, steps, seconds, final validation metrics, periodic
    evaluations (``history``), the cell's parameter count and hash, and the checkpoint written."""

    status: str  # ok | diverged | stopped
    steps: int
    seconds: float
    metrics: dict[str, float | None]  # validation metrics
    history: list[dict[Any, Any]] = field(default_factory=list)  # periodic evaluations {"step", "seconds", **metrics}
    params: int = 0
    cell: str = ""
    hash: str = ""
    task: str = ""
    losses: list[float] = field(default_factory=list)  # training loss of every step
    checkpoint: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The result as JSON-able data, without the per-step history and losses."""
        return {"task": self.task, "cell": self.cell, "hash": self.hash, "params": self.params,
                "steps": self.steps, "seconds": round(self.seconds, 3), "status": self.status,
                "metrics": self.metrics, "checkpoint": self.checkpoint}
