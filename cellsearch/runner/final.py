"""One retraining of the final evaluation protocol: the body of a job (runs in a Ray worker or
in-process).

A job (built by ``runner.retrain.Retrainer``) names a cell (YAML text), a task, a learning
rate, a seed and the protocol's budget and settings (``runner.protocol``). ``retrain`` trains
it on ``runner.worker.train_job`` and scores it on validation (which chooses the learning
rate) and test (what is reported).
"""

from __future__ import annotations

from typing import Any

from cellsearch.runner.worker import TrainingOutcome, train_job, train_population_job


def _settings(job: dict[str, Any]) -> dict[str, Any]:
    return {**job["train"], "task": job["task"], "task_options": job["task_options"], "data_dir": job["data_dir"],
            "steps": job["steps"], "seconds": job["seconds"], "lr": job["lr"], "seed": job["seed"]}


def _outcome(out: TrainingOutcome) -> dict[str, Any]:
    if out.error is not None:
        return {"status": "failed", "valid": None, "test": None, "metrics": {}, "params": None,
                "seconds": out.seconds, "error": f"{out.error}\n{out.traceback}"}
    valid = out.score
    # a run that ended well but gave no validation score failed all the same
    status = out.status if valid is not None or out.status != "ok" else "failed"
    return {"status": status, "valid": valid, "test": out.value("test"), "metrics": out.metrics,
            "params": out.params, "seconds": out.seconds, "error": None}


def retrain_population(group: dict[str, Any]) -> dict[str, Any]:
    """The jobs of ``group["members"]`` (one cell and task; learning rates and seeds differ) trained as
    one population; ``{"members": [what retrain(job) returns, ...]}`` in order."""
    jobs = group["members"]
    outs = train_population_job([_settings(j) for j in jobs], graph=jobs[0]["cell"], source="<retrain>",
                                threads=group.get("threads"), test=True)
    return {"members": [_outcome(o) for o in outs]}


def retrain(job: dict[str, Any]) -> dict[str, Any]:
    """Train one cell on one task (a job of the protocol) and score it on validation and test.

    Returns ``{"status", "valid", "test", "metrics": {"valid", "test"}, "params", "seconds", "error"}``;
    never raises for a failing cell (the status says what happened).
    """
    out = train_job(_settings(job), graph=job["cell"], source="<retrain>", threads=job.get("threads"), test=True)
    return _outcome(out)
