"""Searches with several objectives: replayed for each multi-objective strategy, trained end to end on
the local backend, resumed, refused in one line; ``leaderboard --pareto`` lists the front."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cellsearch.cli import app
from cellsearch.pareto import dominates
from cellsearch.runner.search import SearchRun
from cellsearch.storage.results import pareto_front, trained_rows
from cellsearch.storage.settings import SearchConfig
from tests.support.paths import REPO

runner = CliRunner()
TABLE = REPO / "benchmarks" / "tables" / "mutation1-arith.parquet"
MULTI = ["random", "regularized-evolution", "tpe", "nsga2"]


def _search(tmp_path: Path, *args: str) -> CliRunner:
    return runner.invoke(app, ["search", "--runs", str(tmp_path), "--no-progress", *args])


@pytest.mark.parametrize("strategy", MULTI)
def test_replayed_search_and_its_front(tmp_path, strategy):
    res = _search(tmp_path, "--strategy", strategy, "--objectives", "score,params", "--space", "mutation1",
                  "--benchmark", str(TABLE), "--trials", "30", "--name", "r", "--top", "1")
    assert res.exit_code == 0, res.output
    out = runner.invoke(app, ["leaderboard", str(tmp_path / "r"), "--pareto", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["objectives"] == ["score", "params"]
    front = data["front"]
    assert front and [e["rank"] for e in front] == list(range(1, len(front) + 1))
    assert [e["score"] for e in front] == sorted((e["score"] for e in front), reverse=True)
    for e in front:
        assert set(e) >= {"rank", "hash", "objectives", "score", "params", "cell"}
        assert e["objectives"] == {"score": e["score"], "params": float(e["params"])}
    # every evaluated cell is dominated by a front cell or on the front; no front cell dominates another
    points = {e["hash"]: (e["score"], -e["params"]) for e in front}
    for row in trained_rows(tmp_path / "r"):
        if row["origin"] == "reference" or row["score"] is None:
            continue
        p = (row["score"], -row["params"])
        assert row["hash"] in points or any(dominates(q, p) or q == p for q in points.values())
    assert not any(dominates(a, b) for a in points.values() for b in points.values())
    table = runner.invoke(app, ["leaderboard", str(tmp_path / "r"), "--pareto"])
    assert "Pareto front over score, params" in table.stdout and front[0]["hash"] in table.stdout


def test_macs_objective_and_resume(tmp_path):
    cfg = SearchConfig(name="m", space="mutation1", strategy="nsga2", trials=12, benchmark=str(TABLE),
                       objectives=["score", "macs"], strategy_options={"population_size": 4})
    SearchRun(cfg, tmp_path).run()
    resumed = SearchRun.resume(tmp_path / "m", trials=20)
    assert resumed.controller.strategy.objectives == ["score", "macs"]
    resumed.run()
    front = pareto_front(tmp_path / "m")
    assert front and all(set(e["objectives"]) == {"score", "macs"} and e["objectives"]["macs"] > 0 for e in front)
    # the same cells over other objectives: score alone leaves the best cell
    (best,) = pareto_front(tmp_path / "m", ["score"])
    assert best["score"] == max(e["score"] for e in front)


def test_single_objective_run_front_is_score_and_params(tmp_path):
    SearchRun(SearchConfig(name="s", space="mutation1", strategy="random", trials=15, benchmark=str(TABLE)),
              tmp_path).run()
    assert json.loads((tmp_path / "s" / "config.json").read_text())["objectives"] == ["score"]
    data = json.loads(runner.invoke(app, ["leaderboard", str(tmp_path / "s"), "--pareto", "--json"]).stdout)
    assert data["objectives"] == ["score", "params"] and data["front"]


def test_old_run_without_objectives_still_reads(tmp_path):
    SearchRun(SearchConfig(name="o", space="mutation1", strategy="random", trials=5, benchmark=str(TABLE)),
              tmp_path).run()
    path = tmp_path / "o" / "config.json"
    cfg = json.loads(path.read_text())
    del cfg["objectives"]  # a run from before objectives
    path.write_text(json.dumps(cfg))
    assert pareto_front(tmp_path / "o")
    assert runner.invoke(app, ["leaderboard", str(tmp_path / "o")]).exit_code == 0


@pytest.mark.parametrize("args, says", [
    (["--strategy", "rl", "--objectives", "score,params"], "strategy 'rl' optimises the score alone"),
    (["--strategy", "evolution", "--objectives", "score,macs"], "strategy 'evolution' optimises the score alone"),
    (["--strategy", "tpe", "--objectives", "score,flops"], "unknown objective 'flops'"),
    (["--strategy", "tpe", "--objectives", "params"], "--objectives must include score"),
    (["--strategy", "tpe", "--objectives", "score,params,params"], "objective 'params' is given twice"),
    (["--strategy", "tpe", "-o", "objectives=score"], "not as a strategy option"),
])
def test_bad_objectives_are_one_line_errors(tmp_path, args, says):
    res = _search(tmp_path, *args, "--space", "mutation1", "--benchmark", str(TABLE), "--trials", "2")
    assert res.exit_code == 2, res.output
    assert says in res.stderr and res.stderr.strip().count("\n") == 0, res.stderr


def test_trained_search_on_the_local_backend(tmp_path):
    res = _search(tmp_path, "--strategy", "nsga2", "--objectives", "score,params,macs", "--space", "greff",
                  "--trials", "3", "--budget", "2", "--hidden", "8", "--backend", "local", "--name", "t",
                  "-o", "population_size=2")
    assert res.exit_code == 0, res.output
    data = json.loads(runner.invoke(app, ["leaderboard", str(tmp_path / "t"), "--pareto", "--json"]).stdout)
    assert data["objectives"] == ["score", "params", "macs"]
    assert data["front"] and all(e["params"] > 0 for e in data["front"])


def test_evaluate_pareto_retrains_the_front(tmp_path):
    SearchRun(SearchConfig(name="e", space="mutation1", strategy="regularized-evolution", trials=25,
                           benchmark=str(TABLE), objectives=["score", "params"],
                           strategy_options={"population_size": 6, "sample_size": 2}), tmp_path).run()
    front = pareto_front(tmp_path / "e")
    res = runner.invoke(app, ["evaluate", str(tmp_path / "e"), "--pareto", "--top", "2", "--budget", "2",
                              "--seeds", "1", "--lrs", "1", "--baselines", "gru", "--backend", "local", "--json",
                              "--no-progress"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    candidates = {r["cell"] for r in rows if r["role"] == "candidate"}
    assert candidates == {e["cell"] for e in front[:2]}  # the front's best two scores, not the top two


def test_latency_is_measured_by_trained_trials(tmp_path):
    res = _search(tmp_path, "--strategy", "random", "--objectives", "score,latency", "--space", "greff",
                  "--trials", "3", "--budget", "2", "--hidden", "8", "--backend", "local", "--name", "l")
    assert res.exit_code == 0, res.output
    rows = [r for r in trained_rows(tmp_path / "l") if r["status"] == "ok"]
    assert rows and all(r["metrics"]["arith"]["step_latency_ms"] > 0 for r in rows)
    front = pareto_front(tmp_path / "l")
    assert front and all(e["objectives"]["latency"] > 0 for e in front)
    table = runner.invoke(app, ["leaderboard", str(tmp_path / "l"), "--pareto"]).stdout
    assert f"{front[0]['objectives']['latency']:.3g} ms" in table
    res = _search(tmp_path, "--strategy", "random", "--objectives", "score,latency", "--space", "mutation1",
                  "--benchmark", str(TABLE), "--trials", "2")
    assert res.exit_code == 2 and "a replay (benchmark) has none" in res.stderr
