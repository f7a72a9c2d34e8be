"""What the runner tells its caller while it works: small event records, no rendering.

``SearchRun.run(on_event=...)`` and the final evaluation's ``Retrainer(..., on_event=...)``
call ``on_event(event)`` with these as the work goes on; a caller draws them (the command
line's progress bars, ``cellsearch.cli.progress``), logs them or ignores them. Without a
callback the runner prints nothing. (The trainer's own per-step events are in
``cellsearch.training.events``.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union


@dataclass(frozen=True)
class SearchStarted:
    """A search (new or resumed) starts its trials."""

    total: int  # trials the search will evaluate
    done: int  # trials already launched or finished (a resumed search)
    best: float | None  # the best score so far


@dataclass(frozen=True)
class TrialFinished:
    """A search trial ended, or a duplicate candidate reused a stored result (``reused``)."""

    status: str
    score: float | None
    reused: bool
    done: int  # the strategy's trials recorded so far (at most ``total``)
    total: int
    running: int  # trials still running
    best: float | None  # the best finite score of a candidate so far (the reference cell left out)


@dataclass(frozen=True)
class StageRejectedAll:
    """A filter stage of the evaluation plan has rejected every candidate trained so far (told once
    per stage and run, from the third candidate on or at the end of a shorter search): the search
    would end with no candidate, the reference cell alone at the top. ``message`` is one line that
    names the stage, its bar and what to change; the run keeps it (``storage.results.stage_warnings``)."""

    stage: str  # the stage's task
    rejected: int  # candidates it rejected (all those trained so far)
    message: str


@dataclass(frozen=True)
class SearchEnded:
    """The search stopped (done, interrupted or failed)."""


@dataclass(frozen=True)
class JobsStarted:
    """A batch of training jobs starts (e.g. the final evaluation's learning-rate sweep)."""

    label: str  # e.g. "evaluate: learning-rate sweep"
    total: int  # jobs to run now (finished ones are not run again)


@dataclass(frozen=True)
class JobFinished:
    """One training job of the batch ended."""

    label: str
    cell: str  # the cell's name
    task: str
    lr: float
    seed: int
    status: str
    test: float | None  # its test score, when it has one


@dataclass(frozen=True)
class JobsEnded:
    """The batch ended (every job done, or stopped)."""

    label: str


@dataclass(frozen=True)
class OneShotProgress:
    """A one-shot search goes on: search seed ``seed``'s supernet trained ``done`` of ``total`` steps
    (``phase`` train, ``value`` the last loss; ``total`` None under a time budget) or scored ``done`` of
    ``total`` cells (``phase`` score, ``value`` the last cell's one-shot score)."""

    seed: int
    phase: str
    done: int
    total: int | None
    value: float | None


def scoring_shown(done: int, total: int | None) -> bool:
    """Whether the ``done``-th scored cell of ``total`` is told on (a CLI line, a Tune report): every tenth
    of the total and the last."""
    return done == total or done % max(1, (total or 10) // 10) == 0


Event = Union[SearchStarted, OneShotProgress, TrialFinished, StageRejectedAll, SearchEnded, JobsStarted, JobFinished, JobsEnded]
EventHandler = Callable[[object], None]
