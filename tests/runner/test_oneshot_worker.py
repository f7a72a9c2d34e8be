"""A one-shot search seed's worker (``runner.oneshot.run_seed_job``) without Ray: a crash comes back as one
line naming the file its traceback went to; the driver files each seed's result under the seed it ran."""

from __future__ import annotations

from dataclasses import asdict

import cellsearch.runner.oneshot as oneshot_runner
from cellsearch.runner.oneshot import run_seed_job, take_outcome, traceback_log
from cellsearch.runner.wire import SeedJob
from cellsearch.storage.outcome import SeedOutcome
from cellsearch.storage.settings import SearchConfig


def _job(run_dir, seed: int = 0) -> SeedJob:
    cfg = SearchConfig(name="k", space="dag4", strategy="rsws", tasks=["arith"], steps=2, trials=1,
                       strategy_options={"candidates": 1}, train={"hidden_size": 8}, backend="local")
    return SeedJob(config=asdict(cfg), seed=seed, run_dir=str(run_dir))


def _crash(*args, **kwargs):
    def deep(n):
        if n == 0:
            raise RuntimeError("boom")
        deep(n - 1)

    deep(3)


def test_a_crashed_seed_reports_one_line_and_writes_its_traceback_to_a_log(tmp_path, monkeypatch):
    monkeypatch.setattr(oneshot_runner, "run_seed", _crash)
    outcome = run_seed_job(_job(tmp_path, seed=3))
    log = traceback_log(tmp_path, 3)
    assert outcome.status == "failed" and outcome.seed == 3
    assert outcome.error == f"RuntimeError: boom (its traceback: {log})"
    text = log.read_text()
    assert text.startswith("Traceback") and "in deep" in text and text.rstrip().endswith("RuntimeError: boom")


def test_the_error_line_stays_when_the_traceback_cannot_be_written(tmp_path, monkeypatch):
    monkeypatch.setattr(oneshot_runner, "run_seed", _crash)
    (tmp_path / "file").write_text("")  # (no folder can be made there)
    outcome = run_seed_job(_job(tmp_path / "file", seed=0))
    assert outcome.error == "RuntimeError: boom"


def test_a_seed_reports_every_tenth_of_its_scored_cells_and_the_last(tmp_path, monkeypatch):
    def run_seed(strategy, cfg, space, task, tc, count, seed, run_dir, on_progress):
        for done in range(1, 3):
            on_progress({"seed": seed, "phase": "train", "done": done, "total": 2, "loss": 1.0})
        for done in range(1, 26):
            on_progress({"seed": seed, "phase": "score", "done": done, "total": 25, "score": 0.5})
        raise RuntimeError("stop")

    monkeypatch.setattr(oneshot_runner, "run_seed", run_seed)
    reports: list = []
    run_seed_job(_job(tmp_path), reports.append)
    assert [(r.phase, r.done) for r in reports] == [("train", 1), ("train", 2),
                                                    *[("score", d) for d in (*range(2, 25, 2), 25)]]


def _result(seed: int) -> dict:
    return {"seed": seed, "top": [{"choices": [0]}], "scored": 1, "steps": 2, "train_seconds": 0.1}


def test_a_result_is_filed_under_its_jobs_seed_and_a_mismatch_is_refused():
    results: dict = {}
    errors: list = []
    take_outcome({"seed": 1}, SeedOutcome("ok", 1, result=_result(1)), "n1", results, errors)
    assert results == {1: {**_result(1), "top": [{"choices": [0], "node": "n1"}]}} and errors == []
    take_outcome({"seed": 2}, SeedOutcome("ok", 1, result=_result(1)), "n1", results, errors)
    assert list(results) == [1] and errors == ["seed 2: its result is seed 1's: refused"]
    take_outcome({"seed": 3}, SeedOutcome("failed", 3, error="RuntimeError: boom"), None, results, errors)
    assert errors[-1] == "seed 3: RuntimeError: boom"
