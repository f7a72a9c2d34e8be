"""The final evaluation protocol and the search-fidelity report: the comparison of cells on
synthetic numbers, the protocol's logic with a fake trainer, and both commands end to end on a
small finished run (the statistics themselves: test_stats.py)."""

from __future__ import annotations

import json
import random

import pandas as pd
import pytest
from typer.testing import CliRunner

import cellsearch.runner.final as final  # (the job body: the tests stand in for it)
from cellsearch.analysis.evaluation import compare, evaluate_run
from cellsearch.analysis.fidelity import fidelity_run, spread_sample
from cellsearch.cli import app
from cellsearch.errors import CellWarning, ConfigError
from cellsearch.library import resolve_cell
from cellsearch.storage.outcome import TrainingOutcome
from cellsearch.runner.jobs import JobSettings
from cellsearch.runner.protocol import protocol_for_run
from cellsearch.runner.retrain import Cell, CellResult
from cellsearch.runner.search import SearchRun
from cellsearch.storage.settings import SearchConfig
from cellsearch.storage.store import Store

pytestmark = pytest.mark.ray  # evaluate and fidelity end to end on a local Ray

runner = CliRunner()
TINY_TASKS = {"arith": {"max_digits": 1, "eval_examples": 16}}
TINY_TRAIN = {"hidden_size": 8, "batch_size": 4, "lr": 1e-2}
LOCAL = JobSettings(backend="local", parallel=1, population=False)  # the stand-in trainers below train one job each


# ---------------------------------------------------------------------- comparing cells
def result(label: str, role: str, values: list[float | None], task: str = "arith") -> CellResult:
    return CellResult(Cell(label, resolve_cell("tanh"), role), task, 1e-3, dict(enumerate(values)),
                      dict(enumerate(values)), {i: "ok" if v is not None else "diverged" for i, v in enumerate(values)},
                      {})


def test_compare_flags_winners_only_outside_the_baselines_interval():
    rng = random.Random(1)
    base = [0.50 + rng.gauss(0, 0.01) for _ in range(5)]
    rows = [result("lstm", "baseline", base), result("gru", "baseline", [v - 0.05 for v in base]),
            result("clear", "candidate", [v + 0.2 for v in base]),
            result("same", "candidate", list(base)),
            result("noisy", "candidate", [0.9, 0.2, 0.8, 0.3, 0.7]),
            result("broken", "candidate", [None] * 5)]
    df = compare(rows).set_index("cell")
    assert df.loc["clear", "verdict"] == "winner" and not df.loc["clear", "overlaps_best_baseline"]
    assert df.loc["clear", "win_rate_vs_lstm"] == 1.0 and df.loc["clear", "p_vs_lstm"] < 1e-6
    assert df.loc["same", "verdict"] == "no better than lstm" and df.loc["same", "p_vs_lstm"] == pytest.approx(1)
    assert df.loc["same", "win_rate_vs_lstm"] == 0.5
    assert df.loc["noisy", "verdict"] == "not significant: interval overlaps lstm's"
    assert df.loc["noisy", "overlaps_best_baseline"]
    assert df.loc["broken", "verdict"] == "failed" and df.loc["broken", "failed"] == 5
    assert df.loc["lstm", "verdict"] == "best baseline" and df.loc["gru", "verdict"] == "baseline"


def test_spread_sample_covers_the_range():
    items = list(range(100))
    picked = spread_sample(items, 5, key=lambda v: -v)
    assert picked == [99, 74, 49, 25, 0]  # ascending by key: lowest key first, both ends included
    assert spread_sample(items[:3], 8, key=float) == [0, 1, 2]


# ---------------------------------------------------------------------- a finished run
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    cfg = SearchConfig(name="done", space="greff", strategy="random", trials=5, steps=3, backend="local",
                       train=dict(TINY_TRAIN), task_options=dict(TINY_TASKS), seed=2)
    SearchRun(cfg, runs).run()
    return runs / "done"


@pytest.fixture
def run_copy(finished_run, tmp_path):
    import shutil

    dst = tmp_path / "done"
    shutil.copytree(finished_run, dst)
    return dst


def test_protocol_defaults_come_from_the_run(run_copy):
    p = protocol_for_run(run_copy)
    assert p.steps == 4 * 3 and p.seeds == 5 and p.tasks == ["arith"]
    assert p.learning_rates == [5e-3, 1e-2, 2e-2] and p.train["hidden_size"] == 8
    with pytest.warns(CellWarning, match="not longer than the search's"):
        protocol_for_run(run_copy, steps=3)
    assert protocol_for_run(run_copy, steps=50).fingerprint != p.fingerprint


