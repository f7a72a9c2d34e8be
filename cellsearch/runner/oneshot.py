"""A one-shot search run by ``SearchRun``: each search seed's supernet a Ray Tune trial (or, on the local
backend, trained in this process, one seed after the other); the driver the run's one writer.

``OneShotRun`` checks the settings (``oneshot.search.prepare``) before it touches a file, creates and
locks the run directory, then runs the seeds ``cfg.seed`` .. ``cfg.seed + cfg.seeds - 1``. On Ray each
seed is one trial (``oneshot_trials``: the job crosses as ``runner.wire.SeedJob``, its outcome back as
a ``SeedOutcome``), at most ``cfg.parallel`` at once, each with ``cpus_per_trial`` CPUs (torch threads)
and ``gpus_per_trial`` GPUs (the supernet then trains on CUDA), on the local machine or the cluster at
``cfg.address``; the worker trains and scores its supernet (``oneshot.search.run_seed``) with its own
checkpoint in the run directory (a cluster's nodes must share it) and reports its progress as it goes
(``OneShotProgress`` events in the driver). A worker that dies is retried by Tune from its checkpoint
(``max_failures``). Once every seed has ended, the driver records each seed's best ``cfg.trials`` cells
in ``results.db`` (``oneshot.search.record``). A seed that failed fails the run in one line (a crashed
worker's traceback goes to the run directory's ``oneshot-seed{S}-error.log``, which the line names); the
checkpoints stay, and ``resume`` (after a kill -9 of the driver too) continues every seed from its own.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, cast

from cellsearch.errors import ConfigError
from cellsearch.fileio import WriteError, atomic_write
from cellsearch.oneshot.search import (finished_summary, open_run, prepare, record, run_here, run_seed,
                                       search_seeds, seed_result)
from cellsearch.oneshot.strategies import oneshot_strategy
from cellsearch.runner import wire
from cellsearch.runner.events import EventHandler, OneShotProgress, scoring_shown
from cellsearch.runner.jobs import JobQueue, JobSettings
from cellsearch.spaces.base import Space
from cellsearch.storage import rundir
from cellsearch.storage.outcome import SeedOutcome
from cellsearch.storage.settings import SearchConfig

if TYPE_CHECKING:
    from cellsearch.runner.tune import TrialKind


def _load_space(cfg: SearchConfig, space: Space | None) -> Space:
    from cellsearch.spaces import load_space

    return space if space is not None else load_space(cfg.space)


class OneShotRun:
    """A one-shot search in ``runs_dir/NAME`` (or ``run_dir``; ``resume``: an existing one), checked and
    locked when made; ``run(on_event)`` runs it to its end (module docstring)."""

    def __init__(self, cfg: SearchConfig, runs_dir: str | Path = "runs", *, space: Space | None = None,
                 resume: bool = False, run_dir: str | Path | None = None):
        self.strategy = oneshot_strategy(cfg.strategy)
        self.space = _load_space(cfg, space)
        self.run_dir = Path(run_dir) if run_dir else Path(runs_dir) / cfg.name
        if resume:
            stored = rundir.read_run_config(self.run_dir)
            if stored.get("trials") != cfg.trials:
                raise ConfigError(f"a one-shot ({cfg.strategy}) search resumes as it was started: its trials stay "
                                  f"{stored.get('trials')} (drop --trials)", field="SearchConfig.trials")
        # (the driver of a cluster need not have the GPUs its workers have)
        self.cfg, self.tc, self.task, self.count = prepare(cfg, self.space, self.strategy,
                                                           check_device=not cfg.address)
        self.lock = open_run(self.cfg, self.run_dir, resume=resume)

    @staticmethod
    def resolve(cfg: SearchConfig, space: Space | None = None) -> SearchConfig:
        """The settings ``OneShotRun(cfg)`` would record in ``config.json``, checked, nothing written."""
        space = _load_space(cfg, space)
        return prepare(cfg, space, oneshot_strategy(cfg.strategy), check_device=not cfg.address)[0]

    def run(self, on_event: EventHandler | None = None) -> dict[str, Any]:
        """Train and score every seed (a finished run: its summary again), record their best cells and
        return the run's summary; ``on_event`` hears an ``OneShotProgress`` as each seed goes on."""
        try:
            summary = finished_summary(self.run_dir)
            if summary is not None:
                return summary

            def progress(event: dict[str, Any]) -> None:
                if on_event is not None:
                    on_event(OneShotProgress(seed=event["seed"], phase=event["phase"], done=event["done"],
                                             total=event["total"], value=event.get("loss", event.get("score"))))

            if self.cfg.backend == "local":
                return run_here(self.strategy, self.cfg, self.space, self.tc, self.task, self.count, self.run_dir,
                                progress)
            start = time.perf_counter()
            results = self._on_ray(progress)
            return record(self.run_dir, self.cfg, self.space, results, time.perf_counter() - start)
        finally:
            self.lock.release()

    def _on_ray(self, progress: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
        """Every seed a Tune trial; their results (ConfigError, one line, when a seed failed)."""
        from cellsearch.runner.tune import run_tune

        cfg = self.cfg
        settings = JobSettings(parallel=cfg.parallel, backend="ray", address=cfg.address,
                               cpus_per_trial=cfg.cpus_per_trial, gpus_per_trial=cfg.gpus_per_trial,
                               max_failures=cfg.max_failures, scheduler="fifo", population=False)
        settings.validate()
        config = asdict(cfg)
        jobs = [wire.seed_job_to_wire(config, seed, str(self.run_dir.resolve())) for seed in search_seeds(cfg)]
        results: dict[int, dict[str, Any]] = {}
        errors: list[str] = []

        def on_done(job: dict[str, Any], outcome: Any, node: str | None) -> None:
            take_outcome(job, outcome, node, results, errors)

        queue = SeedQueue(jobs, settings, on_done, progress)
        # (the queue serves the jobs as plain data, which the kind's receive turns into SeedJobs)
        run_tune(queue, self.run_dir, cast("TrialKind[Any, Any]", oneshot_trials()), name="tune-oneshot")
        if errors or len(results) < len(jobs):
            first = errors[0] if errors else "stopped before it ended"
            raise ConfigError(f"{len(jobs) - len(results)} of {len(jobs)} search seed(s) failed ({first}); every "
                              f"seed's checkpoint is kept: fix that and run `cellsearch resume {self.run_dir}`")
        return [results[s] for s in sorted(results)]


def take_outcome(job: dict[str, Any], outcome: Any, node: str | None, results: dict[int, dict[str, Any]],
                 errors: list[str]) -> None:
    """A seed's final outcome into ``results`` (its result, its cells' ``node`` set, under the job's seed)
    or ``errors`` (one line: a failure, or a result of another seed than the job's, refused)."""
    assert isinstance(outcome, SeedOutcome)
    seed = job["seed"]
    if outcome.status != "ok" or outcome.result is None:
        errors.append(f"seed {seed}: {outcome.error or outcome.status}")
    elif outcome.result["seed"] != seed:  # (``record`` files the rows under the result's seed)
        errors.append(f"seed {seed}: its result is seed {outcome.result['seed']}'s: refused")
    else:
        result = outcome.result
        for cell in result["top"]:
            cell["node"] = node
        results[seed] = result


class SeedQueue(JobQueue):
    """The seeds' jobs served to Tune (a ``JobQueue``), with the workers' progress handed to ``on_progress``."""

    def __init__(self, jobs: list[dict[str, Any]], settings: JobSettings,
                 on_done: Callable[[dict[str, Any], Any, str | None], None],
                 on_progress: Callable[[dict[str, Any]], None]):
        super().__init__(jobs, settings, on_done)
        self.on_progress = on_progress

    def progress(self, trial_id: str, outcome: SeedOutcome) -> None:
        """A running seed's report (``runner.tune.SourceSearcher.on_trial_result``) as a progress event."""
        if outcome.status == "running" and outcome.phase is not None:
            value = "loss" if outcome.phase == "train" else "score"
            self.on_progress({"seed": outcome.seed, "phase": outcome.phase, "done": outcome.done,
                              "total": outcome.total, value: outcome.value})


def run_seed_job(spec: wire.SeedJob, report: Callable[[SeedOutcome], None] | None = None) -> SeedOutcome:
    """In the worker: one search seed trained and scored from its checkpoint on (``oneshot.search.run_seed``),
    its progress reported as it goes; never raises (a failure is a ``failed`` outcome saying why)."""
    job = spec
    try:
        from cellsearch.training.parallelism import use_threads

        cfg = SearchConfig.from_dict(job.config, "one-shot seed job")
        strategy = oneshot_strategy(cfg.strategy)
        space = _load_space(cfg, None)
        cfg, tc, task, count = prepare(cfg, space, strategy)

        def progress(event: dict[str, Any]) -> None:  # (scoring: every tenth of the cells and the last)
            if report is not None and (event["phase"] != "score" or scoring_shown(event["done"], event["total"])):
                report(SeedOutcome("running", event["seed"], event["phase"], event["done"], event["total"],
                                   event.get("loss", event.get("score"))))

        before = use_threads(job.threads)
        try:
            search = run_seed(strategy, cfg, space, task, tc, count, job.seed, Path(job.run_dir), progress)
        finally:
            use_threads(before)
        return SeedOutcome("ok", job.seed, result=seed_result(search, cfg.trials))
    except Exception as exc:  # a failing seed must not take the driver down: it reports why, in one line
        if isinstance(exc, ConfigError):
            return SeedOutcome("failed", job.seed, error=str(exc))
        error = f"{type(exc).__name__}: {exc}"
        log = _write_traceback(Path(job.run_dir), job.seed, traceback.format_exc())
        return SeedOutcome("failed", job.seed, error=error if log is None else f"{error} (its traceback: {log})")


def traceback_log(run_dir: Path, seed: int) -> Path:
    """Where a failed search seed's worker writes its traceback: ``oneshot-seed{S}-error.log`` in ``run_dir``."""
    return run_dir / f"oneshot-seed{seed}-error.log"


def _write_traceback(run_dir: Path, seed: int, text: str) -> Path | None:
    """``text`` written to the seed's ``traceback_log``; None when it cannot be (the one-line error stays)."""
    path = traceback_log(run_dir, seed)
    try:
        atomic_write(path, text)
    except (WriteError, ConfigError):  # (a full disk, a file where its folder is, a link: the line stays)
        return None
    return path


def _no_score(outcome: SeedOutcome) -> float | None:
    return None  # (the seeds run to their ends: nothing for a scheduler to compare)


def _seed_lost(error: str) -> SeedOutcome:
    return SeedOutcome("failed", -1, error=error)


def _seed_stopped() -> SeedOutcome:
    return _seed_lost("stopped before it ended")


def oneshot_trials() -> "TrialKind[wire.SeedJob, SeedOutcome]":
    """One-shot search seeds as Tune trials: ``run_seed_job`` in the worker, carried by ``runner.wire``."""
    from cellsearch.runner.tune import TrialKind, _same

    return TrialKind(key="oneshot", run=run_seed_job, send=_same, receive=wire.seed_job_from_wire,
                     encode=wire.seed_outcome_to_wire, decode=wire.seed_outcome_from_wire, score=_no_score,
                     lost=_seed_lost, stopped=_seed_stopped)
