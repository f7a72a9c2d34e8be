"""Ray Tune glue: each trial a ``TrialSource`` serves is one Tune trial; the source is wrapped as a Searcher.

Two sources feed trials: the search's ``runner.search.Controller`` (candidates, run by
``runner.trial.evaluate_candidate``: ``search_trials()``) and the final evaluation protocol's
``runner.jobs.JobQueue`` (training jobs, run by the function given to ``run_jobs``:
``job_trials(fn)``). A ``TrialKind`` says what a trial runs in its worker and how its outcome
crosses Tune's result dict (as JSON); the worker runs exactly the function it names, so the
Ray backend and the in-process one run the same code. Imported lazily (only when Ray is used).
The trainable reports intermediate scores (for ASHA) and a final report flagged ``final``;
a trial the scheduler stops early ends without it and is recorded as ``stopped-early`` with
its last score. A trial whose worker dies is retried by Tune (``FailureConfig``); errors
inside training are caught by the trial function (``evaluate_candidate``, ``retrain``) and
reported as status ``failed``. Each run joins the cluster or starts a local Ray and leaves it
when it ends, however it ends (``ray_session``).
"""

from __future__ import annotations

import errno
import json
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generic, Iterator, Protocol, TypeVar

import ray
from ray import tune
from ray.tune.search import Searcher

from cellsearch.outcome import TrialOutcome
from cellsearch.runner.source import FINISHED, TrialSource
from cellsearch.runner.trial import evaluate_candidate

METRIC = "tune_score"  # the score, with failures mapped to a very low number for the scheduler
FAILED_SCORE = -1e9

O = TypeVar("O")  # a source's outcome type: TrialOutcome (search), the job function's dict (jobs)
O_co = TypeVar("O_co", covariant=True)
Reporter = Callable[[dict[str, Any]], None]


class TrialFunction(Protocol[O_co]):
    """The body of one trial, run in a Tune worker: ``config`` is what the source's ``next_trial``
    gave; ``report`` takes intermediate results (``score``, ``stage``, ``metrics``, ``params``) for
    early stopping. It must never raise for a bad candidate or job (the outcome's status says).
    Ray pickles it to the worker: a module-level function by reference, so its module must be
    importable there."""

    def __call__(self, config: dict[str, Any], report: Reporter | None = None) -> O_co: ...


@dataclass(frozen=True)
class TrialKind(Generic[O]):
    """One kind of trial: what its worker runs and how its outcome crosses Tune's result dict."""

    key: str  # the trial config's entry that holds what ``next_trial`` gave (Tune's params.json shows it)
    run: TrialFunction[O]
    to_dict: Callable[[O], dict[str, Any]]  # in the worker: the outcome as JSON-serialisable data
    from_dict: Callable[[dict[str, Any]], O]  # in the driver: back, for the source's ``complete``
    score_key: str  # the entry of that data the scheduler compares (higher is better)


def search_trials() -> TrialKind[TrialOutcome]:
    """Search trials: a candidate's staged evaluation, its ``TrialOutcome`` scored by ``score``."""
    return TrialKind(key="candidate", run=evaluate_candidate, to_dict=TrialOutcome.to_dict,
                     from_dict=TrialOutcome.from_dict, score_key="score")


@dataclass(frozen=True)
class _JobFunction:
    """``fn(job)`` as a ``TrialFunction`` (a job reports nothing before it ends)."""

    fn: Callable[[dict[str, Any]], dict[str, Any]]

    def __call__(self, config: dict[str, Any], report: Reporter | None = None) -> dict[str, Any]:
        return self.fn(config)


def job_trials(fn: Callable[[dict[str, Any]], dict[str, Any]]) -> TrialKind[dict[str, Any]]:
    """Training jobs of the final protocol: ``fn(job)`` (e.g. ``runner.final.retrain``), its outcome
    dict scored by ``valid``. ``fn`` travels to the workers as ``TrialFunction`` says."""
    return TrialKind(key="retrain", run=_JobFunction(fn), to_dict=dict, from_dict=dict, score_key="valid")