def test_protocol_fingerprint_covers_the_trainers_defaults():
    """Trainings compare by their effective settings: a run that pins a trainer default is the same
    protocol as one that leaves it; one that changes it (or a trainer whose default changed) is not."""
    from cellsearch.runner.protocol import Protocol
    from cellsearch.training.config import TrainConfig

    plain = Protocol(tasks=["arith"], steps=10)
    pinned = Protocol(tasks=["arith"], steps=10, train={"ar": TrainConfig().ar, "state_limit": TrainConfig().state_limit})
    assert pinned.fingerprint == plain.fingerprint
    assert Protocol(tasks=["arith"], steps=10, train={"ar": 0.0}).fingerprint != plain.fingerprint


def trained(v: float | None, status: str = "ok") -> TrainingOutcome:
    """What retrain() gives for a job that scored ``v`` on validation and test."""
    return TrainingOutcome(status, "char_accuracy", v, {"valid": {"char_accuracy": v}, "test": {"char_accuracy": v}},
                           params=10)


def fake_trainer(scores: dict[str, float], noise: float = 0.01):
    """A retrain() that scores each cell by name (plus seed noise); learning rate 1e-2 is best."""
    calls = []

    def retrain(job):
        calls.append(job)
        rng = random.Random(f"{job['name']}/{job['seed']}")  # (str seeds are hashed deterministically)
        lr_penalty = 0.0 if job["lr"] == pytest.approx(1e-2) else 0.05
        v = scores.get(job["name"], 0.3) - lr_penalty + rng.gauss(0, noise)
        return trained(v)

    retrain.calls = calls
    return retrain


def test_evaluation_protocol_sweeps_reuses_and_resumes(run_copy, monkeypatch):
    trainer = fake_trainer({"lstm": 0.5, "gru": 0.45})
    monkeypatch.setattr(final, "retrain", trainer)
    proto = protocol_for_run(run_copy, steps=12, seeds=4)
    report = evaluate_run(run_copy, proto, LOCAL, top=2, baselines=["lstm", "gru"])
    n_cells = len(report.table)
    # sweep: 3 rates × seed 0; then seeds 1..3 at the chosen rate (seed 0 is reused)
    assert len(trainer.calls) == n_cells * (3 + 3)
    assert list(report.table["lr"]) == pytest.approx([1e-2] * n_cells)
    assert set(report.table["n"]) == {4}
    before = len(trainer.calls)
    evaluate_run(run_copy, proto, LOCAL, top=2, baselines=["lstm", "gru"])
    assert len(trainer.calls) == before  # everything was in results.db already
    with Store(run_copy / "results.db") as store:
        assert len(store.retrains(proto.fingerprint)) == before


def test_an_interrupted_evaluation_resumes_with_what_is_missing(run_copy, monkeypatch):
    trainer = fake_trainer({"lstm": 0.5})
    finished = []

    def interrupted(job):
        if len(finished) == 7:
            raise KeyboardInterrupt
        finished.append(job["key"])
        return trainer(job)

    monkeypatch.setattr(final, "retrain", interrupted)
    proto = protocol_for_run(run_copy, steps=12, seeds=3)
    with pytest.raises(KeyboardInterrupt):
        evaluate_run(run_copy, proto, LOCAL, top=1, baselines=["lstm"])
    with Store(run_copy / "results.db") as store:
        assert [r["key"] for r in store.retrains(proto.fingerprint)] == finished  # each recorded as it finished
    resumed = fake_trainer({"lstm": 0.5})
    monkeypatch.setattr(final, "retrain", resumed)
    report = evaluate_run(run_copy, proto, LOCAL, top=1, baselines=["lstm"])
    assert not {j["key"] for j in resumed.calls} & set(finished)  # nothing is trained twice
    assert len(finished) + len(resumed.calls) == 2 * (3 + 2) and set(report.table["n"]) == {3}


