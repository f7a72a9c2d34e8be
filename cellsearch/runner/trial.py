"""One search trial: the staged evaluation of one candidate (runs in a Ray worker or in-process).

(Not the final evaluation protocol of ``cellsearch evaluate``, which retrains the search's best
cells from scratch.) An evaluation **plan** is a list of stages (``strategies.base.Stage``;
a strategy's ``plan`` or ``default_plan``). Each stage trains the cell on one task with the
trial budget, under one or more hyperparameter settings (the first is the run's defaults,
the others drawn from the Jozefowicz et al. grids), each with ``seeds`` seeds (``search --seeds``;
a setting scores the mean over its seeds), and keeps the best validation score of the task's
primary metric. A candidate's settings and seeds train as one population (``cellsearch.training.population``). A stage may be a **filter**: an absolute threshold (memorisation
≥ 0.95, lowered to 0.9 × the reference's memorisation when the reference itself misses 0.95 at
the trial budget) or one relative to the reference cell's best on that task (≥ 0.9 × GRU):
``strategies.base.stage_threshold``; a candidate below it is ``rejected`` there and the later
stages are skipped.

Score (higher is better): with one task and no reference it is the task's metric itself;
otherwise it is the minimum over the scoring stages of best ÷ reference best — the fitness
of Jozefowicz et al. (the reference scores 1.0 by construction).

What a trial evaluates is a ``TrialSpec``, made once on the driver (``runner.search.Controller``)
from the candidate, whose YAML text and canonical hash it carries so that nothing downstream
computes them again; what it gives is one ``outcome.TrialOutcome``. A spec crosses to a Ray
worker, and its outcome back, only through ``runner.wire``.
"""

from __future__ import annotations

import math
import random
import statistics
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from cellsearch.dsl.graph import CellGraph
from cellsearch.limits import MAX_SEED
from cellsearch.storage.objectives import LATENCY_METRIC  # a trial measuring latency adds it to its first task's
from cellsearch.storage.outcome import TrialOutcome
from cellsearch.spaces.base import Candidate
from cellsearch.strategies.base import Stage, stage_threshold
from cellsearch.tasks import primary_metric

# Hyperparameter grids of Jozefowicz et al. 2015 (two reimplementations agree), see PAPERS.md.
# The paper trained with SGD at rates 0.1–5; short CPU budgets need Adam, so the learning
# rate is drawn from an Adam range instead.
INIT_SCALES = (0.3, 0.7, 1.0, 1.4, 2.0, 2.8)
MAX_GRAD_NORMS = (1.0, 2.5, 5.0, 10.0, 20.0)
ADAM_LRS = (1e-3, 2e-3, 3e-3, 5e-3, 1e-2)


def hyperparameters(rng: random.Random) -> dict[str, Any]:
    """One random setting from the paper's grids (Adam learning rate, see above)."""
    return {"init_scale": rng.choice(INIT_SCALES), "clip": rng.choice(MAX_GRAD_NORMS), "lr": rng.choice(ADAM_LRS)}


