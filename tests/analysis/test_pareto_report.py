"""The search report draws the run's Pareto front (``analyze report``): the PNG, the CSV and the section."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from cellsearch.analysis.report import plot_pareto_front
from cellsearch.cli import app
from cellsearch.runner.search import SearchRun
from cellsearch.storage.results import objective_values, pareto_front
from cellsearch.storage.settings import SearchConfig
from tests.support.paths import REPO

TABLE = REPO / "benchmarks" / "tables" / "mutation1-arith.parquet"


def test_report_draws_the_front(tmp_path):
    SearchRun(SearchConfig(name="p", space="mutation1", strategy="nsga2", trials=25, benchmark=str(TABLE),
                           objectives=["score", "params"], strategy_options={"population_size": 6}),
              tmp_path / "runs").run()
    run = tmp_path / "runs" / "p"
    res = CliRunner().invoke(app, ["analyze", "report", str(run), "-o", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    png = tmp_path / "rep" / "pareto_front.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "## Pareto front over score, params" in text and "](pareto_front.png)" in text
    front = pd.read_csv(tmp_path / "rep" / "pareto_front.csv", dtype={"hash": str})
    assert list(front.columns) == ["rank", "hash", "score", "params", "cell"]
    assert list(front["hash"]) == [e["hash"] for e in pareto_front(run)]
    cells = objective_values(run)
    assert sum(c["front"] == 0 for c in cells) == len(front) and any(c["front"] > 0 for c in cells)


def test_front_plot_of_an_empty_run(tmp_path):
    """A run whose every cell failed still gets a (labelled) figure."""
    SearchRun(SearchConfig(name="e", space="greff", strategy="random", trials=2, benchmark=str(TABLE)),
              tmp_path / "runs").run()  # greff's cells are not in the mutation1 table: all missing
    path, names = plot_pareto_front(tmp_path / "runs" / "e", tmp_path / "f.png")
    assert names == ["score", "params"] and path.stat().st_size > 0
