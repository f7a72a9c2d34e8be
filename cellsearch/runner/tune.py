"""Ray Tune glue: each trial a ``TrialSource`` serves is one Tune trial; the source is wrapped as a Searcher.

Three sources feed trials: the search's ``runner.search.Controller`` (candidates, run by
``runner.trial.evaluate_candidate``: ``search_trials()``), the final evaluation protocol's
``runner.jobs.JobQueue`` (training jobs, run by the function given to ``run_jobs``:
``job_trials(fn)``) and a one-shot search's seeds (``runner.oneshot``: ``oneshot_trials()``, whose
running trials' reports reach the source's ``progress``). A ``TrialKind`` says what a trial runs in its worker and how its spec
crosses to the worker (Tune's trial config) and its outcome back (Tune's result dict, as text):
for a search trial, ``runner.wire``. The worker runs exactly the function it names, so the
Ray backend and the in-process one run the same code. Imported lazily (only when Ray is used).
The trainable reports intermediate outcomes (for ASHA: what the trial would come to if
stopped there) and a final one flagged ``final``; a trial the scheduler stops early ends
without it and is recorded as its last intermediate outcome (``stopped-early``). A trial
whose worker dies is retried by Tune (``FailureConfig``); errors inside training are caught by the trial function (``evaluate_candidate``, ``retrain``) and
reported as status ``failed``. Each run joins the cluster or starts a local Ray and leaves it
when it ends, however it ends (``ray_session``).
"""

from __future__ import annotations

import errno
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generic, Iterator, Protocol, TypeVar, cast

import ray
from ray import tune
from ray.tune.search import Searcher

from cellsearch.errors import CellError, ConfigError
from cellsearch.storage.outcome import JobOutcome, TrainingOutcome, TrialOutcome
from cellsearch.runner import wire
from cellsearch.runner.source import FINISHED, TrialSource
from cellsearch.runner.trial import TrialSpec, evaluate_candidate

METRIC = "tune_score"  # the score, with failures mapped to a very low number for the scheduler
FAILED_SCORE = -1e9

S = TypeVar("S")  # what a trial runs: a TrialSpec (search), a job dict (jobs)
O = TypeVar("O")  # a source's outcome type: TrialOutcome (search), TrainingOutcome(s) (jobs)
S_contra = TypeVar("S_contra", contravariant=True)
O_co = TypeVar("O_co", covariant=True)


class TrialFunction(Protocol[S_contra, O_co]):
    """The body of one trial, run in a Tune worker: ``spec`` is what the source's ``next_trial``
    gave (rebuilt by the kind's ``receive``); ``report`` takes what the trial would come to if the
    scheduler stopped it now (for early stopping). It must never raise for a bad candidate or job
    (the outcome's status says). Ray pickles it to the worker: a module-level function by
    reference, so its module must be importable there."""

    def __call__(self, spec: S_contra, report: Callable[[O_co], None] | None = None) -> O_co: ...


@dataclass(frozen=True)
class TrialKind(Generic[S, O]):
    """One kind of trial: what its worker runs, and how its spec and outcome cross the process boundary."""

    key: str  # the trial config's entry that holds the spec (Tune's params.json shows it)
    run: TrialFunction[S, O]
    send: Callable[[S], Any]  # in the driver: the spec as plain data (Tune's trial config)
    receive: Callable[[Any], S]  # in the worker: back; a ConfigError refuses it (see ``lost``)
    encode: Callable[[O], str]  # in the worker: an outcome as text (Tune's result dict)
    decode: Callable[[str], O]  # in the driver: back, for the source's ``complete``
    score: Callable[[O], float | None]  # what the scheduler compares (higher is better)
    lost: Callable[[str], O]  # a trial that gave no outcome (refused spec, dead worker): failed with this error
    stopped: Callable[[], O]  # a trial the scheduler stopped before it reported anything


def search_trials() -> TrialKind[TrialSpec, TrialOutcome]:
    """Search trials: a candidate's staged evaluation (``runner.trial``), carried by ``runner.wire``."""
    return TrialKind(key="candidate", run=evaluate_candidate, send=wire.spec_to_wire, receive=wire.spec_from_wire,
                     encode=wire.outcome_to_wire, decode=wire.outcome_from_wire, score=_trial_score,
                     lost=_trial_lost, stopped=_trial_stopped)


def _trial_score(outcome: TrialOutcome) -> float | None:
    return outcome.score


def _trial_lost(error: str) -> TrialOutcome:
    return TrialOutcome(None, "failed", error=error)


def _trial_stopped() -> TrialOutcome:
    return TrialOutcome(None, "stopped-early")


@dataclass(frozen=True)
class _JobFunction:
    """``fn(job)`` as a ``TrialFunction`` (a job reports nothing before it ends)."""

    fn: Callable[[dict[str, Any]], JobOutcome]

    def __call__(self, spec: dict[str, Any], report: Callable[[JobOutcome], None] | None = None) -> JobOutcome:
        return self.fn(spec)


