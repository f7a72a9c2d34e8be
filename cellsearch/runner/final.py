"""One retraining of the final evaluation protocol: the body of a job (runs in a Ray worker or
in-process).

A job (built by ``runner.retrain.Retrainer``) names a cell (YAML text), a task, a learning
rate, a seed and the protocol's budget and settings (``runner.protocol``). ``retrain`` trains
it on ``runner.worker.train_job`` and scores it on validation (which chooses the learning
rate) and test (what is reported); its ``TrainingOutcome`` is what ``runner.retrain`` records.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from cellsearch.storage.outcome import TrainingOutcome
from cellsearch.runner.worker import train_job, train_population_job


def _settings(job: dict[str, Any]) -> dict[str, Any]:
    return {**job["train"], "task": job["task"], "task_options": job["task_options"], "data_dir": job["data_dir"],
            "steps": job["steps"], "seconds": job["seconds"], "lr": job["lr"], "seed": job["seed"]}


def _checked(out: TrainingOutcome) -> TrainingOutcome:
    # a run that ended well but gave no validation score failed all the same
    return dataclasses.replace(out, status="failed") if out.status == "ok" and out.score is None else out


def retrain_population(group: dict[str, Any]) -> list[TrainingOutcome]:
    """The jobs of ``group["members"]`` (one cell and task; learning rates and seeds differ) trained as
    one population; what ``retrain(job)`` gives for each, in order."""
    jobs = group["members"]
    outs = train_population_job([_settings(j) for j in jobs], graph=jobs[0]["cell"], source="<retrain>",
                                threads=group.get("threads"), test=True)
    return [_checked(o) for o in outs]


def retrain(job: dict[str, Any]) -> TrainingOutcome:
    """Train one cell on one task (a job of the protocol) and score it on validation (``score``) and
    test (``value("test")``); never raises for a failing cell (the status says what happened).
    """
    out = train_job(_settings(job), graph=job["cell"], source="<retrain>", threads=job.get("threads"), test=True)
    return _checked(out)