def test_fidelity_warns_when_final_scores_invert_the_search_ranking(run_copy, monkeypatch):
    with Store(run_copy / "results.db") as store:
        search = {r["cell_name"]: r["score"] for r in store.rows() if r["score"] is not None}
    inverted = {name: 1.0 - s for name, s in search.items()}
    monkeypatch.setattr(final, "retrain", fake_trainer(inverted, noise=0.0))
    proto = protocol_for_run(run_copy, steps=12, seeds=1, lr_factors=(1.0,))
    with pytest.warns(CellWarning, match="too small to trust"):
        report = fidelity_run(run_copy, proto, LOCAL, sample=4)
    assert report.correlation.kendall == pytest.approx(-1) and report.warning
    monkeypatch.setattr(final, "retrain", fake_trainer(search, noise=0.0))
    agreeing = fidelity_run(run_copy, protocol_for_run(run_copy, steps=13, seeds=1, lr_factors=(1.0,)),
                                  LOCAL, sample=4)
    assert agreeing.correlation.kendall == pytest.approx(1) and agreeing.warning is None
    summary = json.loads(agreeing.files["summary"].read_text())
    assert summary["correlation"]["kendall"] == pytest.approx(1) and len(summary["cells"]) == 4


def test_fidelity_ranks_cells_that_failed_every_retraining_last(run_copy, monkeypatch):
    with Store(run_copy / "results.db") as store:
        search = {r["cell_name"]: r["score"] for r in store.rows() if r["score"] is not None}
    worst = min(search, key=search.get)
    fake = fake_trainer(search, noise=0.0)

    def retrain(job):
        if job["name"] == worst:
            return trained(None, "diverged")
        return fake(job)

    monkeypatch.setattr(final, "retrain", retrain)
    report = fidelity_run(run_copy, protocol_for_run(run_copy, steps=14, seeds=1, lr_factors=(1.0,)),
                                LOCAL, sample=4)
    assert report.correlation.n == 4 and report.correlation.kendall == pytest.approx(1)
    assert "failed (ranked last)" in report.files["markdown"].read_text()


def curve_trainer(scores: dict[str, float]):
    """A retrain() whose ranking sharpens with the budget: inverted at 4 steps, the final ranking from 16 on."""
    calls = []

    def retrain(job):
        calls.append(job)
        v = scores.get(job["name"], 0.3)
        if job["steps"] < 16:
            v = 1.0 - v  # a short training ranks the cells backwards
        return trained(v)

    retrain.calls = calls
    return retrain


def test_fidelity_curve_recommends_the_cheapest_budget_reaching_the_target(run_copy, monkeypatch):
    with Store(run_copy / "results.db") as store:
        search = {r["cell_name"]: r["score"] for r in store.rows() if r["score"] is not None}
    trainer = curve_trainer(search)
    monkeypatch.setattr(final, "retrain", trainer)
    proto = protocol_for_run(run_copy, steps=20, seeds=2, lr_factors=(1.0,))
    report = fidelity_run(run_copy, proto, LOCAL, sample=4, budgets=[16, 4, 8, 4])
    assert [b["steps"] for b in report.curve] == [4, 8, 16]
    by_steps = {b["steps"]: b for b in report.curve}
    assert by_steps[4]["kendall"] == pytest.approx(-1) and by_steps[16]["kendall"] == pytest.approx(1)
    assert by_steps[16]["cells"] == 4 and by_steps[16]["training_steps"] == 16 * 2 * 4
    assert report.recommended == 16
    assert by_steps[16]["kendall_by_seeds"] == {1: pytest.approx(1), 2: pytest.approx(1)}
    # every proxy training ran as the search would score it: the search's learning rate, seeds 0 and 1
    proxies = [j for j in trainer.calls if j["steps"] != 20]
    assert len(proxies) == 3 * 4 * 2 and {j["seed"] for j in proxies} == {0, 1}
    assert {j["lr"] for j in proxies} == {proto.base_lr}
    summary = json.loads(report.files["summary"].read_text())
    assert summary["recommended"] == 16 and [b["steps"] for b in summary["budgets"]] == [4, 8, 16]
    assert {"steps", "spearman", "kendall", "cells"} <= set(summary["budgets"][0])
    assert (run_copy / "fidelity" / "fidelity-curve.png").stat().st_size > 0
    assert "Recommended (the cheapest budget with τ ≥ 0.6): **16 steps**" in report.files["markdown"].read_text()
    # a second curve reuses every training the run already holds
    n = len(trainer.calls)
    again = fidelity_run(run_copy, proto, LOCAL, sample=4, budgets=[4, 8, 16, 32])
    assert len(trainer.calls) == n + 4 * 2  # only the new budget trained
    assert again.recommended == 16