def _trainable(config: dict, trials: TrialKind) -> None:
    """One trial: run the trial function on the source's config, reporting as it goes."""
    from cellsearch.allocator import keep_freed_memory

    keep_freed_memory()  # (a worker process is the search's own: tuned for training steps)
    node = ray.get_runtime_context().get_node_id()

    def report(partial: dict) -> None:
        tune.report({METRIC: partial["score"], "final": False, "node": node, "outcome": "",
                     "partial": json.dumps({"metrics": partial["metrics"], "params": partial["params"],
                                            "stage": partial["stage"]})})

    outcome = trials.to_dict(trials.run(config[trials.key], report=report))
    score = outcome.get(trials.score_key)
    tune.report({METRIC: score if score is not None else FAILED_SCORE, "final": True, "node": node,
                 "outcome": json.dumps(outcome)})


class SourceSearcher(Searcher, Generic[O]):
    """Tune's Searcher interface over a ``TrialSource`` (suggest → next_trial, on_trial_complete →
    complete); ``trials`` says where a trial's config goes and how its outcome comes back."""

    def __init__(self, source: TrialSource[O], trials: TrialKind[O]):
        super().__init__(metric=METRIC, mode="max")
        self.source = source
        self.key = trials.key
        self.from_dict = trials.from_dict
        # An error of the source (a full disk under the results, a reference cell that failed): Tune
        # would log its traceback and go on, so it is kept here, the search stops (no new trial) and
        # ``run_tune`` raises it once Tune has ended.
        self.failure: Exception | None = None

    def __getstate__(self) -> dict:
        # Tune pickles its search algorithm into the experiment folder for its own restore; our
        # resume goes through `cellsearch resume` and the run directory, so leave the live
        # source (database connection, progress display) out.
        return {k: v for k, v in self.__dict__.items() if k not in ("source", "failure")}

    def raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True

    def suggest(self, trial_id: str):
        if self.failure is not None:
            return Searcher.FINISHED
        nxt = self.source.next_trial(trial_id)
        if nxt == FINISHED:
            return Searcher.FINISHED
        if nxt is None:
            return None
        return {self.key: nxt}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if self.failure is not None:  # stopped: the trials still running end unrecorded (resume runs them again)
            return
        try:
            self._complete(trial_id, result, error)
        except Exception as exc:
            self.failure = exc

    def _complete(self, trial_id: str, result: dict | None, error: bool) -> None:
        node = (result or {}).get("node")
        if error:
            outcome = {"status": "failed", "score": None, "error": "the trial's worker failed (see Tune's logs)"}
        elif result and result.get("final"):
            outcome = json.loads(result["outcome"])
        else:  # stopped by the scheduler before the end: keep its last intermediate score and metrics
            last = (result or {}).get(METRIC)
            partial = json.loads((result or {}).get("partial") or "{}")
            outcome = {"status": "stopped-early", "score": None if last in (None, FAILED_SCORE) else last,
                       "metrics": partial.get("metrics", {}), "stage": partial.get("stage"),
                       "params": partial.get("params")}
        self.source.complete(trial_id, self.from_dict(outcome), node=node)

    def save(self, checkpoint_path: str) -> None:
        if self.failure is not None:
            return
        try:
            self.source.save()  # the source keeps its own state (the Controller: state.json) up to date
        except Exception as exc:
            self.failure = exc

    def restore(self, checkpoint_path: str) -> None:
        pass  # resuming goes through `cellsearch resume`, which restores the Controller


class _QuietFullDisk(logging.Handler):
    """Ray's loggers, while Tune runs: a record of a full disk is dropped, every other one goes where
    it went before (Python's last-resort handler: stderr, warnings and up). Tune's own writes into
    the run folder (its experiment state) fail on a full disk too, and Tune logs each failure with
    its traceback, again and again; the search reports the full disk itself, once, in one line
    (its own next write fails the same way)."""

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)) \
                or "No space left on device" in record.getMessage():
            return
        (logging.lastResort or logging.StreamHandler()).handle(record)


@contextmanager
def _full_disk_quiet() -> Iterator[None]:
    ray_logger = logging.getLogger("ray")
    if ray_logger.handlers:  # (someone configured Ray's logging: theirs to decide)
        yield
        return
    handler = _QuietFullDisk()
    ray_logger.addHandler(handler)
    try:
        yield
    finally:
        ray_logger.removeHandler(handler)


