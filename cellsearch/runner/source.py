"""What feeds trials, in the runner's terms: the ``TrialSource`` protocol, its cluster settings,
and the ``FINISHED`` sentinel.

The search's ``Controller`` and the retraining ``JobQueue`` are trial sources; ``runner.tune``
drives any of them on Ray Tune, the search's in-process loop drives the Controller. Kept apart
from both (and free of Ray) so that each can name the contract without importing the other.
"""

from __future__ import annotations

import os
from typing import Protocol, TypeVar

FINISHED = "FINISHED"  # what next_trial returns once the source has nothing more to run

S_co = TypeVar("S_co", covariant=True)
O_contra = TypeVar("O_contra", contravariant=True)


def threads_per_trial(cpus_per_trial: int | None, parallel: int) -> int:
    """Torch threads (and Ray CPUs) per trial: as asked, or the machine's CPUs shared by the trials."""
    return cpus_per_trial or max(1, (os.cpu_count() or 1) // parallel)


class ClusterSettings(Protocol):
    """Where and how a source's trials run (``settings.SearchConfig``, ``runner.jobs.JobSettings``)."""

    address: str | None  # Ray cluster address; None starts Ray locally
    parallel: int  # concurrent trials
    scheduler: str  # asha | fifo
    gpus_per_trial: float
    max_failures: int  # Tune retries of a trial whose worker died


class TrialSource(Protocol[S_co, O_contra]):
    """What feeds trials to Tune (``runner.search.Controller``, ``runner.jobs.JobQueue``).

    ``next_trial(trial_id)`` gives the next trial's spec (a ``runner.trial.TrialSpec``, a job dict),
    None (nothing to start now: ask again later) or ``FINISHED``; ``complete(trial_id, outcome, node)`` records
    a trial that ended, whatever its status, with the Ray node it ran on; ``save()`` persists the
    source's state (Tune asks at its checkpoints)."""

    @property
    def cfg(self) -> ClusterSettings:
        """The cluster settings the trials run under."""
        ...

    @property
    def threads(self) -> int:
        """CPU threads (and Ray CPUs) per trial."""
        ...

    def next_trial(self, trial_id: str) -> S_co | str | None:
        """The next trial's spec, None (nothing to start now: ask again later) or ``FINISHED``."""
        ...

    def complete(self, trial_id: str, outcome: O_contra, node: str | None = None) -> None:
        """Record a trial that ended, whatever its status, with the Ray node it ran on."""
        ...

    def save(self) -> None:
        """Persist the source's state (Tune asks at its checkpoints)."""
        ...