def test_fidelity_curve_without_a_budget_reaching_the_target(run_copy, monkeypatch):
    with Store(run_copy / "results.db") as store:
        search = {r["cell_name"]: r["score"] for r in store.rows() if r["score"] is not None}
    monkeypatch.setattr(final, "retrain", curve_trainer(search))
    report = fidelity_run(run_copy, protocol_for_run(run_copy, steps=20, seeds=1, lr_factors=(1.0,)), LOCAL,
                          sample=4, budgets=[4, 8])
    assert report.recommended is None
    assert "none of these budgets reaches τ = 0.6" in report.files["markdown"].read_text()


@pytest.mark.parametrize("args,message", [
    (["--budgets", "100,abc"], "--budgets must be comma-separated step counts"),
    (["--budgets", "0,100"], "each budget is a number of training steps ≥ 1"),
    (["--budgets", ","], "--budgets is empty"),
    (["--budgets", ",".join(str(i) for i in range(1, 20))], "exceeds limit 'budgets'"),
    (["--budgets", "10", "--target-tau", "1.5"], "--target-tau must be in (0, 1]"),
])
def test_fidelity_curve_bad_options_are_one_line_and_change_nothing(run_copy, args, message):
    before = (run_copy / "results.db").read_bytes()
    res = runner.invoke(app, ["fidelity", str(run_copy), "--no-progress", *args])
    assert res.exit_code == 2 and message in res.stderr and res.stderr.count("\n") == 1, res.output
    assert (run_copy / "results.db").read_bytes() == before and not (run_copy / "fidelity").exists()