@dataclass(frozen=True)
class TrialSpec:
    """Everything one trial trains and scores: the candidate's cell (its graph, with the YAML text
    and canonical hash computed once, on the driver), the evaluation plan, the budget and the
    training settings. Made by ``trial_spec``; ``runner.wire`` carries it to a worker."""

    graph: CellGraph
    cell_yaml: str  # the graph as cell YAML: what results.db keeps and a worker parses
    hash: str  # the graph's canonical hash
    plan: tuple[Stage, ...]  # the stages, in order
    steps: int | None = None  # the training budget of a stage without its own ``steps`` ...
    seconds: float | None = None  # ... and its time limit (None: none)
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides: hidden_size, batch_size, lr, ...
    task_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per task (a stage's own go on top)
    reference: dict[str, float] | None = None  # the reference cell's best per task (relative scores)
    is_reference: bool = False  # this trial evaluates the reference cell itself
    seed: int = 0
    seeds: int = 1  # trainings per hyperparameter setting (search --seeds): their mean scores it
    threads: int | None = None  # torch threads of the process that trains it
    data_dir: str | None = None
    latency: bool = False  # also measure the cell's forward time per step (the ``latency`` objective)


def trial_spec(candidate: Candidate, plan: Iterable[Stage], **settings: Any) -> TrialSpec:
    """The spec of a trial of ``candidate`` (its cached YAML and hash) under ``plan``; ``settings`` are
    the other ``TrialSpec`` fields."""
    return TrialSpec(candidate.graph, candidate.yaml, candidate.hash, tuple(plan), **settings)


def evaluate_candidate(spec: TrialSpec, report: Callable[[TrialOutcome], None] | None = None) -> TrialOutcome:
    """Train and score one cell as described in the module docstring.

    ``report`` (for early stopping) receives, after each evaluation of a scoring stage, what the
    trial would come to if it were stopped there: a ``stopped-early`` outcome whose score is the
    fitness shown so far. Returns the ``TrialOutcome``; never raises for a bad cell or a failing run
    (the status says what happened).
    """
    from cellsearch.training.parallelism import torch_threads

    start = time.perf_counter()
    try:
        with torch_threads(spec.threads):  # (this trial's share)
            return _evaluate(spec, report, start)
    except MemoryError:
        return _outcome(None, "failed", None, {}, 0, start, "out of memory")
    except Exception as exc:  # a candidate that breaks training must not stop the search
        err = f"{type(exc).__name__}: {exc}"
        return _outcome(None, "failed", None, {}, 0, start, err + "\n" + traceback.format_exc(limit=5))


def _outcome(score, status, stage, metrics, params, start, error=None) -> TrialOutcome:
    return TrialOutcome(score=score, status=status, stage=stage, metrics=metrics, params=params,
                        seconds=round(time.perf_counter() - start, 3), error=error)


def _evaluate(spec: TrialSpec, report, start: float) -> TrialOutcome:
    from cellsearch.training.config import TrainConfig
    from cellsearch.training.population import Member, train_population
    from cellsearch.training.trainer import Trainer

    graph, plan = spec.graph, spec.plan
    reference = spec.reference or {}
    is_reference = spec.is_reference
    base = spec.train
    seed = spec.seed
    seeds = max(1, spec.seeds)
    normalise = bool(reference) or is_reference or len([s for s in plan if s.scoring]) > 1
    rng = random.Random(seed * 1_000_003 + 17)
    metrics: dict[str, dict] = {}
    best_norm: dict[str, float] = {}
    params = 0

    def norm(task: str, value: float) -> float:
        ref = reference.get(task)
        return value / ref if (ref and not is_reference) else (1.0 if is_reference else value)

    for stage in plan:
        metric = primary_metric(stage.task)
        steps = stage.steps if stage.steps is not None else spec.steps
        best: float | None = None
        best_metrics: dict = {}  # set with best
        settings = [{} if k == 0 else hyperparameters(rng) for k in range(max(1, stage.settings))]
        eval_every = max(1, steps // 4) if (report and steps) else 0
        task_options = {**spec.task_options.get(stage.task, {}), **stage.task_options}
        cfg = TrainConfig.from_dict({**base, "cell": graph.name, "task": stage.task, "steps": steps,
                                     "seconds": spec.seconds, "seed": seed, "data_dir": spec.data_dir,
                                     "task_options": task_options, "eval_every": eval_every, "threads": None,
                                     "device": base.get("device", "auto")})
        # setting k with its j-th seed (seed + k + K·j: one seed per setting is the classic trial),
        # wrapped round to stay a valid seed when the search's seed is near the largest (limits.MAX_SEED)
        members = [(k, Member(seed=(seed + k + len(settings) * j) % (MAX_SEED + 1), **hp))
                   for j in range(seeds) for k, hp in enumerate(settings)]
        running: list[float] = []
        pending: dict[int, dict[int, dict]] = {}  # evaluation step -> member -> its metrics

        def report_step(step: int, _stage=stage, _metric=metric) -> None:
            # One report per evaluation step, however many members train: the scheduler's rungs
            # count reports, so they must sit at the same share of the budget in every trial.
            # The value follows the final score's rule (best setting's mean over its seeds) and
            # is the best so far: the fitness the trial has shown.
            by_setting: dict[int, list[float]] = {}
            got = pending.pop(step)
            for i, m in got.items():
                if m.get(_metric) is not None:
                    by_setting.setdefault(members[i][0], []).append(m[_metric])
            if not by_setting:
                return
            k_best = max(by_setting, key=lambda k: statistics.mean(by_setting[k]))
            running.append(statistics.mean(by_setting[k_best]))
            stage_best = max(running)
            partial = min([norm(_stage.task, stage_best)] + list(best_norm.values())) if normalise \
                else stage_best
            shown = next(m for i, m in sorted(got.items()) if members[i][0] == k_best)
            report(TrialOutcome(partial, "stopped-early", {**metrics, _stage.task: shown}, _stage.task, params,
                                round(time.perf_counter() - start, 3)))

        def on_eval(i: int, step: int, m: dict, _stage=stage) -> None:
            # Only scoring stages report: an early-stopping scheduler compares trials by these
            # numbers, so they must mean the same thing (the fitness so far) in every trial.
            if not report or not _stage.scoring:
                return
            for earlier in sorted(t for t in pending if t < step):  # members evaluate in step order:
                report_step(earlier)  # an earlier step is complete (a frozen member reports no more)
            pending.setdefault(step, {})[i] = m
            if len(pending[step]) == len(members):
                report_step(step)

        if len(members) == 1:
            results = [Trainer(members[0][1].apply(cfg), graph=graph).run(callback=lambda step, m: on_eval(0, step, m))]
        else:  # the settings and seeds of one candidate train as one population
            results = train_population(cfg, [m for _, m in members], graph=graph, callback=on_eval)
        for step in sorted(pending):
            report_step(step)
        params = results[0].params
        statuses = [r.status for r in results]
        for k, hp in enumerate(settings):
            ok = [r.metrics for (kk, _), r in zip(members, results)
                  if kk == k and r.status == "ok" and r.metrics.get(metric) is not None]
            if not ok:
                continue
            values = [v for m in ok if (v := m[metric]) is not None]  # all of them (ok checked it)
            value = statistics.mean(values)
            if best is None or value > best:
                best = value
                best_metrics = {**_mean_metrics(ok), "hyperparameters": hp or "defaults"}
                if seeds > 1:
                    best_metrics.update(seeds=len(ok), std=statistics.stdev(values) if len(ok) > 1
                                        else 0.0)
        if best is None:  # every setting diverged or produced no metric
            metrics[stage.task] = {"status": statuses}
            return _outcome(None, "diverged" if "diverged" in statuses else "failed", stage.task, metrics,
                            params, start)
        metrics[stage.task] = best_metrics
        bar = None if is_reference else stage_threshold(stage, reference)
        if bar is not None and best < bar:
            # (a stage relative to the reference scores: its partial fitness counts)
            extra = norm(stage.task, best) if stage.relative is not None and reference.get(stage.task) else None
            return _outcome(_partial(best_norm, extra), "rejected", stage.task, metrics, params, start)
        if stage.scoring:
            best_norm[stage.task] = norm(stage.task, best) if normalise else best
    score = _partial(best_norm)
    if spec.latency:  # (kept in the first task's metrics: results.db has no column for it)
        from cellsearch.nn.latency import step_latency

        hidden = int(base.get("hidden_size") or 64)
        latency = step_latency(graph, int(base.get("embed_size") or hidden), hidden)
        metrics[plan[0].task] = {**metrics.get(plan[0].task, {}), LATENCY_METRIC: latency}
    return _outcome(score, "ok", "passed" if any(s.min_score or s.relative for s in plan) else None,
                    metrics, params, start)


def _mean_metrics(rows: list[dict]) -> dict:
    """Each metric's mean over the members that gave one (None where none did)."""
    out = {}
    for key in rows[0]:
        values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
        out[key] = statistics.mean(values) if values else None
    return out


def _partial(best_norm: dict[str, float], extra: float | None = None) -> float | None:
    values = list(best_norm.values()) + ([extra] if extra is not None else [])
    values = [v for v in values if v is not None and math.isfinite(v)]
    return min(values) if values else None


def reference_scores(outcome: TrialOutcome, plan: Sequence[Stage]) -> dict[str, float]:
    """The reference cell's best primary metric per task, from its trial's outcome."""
    out = {}
    for s in plan:
        task = s.task
        m = outcome.metrics.get(task) or {}
        value = m.get(primary_metric(task))
        if value is not None:
            out[task] = value
    return out


__all__ = ["TrialSpec", "evaluate_candidate", "hyperparameters", "reference_scores", "trial_spec"]
