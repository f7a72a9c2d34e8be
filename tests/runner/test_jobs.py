"""The job runner of the final evaluation protocol (``runner.jobs.run_jobs``): the job function
it is given is what runs, in-process and on Ray alike."""

from __future__ import annotations

import os

import pytest

from cellsearch.storage.outcome import TrainingOutcome
from cellsearch.runner.jobs import JobSettings, run_jobs
from cellsearch.testing import synthetic_job

pytestmark = pytest.mark.ray  # the job runner on a local Ray

JOBS = [{"key": "a", "name": "ab"}, {"key": "b", "name": "abcd"}, {"key": "c", "name": "x"}]


def _run(tmp_path, backend: str) -> list[tuple[dict, TrainingOutcome, str | None]]:
    done: list[tuple[dict, TrainingOutcome, str | None]] = []
    run_jobs([dict(j) for j in JOBS], synthetic_job, JobSettings(parallel=1, backend=backend, cpus_per_trial=1),
             tmp_path, lambda job, outcome, node: done.append((job, outcome, node)), name=f"tune-{backend}")
    return done


def test_an_injected_job_function_runs_in_process(tmp_path):
    done = _run(tmp_path, "local")
    assert [(job["key"], outcome.score, node) for job, outcome, node in done] == \
        [("a", 0.2, "local"), ("b", 0.4, "local"), ("c", 0.1, "local")]
    assert {outcome.metrics["valid"]["pid"] for _, outcome, _ in done} == {os.getpid()}


@pytest.mark.slow
def test_an_injected_job_function_runs_on_ray(tmp_path):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    done = _run(tmp_path, "ray")
    assert not ray.is_initialized()  # run_jobs left the Ray it started
    by_key = {job["key"]: (outcome, node) for job, outcome, node in done}
    assert sorted(by_key) == ["a", "b", "c"]
    for key, expected in (("a", 0.2), ("b", 0.4), ("c", 0.1)):
        outcome, node = by_key[key]
        # the injected function's outcome (retrain would have failed on these jobs), from a Ray worker
        assert outcome.status == "ok" and outcome.score == pytest.approx(expected) == outcome.value("test")
        assert outcome.metrics["valid"]["pid"] != os.getpid() and outcome.metrics["valid"]["threads"] == 1
        assert node and node != "local"
