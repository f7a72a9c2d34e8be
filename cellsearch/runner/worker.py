"""Training one job (or a population of jobs) without raising: the worker body shared by the final evaluation's
retrainings (``runner.final.retrain``) and the gate study's runs (``runner.gate_study``).

``train_job`` builds a trainer from plain settings (``TrainConfig`` fields), trains to the
budget on its own share of CPU threads, scores the validation split (and the test split when
asked) and returns what happened as an ``outcome.TrainingOutcome``. A cell or a setting that breaks
training is a ``failed`` outcome carrying the error, never an exception: one bad job must
not stop the many around it. (A search trial's body, ``runner.trial.evaluate_candidate``,
does the same for a staged evaluation plan.) ``train_population_job`` trains several jobs of one
cell that differ only in a population member's settings (seed, learning rate, ...) as one
population (``cellsearch.training.population``): each outcome is what ``train_job`` would give.
"""

from __future__ import annotations

import time
import traceback
from typing import Any

from cellsearch.storage.outcome import TrainingOutcome


def train_job(settings: dict[str, Any], *, graph=None, source: str = "<job>", threads: int | None = None,
              test: bool = False) -> TrainingOutcome:
    """Train one model with ``settings`` (``TrainConfig`` fields) on ``threads`` torch threads
    (restored afterwards), score it on the validation split and, with ``test`` and a successful run
    that has a validation score, on the test split. ``graph`` (a ``CellGraph`` or its YAML text)
    replaces the settings' cell (``source`` names the text in errors). Never raises for a failing
    job (the status says what happened)."""
    start = time.perf_counter()
    try:
        from cellsearch.tasks import primary_metric
        from cellsearch.training.config import TrainConfig
        from cellsearch.training.trainer import Trainer
        from cellsearch.training.parallelism import use_threads

        if isinstance(graph, str):
            from cellsearch.dsl.io import loads_cell

            graph = loads_cell(graph, source=source, warn=False)
        before = use_threads(threads)
        try:
            cfg = TrainConfig.from_dict(settings)
            trainer = Trainer(cfg, graph=graph)
            result = trainer.run()
            metric = primary_metric(cfg.task)
            score = result.metrics.get(metric)
            metrics = {"valid": result.metrics}
            if test:
                metrics["test"] = trainer.evaluate("test") if result.status == "ok" and score is not None else {}
        finally:
            use_threads(before)
        return TrainingOutcome(result.status, metric, score, metrics, result.params, result.steps,
                               round(time.perf_counter() - start, 3))
    except Exception as exc:  # a job that breaks training must not stop the others
        return TrainingOutcome("failed", seconds=round(time.perf_counter() - start, 3),
                               error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=5))


def train_population_job(settings: list[dict[str, Any]], *, graph=None, source: str = "<job>",
                         threads: int | None = None, test: bool = False) -> list[TrainingOutcome]:
    """``[train_job(s, ...) for s in settings]`` trained as one population; the jobs must differ only in
    ``population.MEMBER_FIELDS``. A failure fails every member (with the error). ``seconds`` is each
    member's share of the population's time."""
    start = time.perf_counter()
    try:
        from cellsearch.errors import ConfigError
        from cellsearch.training.population import MEMBER_FIELDS, Member, PopulationTrainer
        from cellsearch.tasks import primary_metric
        from cellsearch.training.config import TrainConfig
        from cellsearch.training.parallelism import use_threads

        if isinstance(graph, str):
            from cellsearch.dsl.io import loads_cell

            graph = loads_cell(graph, source=source, warn=False)
        before = use_threads(threads)
        try:
            configs = [TrainConfig.from_dict(s) for s in settings]
            base = configs[0]
            members = []
            for c in configs:
                fields: dict[str, Any] = {k: getattr(c, k) for k in MEMBER_FIELDS}
                fields["clip"] = c.clip or 0.0  # no clipping (None) is a member's 0: its None means as the base
                members.append(Member(**fields))
            if any(m.apply(base) != c for m, c in zip(members, configs)):
                raise ConfigError("the jobs of a population may differ only in " + ", ".join(MEMBER_FIELDS))
            population = PopulationTrainer(base, members, graph=graph)
            results = population.run()
            metric = primary_metric(base.task)
            outcomes = []
            share = round((time.perf_counter() - start) / len(configs), 3)
            for trainer, result in zip(population.trainers, results):
                score = result.metrics.get(metric)
                metrics = {"valid": result.metrics}
                if test:
                    metrics["test"] = trainer.evaluate("test") if result.status == "ok" and score is not None else {}
                outcomes.append(TrainingOutcome(result.status, metric, score, metrics, result.params, result.steps,
                                                share))
        finally:
            use_threads(before)
        return outcomes
    except Exception as exc:  # a job that breaks training must not stop the others
        share = round((time.perf_counter() - start) / max(len(settings), 1), 3)
        return [TrainingOutcome("failed", seconds=share, error=f"{type(exc).__name__}: {exc}",
                                traceback=traceback.format_exc(limit=5)) for _ in settings]
