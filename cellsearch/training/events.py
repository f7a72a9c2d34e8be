"""The events a training tells its progress callback: started, a step done, stopped.

``Trainer.run(progress=...)`` and populations hand these to the caller, who renders them (a
progress bar: ``cellsearch.cli.progress``); training itself prints nothing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainingStarted:
    """``Trainer.run`` starts (or resumes) training: what a progress display needs to begin."""

    cell: str  # the configured cell (name or file)
    task: str
    steps: int | None  # the step budget (None: a time budget only)
    step: int  # the step it starts from (after a checkpoint: the checkpoint's)


@dataclass(frozen=True)
class StepDone:
    """One optimizer step finished."""

    step: int
    loss: float
    seconds: float  # training time so far (the run's, resumed runs included)


@dataclass(frozen=True)
class TrainingStopped:
    """The training loop ended (budget spent, diverged or stopped); the final evaluation follows."""

    step: int
