"""Retraining cells under the final evaluation protocol: which jobs, run where, recorded how.

``Retrainer`` turns cells into the protocol's jobs (``runner.protocol``: the learning-rate
sweep, then the seeds at the chosen rate), runs the ones the database lacks as Ray Tune trials
or in-process (``runner.jobs``), the jobs of one cell and task as one population (its body
``runner.final.retrain_population``; one job at a time, ``runner.final.retrain``, when
``JobSettings.population`` is off) and records each
in the run's ``results.db`` (table ``retrains``) under a key made of the protocol's fingerprint,
the cell, task, learning rate and seed, so an interrupted evaluation resumes where it stopped
and ``fidelity`` reuses what ``evaluate`` already trained (and the other way round). It returns
what was measured (``CellResult``); the statistics and reports are ``cellsearch.analysis``'s.
"""

from __future__ import annotations

import functools
import math
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cellsearch.dsl.graph import CellGraph
from cellsearch.dsl.hashing import canonical_hash
from cellsearch.dsl.io import dumps_cell, loads_cell
from cellsearch.errors import ConfigError
from cellsearch.storage.outcome import JobOutcome, TrainingOutcome
from cellsearch.runner import final
from cellsearch.runner.events import EventHandler, JobFinished, JobsEnded, JobsStarted
from cellsearch.runner.jobs import JobSettings, run_jobs
from cellsearch.runner.protocol import Protocol
from cellsearch.storage.store import Store


@dataclass
class Cell:
    label: str  # how reports name it (the cell's name, or the built-in name of a baseline)
    graph: CellGraph
    role: str = "candidate"  # candidate | baseline
    search_score: float | None = None

    # (computed once: every job and key of the cell names them; the graph is never replaced)
    @functools.cached_property
    def hash(self) -> str:
        """The graph's canonical hash."""
        return canonical_hash(self.graph)

    @functools.cached_property
    def yaml(self) -> str:
        """The graph as cell YAML (what a job trains and the retrains table keeps)."""
        return dumps_cell(self.graph)


@dataclass
class CellResult:
    """What the protocol measured for one cell on one task."""

    cell: Cell
    task: str
    lr: float | None  # the learning rate the sweep chose (None: every sweep run failed)
    test: dict[int, float | None]  # seed → test score
    valid: dict[int, float | None]
    status: dict[int, str]
    sweep: dict[float, float | None]  # learning rate → seed-0 validation score


def scored_cells(run_dir: str | Path, top: int | None = None, pareto: bool = False) -> list[Cell]:
    """The ``top`` (None: all) best distinct cells a search scored (its reference cell left out),
    as candidates for retraining; ``pareto``: the cells of the run's Pareto front instead
    (``results.pareto_front``, best score first; ``top`` caps them too)."""
    from cellsearch.storage.results import pareto_front, top_cells

    rows = [r for r in (pareto_front(run_dir) if pareto else top_cells(run_dir)) if r["score"] is not None]
    if not rows:
        raise ConfigError(f"{run_dir}: the search scored no cell yet, nothing to evaluate")
    return [Cell(r["cell"], loads_cell(r["cell_yaml"], warn=False), "candidate", r["score"]) for r in rows[:top]]


def distinct_labels(cells: list[Cell]) -> list[Cell]:
    """Two different cells with the same name are told apart by hash (``name@hash8``)."""
    labels = [c.label for c in cells]
    for c in cells:
        if labels.count(c.label) > 1:
            c.label = f"{c.label}@{c.hash[:8]}"
    return cells


