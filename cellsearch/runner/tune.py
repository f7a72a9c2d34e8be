"""Ray Tune glue: each candidate is one Tune trial; the Controller is wrapped as a Searcher.

The same Searcher serves the final evaluation protocol's trainings (``runner.jobs.JobQueue``,
trial config key ``retrain``): anything with ``next_trial``/``complete``, a ``cfg`` with the
cluster settings and ``threads`` can be run here. Imported lazily (only when Ray is used).
The trainable reports intermediate scores (for ASHA) and a final report flagged ``final``;
a trial the scheduler stops early ends
without it and is recorded as ``stopped-early`` with its last score. A trial whose worker
dies is retried by Tune (``FailureConfig``); errors inside training are caught by
``evaluate_candidate`` and reported as status ``failed``. Each run joins the cluster or starts a
local Ray and leaves it when it ends, however it ends (``ray_session``).
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import ray
from ray import tune
from ray.tune.search import Searcher

from cellsearch.runner.evaluate import evaluate_candidate
from cellsearch.runner.search import FINISHED, Controller

METRIC = "tune_score"  # the score, with failures mapped to a very low number for the scheduler
FAILED_SCORE = -1e9


def _trainable(config: dict) -> None:
    """One trial: evaluate the candidate, reporting as it goes (or run one retraining job)."""
    node = ray.get_runtime_context().get_node_id()
    if "retrain" in config:
        from cellsearch.runner.final import retrain

        outcome = retrain(config["retrain"])
        valid = outcome.get("valid")
        tune.report({METRIC: valid if valid is not None else FAILED_SCORE, "final": True, "node": node,
                     "outcome": json.dumps(outcome)})
        return

    def report(partial: dict) -> None:
        tune.report({METRIC: partial["score"], "final": False, "node": node, "outcome": "",
                     "partial": json.dumps({"metrics": partial["metrics"], "params": partial["params"],
                                            "stage": partial["stage"]})})

    outcome = evaluate_candidate(config["candidate"], report=report)
    score = outcome.get("score")
    tune.report({METRIC: score if score is not None else FAILED_SCORE, "final": True, "node": node,
                 "outcome": json.dumps(outcome)})


class ControllerSearcher(Searcher):
    """Tune's Searcher interface over the Controller (suggest → next_trial, complete → tell), or over
    a JobQueue; ``key`` names the trial config entry the trainable dispatches on."""

    def __init__(self, controller: Controller, key: str = "candidate"):
        super().__init__(metric=METRIC, mode="max")
        self.ctl = controller
        self.key = key

    def __getstate__(self) -> dict:
        # Tune pickles its search algorithm into the experiment folder for its own restore; our
        # resume goes through `cellsearch resume` and the run directory, so leave the live
        # controller (database connection, progress display) out.
        return {k: v for k, v in self.__dict__.items() if k != "ctl"}

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True

    def suggest(self, trial_id: str):
        nxt = self.ctl.next_trial(trial_id)
        if nxt == FINISHED:
            return Searcher.FINISHED
        if nxt is None:
            return None
        return {self.key: nxt}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
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
        self.ctl.complete(trial_id, outcome, node=node)

    def save(self, checkpoint_path: str) -> None:
        self.ctl.save()  # the Controller keeps its own state file (state.json) up to date

    def restore(self, checkpoint_path: str) -> None:
        pass  # resuming goes through `cellsearch resume`, which restores the Controller


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
    # whatever the options; none of them can be left out through ray.init)
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
            ray.init(num_cpus=os.cpu_count(), num_gpus=None, **kwargs)
        yield
    finally:
        # also after a Ctrl-C during ray.init, which leaves a half-started Ray. (Ray's own atexit
        # hook stops a local Ray only when the interpreter exits, and does not wait for it: a
        # library caller or a test would go on with its processes still running.)
        ray.shutdown(wait_for_processes=True)


def run_tune(ctl: Controller, run_dir: Path, name: str = "tune", key: str = "candidate") -> None:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    import torch

    cfg = ctl.cfg
    torch.set_num_threads(1)  # the driver only runs the strategy; trials have their own processes
    resources = {"cpu": ctl.threads}
    if cfg.gpus_per_trial:
        resources["gpu"] = cfg.gpus_per_trial
    if cfg.scheduler == "asha":
        # time = intermediate reports, 4 per training run; a trial first competes after its first
        # complete run of a scoring stage, then at 8, 16, ... reports against the others' scores then
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=1000, grace_period=4, reduction_factor=2)
    else:
        scheduler = FIFOScheduler()
    with ray_session(cfg):  # before the Tuner, which would otherwise start a default Ray of its own
        tuner = tune.Tuner(
            tune.with_resources(_trainable, resources),
            tune_config=tune.TuneConfig(search_alg=ControllerSearcher(ctl, key), scheduler=scheduler, num_samples=-1,
                                        max_concurrent_trials=cfg.parallel, metric=METRIC, mode="max",
                                        reuse_actors=True),
            run_config=tune.RunConfig(name=name, storage_path=str(Path(run_dir).resolve()), verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
                                      log_to_file=True),
        )
        tuner.fit()