def test_fidelity_curve_from_the_command_line(run_copy, monkeypatch):
    with Store(run_copy / "results.db") as store:
        search = {r["cell_name"]: r["score"] for r in store.rows() if r["score"] is not None}
    monkeypatch.setattr(final, "retrain", curve_trainer(search))
    res = runner.invoke(app, ["fidelity", str(run_copy), "--sample", "3", "--budget", "20", "--lrs", "1",
                              "--budgets", "4,16", "--backend", "local", "--no-population", "--json", "--no-progress"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert [b["steps"] for b in summary["budgets"]] == [4, 16] and summary["recommended"] == 16
    res = runner.invoke(app, ["fidelity", str(run_copy), "--sample", "3", "--budget", "20", "--lrs", "1",
                              "--budgets", "4,16", "--backend", "local", "--no-population", "--no-progress"])
    assert res.exit_code == 0 and "recommended budget (cheapest with τ ≥ 0.6): 16 steps" in res.stdout


@pytest.mark.slow
def test_evaluate_and_fidelity_end_to_end_on_ray(run_copy):
    """Real trainings, as Ray Tune trials, from the command line."""
    pytest.importorskip("ray")
    import ray

    try:
        res = runner.invoke(app, ["evaluate", str(run_copy), "--top", "2", "--seeds", "2", "--budget", "6",
                                  "--baselines", "lstm,gru", "--parallel", "2", "--no-progress"])
        assert res.exit_code == 0, res.output
        out = run_copy / "evaluation"
        for f in ("results.csv", "results.md", "evaluation.png", "runs.csv", "summary.json"):
            assert (out / f).stat().st_size > 0, f
        df = pd.read_csv(out / "results.csv")
        assert {"lstm", "gru"} <= set(df["cell"]) and len(df) == 4
        assert {"mean", "ci_low", "ci_high", "win_rate_vs_lstm", "p_vs_gru", "verdict"} <= set(df.columns)
        assert "mean ± 95% CI" in (out / "results.md").read_text()
        with Store(run_copy / "results.db") as store:
            nodes = {r["node"] for r in store.retrains()}
        assert "local" not in nodes and len(nodes) >= 1  # Ray node ids

        res = runner.invoke(app, ["fidelity", str(run_copy), "--sample", "3", "--budget", "6", "--lrs", "1",
                                  "--json", "--no-progress"])
        assert res.exit_code == 0, res.output
        summary = json.loads(res.stdout)
        assert set(summary["correlation"]) >= {"spearman", "kendall", "spearman_p", "kendall_p", "n"}
        assert (run_copy / "fidelity" / "fidelity.png").stat().st_size > 0
    finally:
        if ray.is_initialized():
            ray.shutdown()


@pytest.mark.parametrize("args, message", [
    (["evaluate", "{tmp}"], "no such run directory"),
    (["evaluate", "{run}", "--lrs", "fast"], "--lrs must be comma-separated numbers"),
    (["evaluate", "{run}", "--lrs", "0,1"], "--lrs must be positive numbers"),
    (["evaluate", "{run}", "--tasks", "chess"], "unknown task 'chess'"),
    (["evaluate", "{run}", "--baselines", "lstm,nosuchcell"], "nosuchcell"),
    (["evaluate", "{run}", "--backend", "slurm"], "backend must be ray or local"),
    (["fidelity", "{run}", "--budget", "0"], "--budget must be at least 1"),
])
def test_bad_evaluation_input_is_a_one_line_error(run_copy, tmp_path, args, message):
    args = [a.format(tmp=tmp_path / "nothing", run=run_copy) for a in args]
    if "--backend" not in args:
        args += ["--backend", "local"]
    res = runner.invoke(app, args + ["--no-progress"])
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split())


def test_fidelity_needs_three_scored_cells(tmp_path):
    cfg = SearchConfig(name="small", space="greff", strategy="random", trials=1, steps=2, backend="local",
                       train=dict(TINY_TRAIN), task_options=dict(TINY_TASKS))
    SearchRun(cfg, tmp_path).run()
    with pytest.raises(ConfigError, match="a rank correlation needs at least 3"):
        fidelity_run(tmp_path / "small", protocol_for_run(tmp_path / "small"), LOCAL, sample=5)


@pytest.mark.slow
def test_evaluation_through_populations_equals_one_training_at_a_time(run_copy, tmp_path):
    """Real trainings: a cell's learning-rate sweep and its seeds trained as populations give the rows
    (keys, statuses) and, up to float32 rounding, the scores of the same jobs trained one by one."""
    import shutil

    solo_copy = tmp_path / "solo"
    shutil.copytree(run_copy, solo_copy)
    proto = protocol_for_run(run_copy, steps=6, seeds=2, lr_factors=(0.5, 1.0))
    batched = evaluate_run(run_copy, proto, JobSettings(backend="local", parallel=1), top=1, baselines=["gru"])
    alone = evaluate_run(solo_copy, protocol_for_run(solo_copy, steps=6, seeds=2, lr_factors=(0.5, 1.0)),
                         LOCAL, top=1, baselines=["gru"])
    with Store(run_copy / "results.db") as a, Store(solo_copy / "results.db") as b:
        rows_a = {r["key"]: r for r in a.retrains(proto.fingerprint)}
        rows_b = {r["key"]: r for r in b.retrains(proto.fingerprint)}
    assert set(rows_a) == set(rows_b) and len(rows_a) == 2 * (2 + 1)
    for key, row in rows_a.items():
        assert row["status"] == rows_b[key]["status"]
        for column in ("valid", "test"):
            assert row[column] == pytest.approx(rows_b[key][column], rel=1e-3, abs=1e-3), (key, column)
    assert list(batched.table["cell"]) == list(alone.table["cell"])


def test_evaluate_and_fidelity_retrain_with_a_recipe(run_copy, monkeypatch, tmp_path):
    """--recipe replaces the run's training settings for the retrainings, all but the budget."""
    trainer = fake_trainer({})
    monkeypatch.setattr(final, "retrain", trainer)
    recipe = tmp_path / "small.yaml"
    recipe.write_text("hidden_size: 16\nar: 0.5\nsteps: 99999\n")
    for command in (["evaluate", str(run_copy), "--top", "1", "--seeds", "1"],
                    ["fidelity", str(run_copy), "--sample", "3"]):
        res = runner.invoke(app, [*command, "--budget", "20", "--lrs", "1", "--recipe", str(recipe),
                                  "--backend", "local", "--no-population", "--no-progress"])
        assert res.exit_code == 0, res.output
    assert trainer.calls and all(j["train"]["hidden_size"] == 16 and j["train"]["ar"] == 0.5 for j in trainer.calls)
    assert {j["steps"] for j in trainer.calls} == {20}  # the protocol's budget, not the recipe's


def test_unknown_recipe_for_a_retraining_is_one_line(run_copy):
    before = (run_copy / "results.db").read_bytes()
    res = runner.invoke(app, ["fidelity", str(run_copy), "--recipe", "nasbench", "--no-progress"])
    assert res.exit_code == 2 and "unknown recipe" in res.stderr and res.stderr.count("\n") == 1, res.output
    assert (run_copy / "results.db").read_bytes() == before
