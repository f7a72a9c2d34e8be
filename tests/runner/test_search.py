"""Searches end to end: every strategy on every space, dedup, faults, resume, Ray cluster, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cellsearch.cli import app
from cellsearch.storage.results import leaderboard, stage_counts
from cellsearch.runner.search import SearchRun
from cellsearch.storage.settings import SearchConfig
from cellsearch.spaces import SPACE_NAMES
from cellsearch.storage.store import read_results
from cellsearch.strategies import STRATEGY_NAMES

pytestmark = pytest.mark.ray  # its Ray tests start local clusters

runner = CliRunner()
TINY_TASKS = {"arith": {"max_digits": 1, "eval_examples": 16}, "memorize": {"eval_examples": 16, "length": 2,
                                                                           "symbols": 3},
              "xml": {"eval_chars": 300}}
TINY_TRAIN = {"hidden_size": 8, "batch_size": 4, "lr": 1e-2}
EVOLUTION_TINY = {"settings": 1, "memorize_steps": 2, "population_size": 4}


def tiny(name: str, **kw) -> SearchConfig:
    cfg = SearchConfig(name=name, trials=3, steps=2, backend="local", train=dict(TINY_TRAIN),
                       task_options=dict(TINY_TASKS))
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize("space", SPACE_NAMES)
@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
def test_every_strategy_runs_on_every_space(tmp_path, strategy, space):
    opts = dict(EVOLUTION_TINY) if strategy == "evolution" else {}
    if strategy == "rl":
        opts["batch_size"] = 2
    cfg = tiny("pair", space=space, strategy=strategy, strategy_options=opts)
    summary = SearchRun(cfg, tmp_path).run()
    df = read_results(tmp_path / "pair")
    candidates = df[df.origin != "reference"]
    assert len(candidates) == 3
    assert set(df.status) <= {"ok", "diverged", "failed", "stopped-early", "rejected"}
    assert (tmp_path / "pair" / "state.json").exists()
    if strategy == "evolution":  # staged filters: the GRU reference first, then stages with thresholds
        assert df.iloc[0].origin == "reference"
        assert set(candidates.stage.dropna()) <= {"memorize", "arith", "passed"}
    if summary["best_hash"]:
        assert (tmp_path / "pair" / "best.yaml").exists()


def test_dedup_reuses_results_and_reports_them(tmp_path):
    # the greff space has nine cells: twelve trials must reuse some, never train a cell twice
    cfg = tiny("dedup", space="greff", strategy="random", trials=12)
    SearchRun(cfg, tmp_path).run()
    df = read_results(tmp_path / "dedup")
    trained = df[df.reused_from.isna()]
    assert trained.hash.is_unique
    reused = df[df.reused_from.notna()]
    assert len(reused) >= 3 and len(df) == 12
    for _, row in reused.iterrows():
        original = df[df.id == row.reused_from].iloc[0]
        assert original.hash == row.hash and original.score == row.score
    state = json.loads((tmp_path / "dedup" / "state.json").read_text())
    assert state["strategy"]["told"] == 12  # reused results were reported to the strategy too


def test_multi_task_scores_are_relative_to_the_reference(tmp_path):
    cfg = tiny("multi", space="greff", strategy="random", tasks=["arith", "xml"], trials=2)
    SearchRun(cfg, tmp_path).run()
    df = read_results(tmp_path / "multi")
    ref = df[df.origin == "reference"].iloc[0]
    assert ref.score == pytest.approx(1.0)
    for _, row in df[df.origin != "reference"].iterrows():
        if row.status == "ok":
            # relative to the reference's score on each task; a task the reference scored 0 on
            # (a tiny training can) counts as the candidate's own score
            ratios = [row.metrics[t][m] / ref.metrics[t][m] if ref.metrics[t][m] else row.metrics[t][m]
                      for t, m in (("arith", "char_accuracy"), ("xml", "accuracy"))]
            assert row.score == pytest.approx(min(ratios))


def write_fault_space(tmp_path: Path) -> Path:
    (tmp_path / "explode.yaml").write_text(
        "name: explode\nstates: [h]\nnodes:\n  h: relu(linear(h_prev, diag_init=100.0) + linear(x))\n")
    space = tmp_path / "faults.yaml"
    space.write_text("kind: finite\nname: faults\ncells: [gru, mut1, explode.yaml]\n")
    return space


def test_faulty_trials_are_recorded_and_the_search_goes_on(tmp_path):
    space = write_fault_space(tmp_path)
    # embedding 6 != hidden 8: MUT1 adds tanh(x) to hidden vectors, so building it raises; without
    # the trainer's output bound (which would keep it finite) "explode" diverges
    cfg = tiny("faults", space=str(space), strategy="random", trials=6,
               train=dict(TINY_TRAIN, embed_size=6, state_limit=None), steps=5)
    SearchRun(cfg, tmp_path).run()
    df = read_results(tmp_path / "faults")
    status = {row.cell_name: row.status for _, row in df[df.reused_from.isna()].iterrows()}
    assert status == {"gru": "ok", "mut1": "failed", "explode": "diverged"}
    failed = df[(df.cell_name == "mut1") & df.reused_from.isna()].iloc[0]
    assert "SizeError" in failed.error and "has size 6" in failed.error
    assert len(df) == 6


@pytest.mark.slow
def test_leaderboard_json_is_stable_and_documented(tmp_path):
    SearchRun(tiny("lb", space="greff", strategy="random", trials=4), tmp_path).run()
    res = runner.invoke(app, ["leaderboard", str(tmp_path / "lb"), "--json", "--top", "3"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    for r in rows:
        assert {"rank", "hash", "score", "status", "params", "metrics", "equations"} <= set(r)
    scores = [r["score"] for r in rows if r["score"] is not None]
    assert scores == sorted(scores, reverse=True)
    assert rows == leaderboard(tmp_path / "lb", 3)  # same output twice
    text = runner.invoke(app, ["leaderboard", str(tmp_path / "lb")])
    assert text.exit_code == 0 and "#1" in text.stdout


@pytest.mark.parametrize("content, field", [
    ("kind: tree\nleaves: 8\nactivations: [tanh, tanhh]\n", "activations"),
    ("kind: dag\nnodes: 0\n", "nodes"),
    ("kind: graph\nops: [linear, conv]\n", "ops"),
    ("kind: graph\nmin_nodes: 9\nmax_nodes: 4\n", "nodes"),
    ("kind: tree\nleaves: 8\ncolour: blue\n", "colour"),
    ("kind: finite\ncells: [lstm, nope]\n", "cells"),
    ("kind: tree\nleaves: [8\n", "YAML syntax error"),
])
def test_malformed_space_file_is_a_one_line_error(tmp_path, content, field):
    f = tmp_path / "bad_space.yaml"
    f.write_text(content)
    res = runner.invoke(app, ["search", "--space", str(f), "--trials", "1", "--runs", str(tmp_path),
                              "--backend", "local", "--no-progress"])
    assert res.exit_code == 2, res.output
    assert "bad_space.yaml" in res.stderr and field in res.stderr
    assert res.stderr.strip().count("\n") == 0 and "Traceback" not in res.output


def test_existing_run_name_is_refused_with_a_hint(tmp_path):
    SearchRun(tiny("twice", space="greff", strategy="random", trials=1), tmp_path).run()
    res = runner.invoke(app, ["search", "--space", "greff", "--name", "twice", "--runs", str(tmp_path),
                              "--backend", "local", "--no-progress"])
    assert res.exit_code == 2 and "cellsearch resume" in res.stderr


# ---------------------------------------------------------------------- Ray Tune
@pytest.mark.slow
def test_ray_search_in_parallel_with_asha(tmp_path, local_ray):
    cfg = tiny("ray", space="greff", strategy="regularized-evolution", trials=6, parallel=2, backend="ray",
               steps=40, strategy_options={"population_size": 4, "sample_size": 2})
    summary = SearchRun(cfg, tmp_path).run()
    df = read_results(tmp_path / "ray")
    assert len(df) == 6 and not summary["interrupted"]
    assert df[df.reused_from.isna()].node.notna().all()  # every trained trial ran on a Ray node
    trained = df[df.reused_from.isna()]
    assert trained.hash.is_unique
    assert set(df.status) <= {"ok", "stopped-early"}
    assert (tmp_path / "ray" / "best.yaml").exists()


def _count_rows(db: Path) -> int:
    import sqlite3

    if not db.exists():
        return 0  # (opening it with Store would create it, and the search would refuse to start)
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_interrupted_search_resumes_without_retraining_or_losing_rows(tmp_path):
    run = tmp_path / "killme"
    cmd = [sys.executable, "-m", "cellsearch", "search", "--space", "greff", "--strategy", "random",
           "--trials", "8", "--budget", "30", "--hidden", "8", "--name", "killme", "--runs", str(tmp_path),
           "--backend", "local", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while _count_rows(run / "results.db") < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # killed mid-run, no chance to clean up
    proc.wait()
    before = read_results(run)
    assert 3 <= len(before) < 8
    res = runner.invoke(app, ["resume", str(run), "--no-progress"])
    assert res.exit_code == 0, res.output
    after = read_results(run)
    assert len(after) == 8
    # every row written before the kill is still there, unchanged
    kept = after[after.id.isin(before.id)]
    assert kept[["id", "hash", "status", "score"]].equals(before[["id", "hash", "status", "score"]])
    # no cell was trained twice
    assert after[after.reused_from.isna()].hash.is_unique


@pytest.mark.slow
def test_search_on_a_real_ray_cluster(tmp_path, ray_cluster):
    import ray

    address = ray_cluster.address
    res = runner.invoke(app, ["search", "--space", "greff", "--strategy", "random", "--trials", "4",
                              "--parallel", "2", "--budget", "20", "--hidden", "8", "--cpus-per-trial", "1",
                              "--address", address, "--name", "cluster", "--runs", str(tmp_path), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert not ray.is_initialized()  # the search left the cluster: it only disconnected
    ray.init(address=address, _node_ip_address="127.0.0.1", include_dashboard=False)
    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(nodes) == 2  # the head and the worker that joined it
    df = read_results(tmp_path / "cluster")
    ran = set(df[df.reused_from.isna()].node)
    assert ran and ran <= nodes  # every trial ran on a node of that cluster
    ray.shutdown()
    # a search without --address starts a Ray of its own even while this cluster runs (ray.init
    # with no address would join it, and refuse the search's num_cpus in a traceback)
    res = runner.invoke(app, ["search", "--space", "greff", "--strategy", "random", "--trials", "2",
                              "--budget", "5", "--hidden", "8", "--name", "alone", "--runs", str(tmp_path),
                              "--no-progress"])
    assert res.exit_code == 0, res.output
    alone = read_results(tmp_path / "alone")
    assert len(alone) == 2 and not set(alone[alone.reused_from.isna()].node) & nodes


def test_stage_counts_show_filter_rejections(tmp_path):
    cfg = tiny("stages", space="mutation", strategy="evolution", trials=4,
               strategy_options=dict(EVOLUTION_TINY, memorize_threshold=0.99, memorize_fallback=None))
    SearchRun(cfg, tmp_path).run()
    counts = stage_counts(tmp_path / "stages")
    assert sum(counts.values()) == 4
    assert counts.get("rejected at memorize", 0) >= 1  # 2 steps cannot memorise to 99%


@pytest.mark.slow
def test_a_search_tells_its_progress_as_events_and_the_cli_draws_them(tmp_path):
    import io

    from rich.console import Console

    from cellsearch.cli.progress import ProgressBars
    from cellsearch.runner.events import SearchEnded, SearchStarted, TrialFinished

    events = []
    SearchRun(tiny("ev", space="greff", strategy="random", trials=3), tmp_path).run(on_event=events.append)
    assert events[0] == SearchStarted(total=3, done=0, best=None) and events[-1] == SearchEnded()
    finished = [e for e in events if isinstance(e, TrialFinished)]
    assert len(finished) == 3 and finished[-1].done == 3 and finished[-1].running == 0
    best = max(e.score for e in finished if e.score is not None)
    assert finished[-1].best == best
    out = io.StringIO()
    bars = ProgressBars(Console(file=out, width=120))
    for e in events:
        bars(e)
    assert "3/3" in out.getvalue() and f"best {best:.4f}" in out.getvalue()


@pytest.mark.slow
def test_one_ranking_of_a_runs_cells(tmp_path):
    from cellsearch.storage.results import best_per_cell, top_cells

    rows = [{"id": 1, "hash": "a", "score": 0.5, "reused_from": None},
            {"id": 2, "hash": "b", "score": None, "reused_from": None},
            {"id": 3, "hash": "a", "score": 0.7, "reused_from": None},
            {"id": 4, "hash": "c", "score": 0.7, "reused_from": None},
            {"id": 5, "hash": "c", "score": 0.9, "reused_from": 4},  # a duplicate repeats a stored result
            {"id": 6, "hash": "d", "score": float("nan"), "reused_from": float("nan")}]  # (as pandas has them)
    ranked = [(r["id"], n) for r, n in best_per_cell(rows)]
    assert ranked == [(3, 2), (4, 1), (2, 1), (6, 1)]  # best first, ties by id, unscored last
    SearchRun(tiny("rank", space="greff", strategy="random", trials=4), tmp_path).run()
    board, tops = leaderboard(tmp_path / "rank", 100), top_cells(tmp_path / "rank")
    assert [r["hash"] for r in tops] == [r["hash"] for r in board if r["origin"] != "reference"]