def _same(data: Any) -> Any:
    return data


def _job_score(outcome: JobOutcome) -> float | None:
    return outcome.score if isinstance(outcome, TrainingOutcome) else None  # (a population: nothing to compare)


def _job_lost(error: str) -> JobOutcome:
    return TrainingOutcome("failed", error=error)


def _job_stopped() -> JobOutcome:
    return _job_lost("stopped before it ended")


def job_trials(fn: Callable[[dict[str, Any]], JobOutcome]) -> TrialKind[dict[str, Any], JobOutcome]:
    """Training jobs of the final protocol: ``fn(job)`` (e.g. ``runner.final.retrain``), its
    ``TrainingOutcome`` scored by its validation score. A job is plain data already; its outcome
    crosses back through ``runner.wire``; ``fn`` travels to the workers as ``TrialFunction`` says."""
    return TrialKind(key="retrain", run=_JobFunction(fn), send=_same, receive=_same, encode=wire.training_to_wire,
                     decode=wire.training_from_wire, score=_job_score, lost=_job_lost, stopped=_job_stopped)


def _tune_score(score: float | None) -> float:
    return score if score is not None else FAILED_SCORE


def run_received(trials: TrialKind[S, O], data: Any, report: Callable[[O], None] | None = None) -> O:
    """In the worker: the trial of the spec ``data`` the driver sent, rebuilt and checked by the kind's
    ``receive``; a spec it refuses (a hash that is not its cell's, a cell that fails validation, a
    field of the wrong type) is never trained, and the trial fails saying why."""
    try:
        spec = trials.receive(data)
    except (ConfigError, CellError) as exc:
        return trials.lost(f"refused by the worker: {exc}")
    return trials.run(spec, report=report)


def _trainable(config: dict, trials: TrialKind) -> None:
    """One trial: rebuild the spec the driver sent, run the trial function on it, reporting as it goes."""
    from cellsearch.training.allocator import keep_freed_memory

    keep_freed_memory()  # (a worker process is the search's own: tuned for training steps)
    node = ray.get_runtime_context().get_node_id()

    def report(partial) -> None:
        tune.report({METRIC: _tune_score(trials.score(partial)), "final": False, "node": node, "outcome": "",
                     "partial": trials.encode(partial)})

    outcome = run_received(trials, config[trials.key], report)
    tune.report({METRIC: _tune_score(trials.score(outcome)), "final": True, "node": node,
                 "outcome": trials.encode(outcome)})


class SourceSearcher(Searcher, Generic[S, O]):
    """Tune's Searcher interface over a ``TrialSource`` (suggest → next_trial, on_trial_complete →
    complete); ``trials`` says where a trial's config goes and how its outcome comes back."""

    def __init__(self, source: TrialSource[S, O], trials: TrialKind[S, O]):
        super().__init__(metric=METRIC, mode="max")
        self.source = source
        self.trials = trials
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
        """Raise the error the source met during the search, if it met one."""
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
        return {self.trials.key: self.trials.send(cast(S, nxt))}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """A running trial's report: handed to the source's ``progress(trial_id, partial)`` when it has one
        (``runner.oneshot.SeedQueue``: a seed's progress); other sources hear only ended trials."""
        progress = getattr(self.source, "progress", None)
        if progress is None or self.failure is not None or not result.get("partial"):
            return
        try:
            progress(trial_id, self.trials.decode(result["partial"]))
        except Exception as exc:
            self.failure = exc

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if self.failure is not None:  # stopped: the trials still running end unrecorded (resume runs them again)
            return
        try:
            self._complete(trial_id, result, error)
        except Exception as exc:
            self.failure = exc

    def _complete(self, trial_id: str, result: dict | None, error: bool) -> None:
        node = (result or {}).get("node")
        trials = self.trials
        if error:
            outcome = trials.lost("the trial's worker failed (see Tune's logs)")
        elif result and result.get("final"):
            outcome = trials.decode(result["outcome"])
        elif result and result.get("partial"):  # stopped by the scheduler before the end: its last report
            outcome = trials.decode(result["partial"])
        else:
            outcome = trials.stopped()
        self.source.complete(trial_id, outcome, node=node)

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
    # (Ray's process_watcher); no Ray API reaches them from outside (docs/data-safety.md).
    kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
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


def run_tune(source: TrialSource[S, O], run_dir: Path, trials: TrialKind[S, O], name: str = "tune") -> None:
    """Run every trial ``source`` serves as a Tune trial of ``trials``' kind, until it says ``FINISHED``
    (Tune's experiment folder: ``run_dir/name``)."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

    from cellsearch.training.parallelism import torch_threads

    cfg = source.cfg
    resources: dict[str, float] = {"cpu": source.threads}
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
        scheduler: TrialScheduler = ASHAScheduler(time_attr="training_iteration", max_t=1000, grace_period=1,
                                                  reduction_factor=2)
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