class Retrainer:
    """Runs the protocol's jobs for a set of cells, skipping jobs the database already holds;
    ``on_event`` (optional) hears of each batch of jobs and each finished job
    (``runner.events``)."""

    def __init__(self, run_dir: str | Path, protocol: Protocol, settings: JobSettings, purpose: str,
                 on_event: EventHandler | None = None):
        self.run_dir = Path(run_dir)
        self.protocol = protocol
        self.settings = settings
        self.purpose = purpose
        self.on_event = on_event

    def key(self, cell_hash: str, task: str, lr: float, seed: int) -> str:
        """The database key of one training job: the protocol's fingerprint, the cell, task, rate and seed."""
        return f"{self.protocol.fingerprint}:{cell_hash}:{task}:{lr:.6g}:{seed}"

    def _job(self, cell: Cell, task: str, lr: float, seed: int) -> dict[str, Any]:
        p = self.protocol
        device = "cuda" if self.settings.gpus_per_trial else "cpu"
        return {"key": self.key(cell.hash, task, lr, seed), "cell": cell.yaml, "hash": cell.hash,
                "name": cell.graph.name, "task": task, "lr": lr, "seed": seed, "steps": p.steps,
                "seconds": p.minutes * 60 if p.minutes else None, "train": dict(p.train, device=device),
                "task_options": p.task_options.get(task, {}), "data_dir": p.data_dir}

    def _done(self, store: Store) -> dict[str, Any]:
        return {r["key"]: r for r in store.retrains(self.protocol.fingerprint)}

    def _emit(self, event) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def _run(self, store: Store, jobs: list[dict], phase: str) -> dict[str, Any]:
        """Run the jobs the database lacks; returns the protocol's finished jobs by key."""
        done = self._done(store)
        todo = [j for j in jobs if j["key"] not in done]
        if not todo:
            return done
        label = f"{self.purpose}: {phase}"
        self._emit(JobsStarted(label, len(todo)))

        def record(job: dict, outcome: TrainingOutcome, node: str | None) -> None:
            error = outcome.error if outcome.traceback is None else f"{outcome.error}\n{outcome.traceback}"
            test = outcome.value("test")
            store.add_retrain(key=job["key"], protocol=self.protocol.fingerprint, purpose=self.purpose,
                              hash=job["hash"], cell_name=job["name"], cell_yaml=job["cell"], task=job["task"],
                              lr=job["lr"], seed=job["seed"], status=outcome.status, valid=outcome.score,
                              test=test, metrics=outcome.metrics, params=outcome.params, seconds=outcome.seconds,
                              node=node, error=error)
            self._emit(JobFinished(label, job["name"], job["task"], job["lr"], job["seed"], outcome.status, test))

        def on_done(job: dict, outcome: JobOutcome, node: str | None) -> None:
            members = job.get("members", [job])  # (a population job: the jobs it trained)
            for member, out in zip(members, _per_job(outcome, len(members))):
                record(member, out, node)

        try:
            # (looked up now, not bound at import: a test may stand in for the job body)
            if self.settings.population:
                run_jobs(population_groups(todo), final.retrain_population, self.settings, self.run_dir,
                         on_done, name=f"tune-{self.purpose}")
            else:
                run_jobs(todo, final.retrain, self.settings, self.run_dir, on_done, name=f"tune-{self.purpose}")
        finally:
            self._emit(JobsEnded(label))
        done = self._done(store)
        missing = [j["key"] for j in todo if j["key"] not in done]
        if missing:
            raise ConfigError(f"{len(missing)} training(s) did not finish; run the command again to resume")
        return done

    def run(self, cells: list[Cell]) -> list[CellResult]:
        """Train every cell on every task of the protocol (a learning-rate sweep first when it has several
        rates, then each seed at the rate chosen by validation score) under the run's writer lock, and
        return one ``CellResult`` per cell and task. Jobs already in the database are not run again."""
        p = self.protocol
        lrs = p.learning_rates
        from cellsearch.storage.writer_lock import WriterLock

        with ExitStack() as stack:
            stack.enter_context(WriterLock(self.run_dir, f"cellsearch {self.purpose}"))
            store = stack.enter_context(Store(self.run_dir / "results.db"))
            if self.settings.backend == "ray":  # one Ray for both phases (sweep, seeds), not one each
                from cellsearch.runner.tune import ray_session

                stack.enter_context(ray_session(self.settings))
            # (with one rate there is nothing to sweep: the seeds below use it)
            done = self._run(store, [self._job(c, t, lr, 0) for c in cells for t in p.tasks for lr in lrs],
                             "learning-rate sweep") if len(lrs) > 1 else {}
            chosen: dict[tuple[str, str], float | None] = {}
            sweeps: dict[tuple[str, str], dict[float, float | None]] = {}
            for c in cells:
                for t in p.tasks:
                    if len(lrs) == 1:
                        chosen[c.hash, t], sweeps[c.hash, t] = lrs[0], {}
                        continue
                    sweep = {lr: _ok_value(done.get(self.key(c.hash, t, lr, 0)), "valid") for lr in lrs}
                    scored = [(v, -abs(math.log(lr / p.base_lr)), lr) for lr, v in sweep.items() if v is not None]
                    # best validation score; on a tie the rate nearest the search's
                    chosen[c.hash, t] = max(scored)[2] if scored else None
                    sweeps[c.hash, t] = sweep
            finals = [self._job(c, t, chosen_lr, s) for c in cells for t in p.tasks
                      if (chosen_lr := chosen[c.hash, t]) is not None for s in range(p.seeds)]
            done = self._run(store, finals, f"{p.seeds} seed(s)")
        results = []
        for c in cells:
            for t in p.tasks:
                lr = chosen[c.hash, t]
                rows = {s: done.get(self.key(c.hash, t, lr, s)) for s in range(p.seeds)} if lr is not None else {}
                results.append(CellResult(
                    cell=c, task=t, lr=lr, test={s: _ok_value(r, "test") for s, r in rows.items()},
                    valid={s: _ok_value(r, "valid") for s, r in rows.items()},
                    status={s: (r["status"] if r is not None else "missing") for s, r in rows.items()},
                    sweep=sweeps[c.hash, t]))
        return results


def population_groups(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Jobs of one cell and task (they differ in learning rate and seed) gathered into one population
    job each (``final.retrain_population``), in the order their first job came."""
    from cellsearch.limits import MAX_POPULATION

    groups: dict[tuple[str, str], list[dict]] = {}
    for job in jobs:
        groups.setdefault((job["hash"], job["task"]), []).append(job)
    out = []
    for members in groups.values():
        for i in range(0, len(members), MAX_POPULATION):
            chunk = members[i:i + MAX_POPULATION]
            out.append({"key": "population:" + ",".join(j["key"] for j in chunk), "members": chunk})
    return out


def _per_job(outcome: JobOutcome, jobs: int) -> list[TrainingOutcome]:
    """A (population) job's outcome, one per job it trained: a single outcome (the trial itself failed)
    counts for every job."""
    if not isinstance(outcome, list):
        return [outcome] * jobs
    if len(outcome) != jobs:
        return [TrainingOutcome("failed", error=f"{len(outcome)} outcomes for {jobs} jobs")] * jobs
    return outcome


def _ok_value(row, column: str) -> float | None:
    if row is None or row["status"] != "ok":
        return None
    v = row[column]
    return float(v) if v is not None and math.isfinite(v) else None