@contextmanager
def ray_session(cfg) -> Iterator[None]:
    """Ray while the block runs: joins ``cfg.address`` (a SearchConfig's or JobSettings') or starts
    a local Ray, and leaves it again however the block ends (normally, on an error, on Ctrl-C).
    Leaving a local Ray stops its processes (raylet, GCS, agents, workers) and waits for them to
    exit, so no command leaves them behind; leaving a cluster only disconnects. A Ray that is
    already up (the caller's, or an enclosing session's) is used and left running: ``run_tune``
    opens a session per run, and a caller with several runs can keep one Ray around them all."""
    if ray.is_initialized():
        yield
        return
    # include_dashboard=False: no web UI, only the minimal API server (Ray 2.60 starts the API
    # server, autoscaler monitor, log monitor and the raylet's dashboard and runtime-env agents
    # whatever the options; none of them can be left out through ray.init). A driver killed with
    # kill -9 cannot stop them: the kernel takes its raylet and GCS with it, and the two agents then
    # spend Ray's fixed 60 s trying to report the raylet's death to the dead GCS before they exit
    # (Ray's process_watcher); no Ray API reaches them from outside (README, Data safety).
    kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # Tune's newer console output prints an experiment banner even at verbose=0; our own progress
    # display (and the leaderboard) is what the user should see
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    try:
        if cfg.address:
            host = cfg.address.rsplit(":", 1)[0]
            if host in ("127.0.0.1", "localhost"):
                # a cluster whose nodes registered as 127.0.0.1: this driver must join as that node too
                # (by default it would look for a raylet at the machine's outward address)
                kwargs["_node_ip_address"] = "127.0.0.1"
            ray.init(address=cfg.address, **kwargs)
        else:
            # the raylet would prestart idle workers (one per CPU) for the first driver; Tune's trials
            # never use them (each starts a worker of its own), so they would only hold memory
            os.environ.setdefault("RAY_prestart_worker_first_driver", "0")
            # address="local": always a Ray of our own. With no address, ray.init joins a cluster that
            # `ray start` left on this machine (and then refuses num_cpus in a traceback); joining
            # one is what --address is for
            ray.init(address="local", num_cpus=os.cpu_count(), num_gpus=None, **kwargs)
        yield
    finally:
        # also after a Ctrl-C during ray.init, which leaves a half-started Ray. (Ray's own atexit
        # hook stops a local Ray only when the interpreter exits, and does not wait for it: a
        # library caller or a test would go on with its processes still running.)
        ray.shutdown(wait_for_processes=True)


def run_tune(source: TrialSource[O], run_dir: Path, trials: TrialKind[O], name: str = "tune") -> None:
    """Run every trial ``source`` serves as a Tune trial of ``trials``' kind, until it says ``FINISHED``
    (Tune's experiment folder: ``run_dir/name``)."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from cellsearch.train import torch_threads

    cfg = source.cfg
    resources = {"cpu": source.threads}
    if cfg.gpus_per_trial:
        resources["gpu"] = cfg.gpus_per_trial
    if cfg.scheduler == "asha":
        # time = intermediate reports, 4 per training run of a scoring stage (one per evaluation,
        # however many members a trial trains); a trial first competes after a quarter of its
        # first run, then at half of it, then at the ends of its runs (4, 8, 16, ... reports).
        # Chosen by replaying this scheduler on trained learning curves (benchmarks/asha_replay.py,
        # docs/results/asha-mutation1.md): rungs at 1/4 and 1/2 of a run spend 1.6-1.9x less
        # compute than FIFO for the same best final score (the former first rung, after a full
        # run, never stopped a one-stage trial early: 1.0x).
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=1000, grace_period=1, reduction_factor=2)
    else:
        scheduler = FIFOScheduler()
    searcher = SourceSearcher(source, trials)
    # (the driver only runs the strategy while Tune runs: trials have their own processes)
    with torch_threads(1), ray_session(cfg):  # before the Tuner, which would otherwise start a default Ray of its own
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(_trainable, trials=trials), resources),
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=-1,
                                        max_concurrent_trials=cfg.parallel, metric=METRIC, mode="max",
                                        reuse_actors=True),
            run_config=tune.RunConfig(name=name, storage_path=str(Path(run_dir).resolve()), verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
                                      log_to_file=True),
        )
        with _full_disk_quiet():
            tuner.fit()
    searcher.raise_failure()
