"""Running a fixed list of training jobs as Ray Tune trials (or in this process), recording each
result as it finishes: the engine of the final evaluation protocol (``runner.protocol``, ``runner.retrain``).

``run_jobs`` hands the jobs to the same Ray Tune Searcher as the search (``runner.tune``) through
a ``JobQueue`` (a ``runner.tune.TrialSource``), so the trainings run in parallel on the local
machine or a cluster, each worker pinned to its share of CPU threads, with Tune retrying a trial
whose worker died. Every job runs its whole budget (no early stopping: these are the numbers
that get reported). The job function given to ``run_jobs`` is what runs, on either backend; on
Ray it is pickled to the workers (a module-level function by reference: its module must be
importable there).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from cellsearch import limits as L
from cellsearch.errors import ConfigError
from cellsearch.limits import check_number, shown
from cellsearch.storage.outcome import JobOutcome
from cellsearch.runner.source import FINISHED, threads_per_trial

@dataclass
class JobSettings:
    """How the final protocol's training jobs run: how many at once, on Ray or in this process, on
    which cluster, with how many CPUs and GPUs each, how often a lost worker is retried, and whether
    one cell's jobs on one task train together as a population."""

    parallel: int = 2  # concurrent trainings
    backend: str = "ray"  # ray | local (in-process, one at a time)
    address: str | None = None  # Ray cluster address; None starts Ray locally
    cpus_per_trial: int | None = None  # default: the machine's CPUs / parallel
    gpus_per_trial: float = 0.0
    max_failures: int = 2  # Tune retries of a trial whose worker died
    scheduler: str = "fifo"  # every job trains to the end
    population: bool = True  # train the jobs of one cell and task as one population (cellsearch.training.population)

    def validate(self) -> None:
        """Raise ConfigError (or LimitError) naming the field unless every setting is usable."""
        check_number("JobSettings.parallel", self.parallel, 1, "parallel", L.MAX_PARALLEL)
        if self.backend not in ("ray", "local"):
            raise ConfigError(f"backend must be ray or local, not {shown(self.backend)}", field="JobSettings.backend")
        if self.cpus_per_trial is not None:
            check_number("JobSettings.cpus_per_trial", self.cpus_per_trial, 1, "threads", L.MAX_THREADS)
        check_number("JobSettings.gpus_per_trial", self.gpus_per_trial, 0, "gpus per trial", L.MAX_GPUS_PER_TRIAL,
                     integer=False)
        check_number("JobSettings.max_failures", self.max_failures, 0, "trials", L.MAX_TRIALS)


class JobQueue:
    """Serves jobs to the Tune searcher in order (a ``runner.tune.TrialSource`` of the job function's
    outcomes); ``on_done(job, outcome, node)`` records each."""

    def __init__(self, jobs: list[dict[str, Any]], settings: JobSettings,
                 on_done: Callable[[dict, JobOutcome, str | None], None]):
        self.cfg = settings
        self.pending = list(jobs)
        self.running: dict[str, dict] = {}
        self.on_done = on_done

    @property
    def threads(self) -> int:
        """CPU threads (and Ray CPUs) per trial."""
        return threads_per_trial(self.cfg.cpus_per_trial, self.cfg.parallel)

    def next_trial(self, trial_id: str) -> dict | str | None:
        """The next job (with its thread count), None while the last ones still run, then ``FINISHED``."""
        if self.pending:
            job = dict(self.pending.pop(0), threads=self.threads)
            self.running[trial_id] = job
            return job
        return FINISHED if not self.running else None

    def complete(self, trial_id: str, outcome: JobOutcome, node: str | None = None) -> None:
        """Hand a finished job's outcome and node to ``on_done`` (an unknown trial id is ignored)."""
        job = self.running.pop(trial_id, None)
        if job is not None:
            self.on_done(job, outcome, node)

    def save(self) -> None:
        """Nothing to persist: the results database holds the finished jobs."""
        pass  # the results database is the state: finished jobs are not queued again


def run_jobs(jobs: list[dict[str, Any]], fn: Callable[[dict], JobOutcome], settings: JobSettings, run_dir: Path,
             on_done: Callable[[dict, JobOutcome, str | None], None], name: str = "tune-jobs") -> None:
    """Run ``fn(job)`` for every job (on Ray Tune unless ``settings.backend == "local"``; see the module
    docstring for what Ray needs of ``fn``): ``fn`` gives the job's ``TrainingOutcome`` (a
    population job: one per member), and ``on_done`` hears it."""
    settings.validate()
    if not jobs:
        return
    queue = JobQueue(jobs, settings, on_done)
    if settings.backend == "local":
        for i in range(len(jobs)):
            job = queue.next_trial(f"local_{i}")
            assert isinstance(job, dict)
            queue.complete(f"local_{i}", fn(job), "local")
        return
    from cellsearch.runner.tune import job_trials, run_tune

    run_tune(queue, run_dir, job_trials(fn), name=name)
