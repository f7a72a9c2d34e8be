"""RS-WS from the command line: train a supernet, score random cells with it, record the best K as
candidates that ``leaderboard``, ``export`` and ``evaluate`` read; bad inputs refused in one line."""

from __future__ import annotations

import json
import random

import pytest
import torch

from cellsearch.oneshot.rsws import build_supernet, score_cells, train_supernet
from cellsearch.spaces import load_space
from cellsearch.spaces.dag import DagSpace
from cellsearch.storage.settings import SearchConfig
from cellsearch.storage.store import Store
from cellsearch.tasks import make_task, primary_metric
from tests.support.hostile import cli, refused

TINY = ("--space", "dag4", "--tasks", "arith", "--budget", "12", "--trials", "3", "-o", "candidates=6",
        "--hidden", "16", "--backend", "local", "--no-progress")


def _search(runs, name="r", *extra):
    out = cli("search", "--strategy", "rsws", *TINY, "--runs", str(runs), "--name", name, *extra)
    assert out.exit_code == 0 and out.exception is None, (out.stdout, out.stderr, out.exception)
    return runs / name


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return _search(tmp_path_factory.mktemp("runs"))


def test_records_the_top_k_as_one_shot_candidates(run):
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["strategy"] == "rsws" and cfg["space"] == "dag4"
    with Store(run / "results.db", readonly=True) as store:
        rows = list(store.rows())
        meta = store.get_meta("oneshot")
    assert len(rows) == 3 and meta["scored"] == 6 and meta["supernet"]["steps"] == 12
    assert {r["status"] for r in rows} == {"ok"}
    assert {r["stage"] for r in rows} == {"one-shot"} and {r["origin"] for r in rows} == {"oneshot"}
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert len({r["hash"] for r in rows}) == 3
    space = load_space("dag4")
    for r in rows:  # the recorded decisions decode to the recorded cell
        assert space.decode(json.loads(r["decisions"])).name == r["cell_name"]
    assert (run / "best.yaml").read_text().count(rows[0]["cell_name"])


def test_leaderboard_and_export_read_the_run(run, tmp_path):
    out = cli("leaderboard", str(run), "--json")
    assert out.exit_code == 0, out.stderr
    board = json.loads(out.stdout)
    assert [r["stage"] for r in board] == ["one-shot"] * 3 and board[0]["metrics"]["arith"][primary_metric("arith")] == board[0]["score"]
    out = cli("export", str(run), "--format", "py", "-o", str(tmp_path / "cell.py"))
    assert out.exit_code == 0, out.stderr
    source = (tmp_path / "cell.py").read_text()
    assert "class " in source and board[0]["cell"] in source


def test_the_same_seed_gives_the_same_cells_and_scores(run, tmp_path):
    again = _search(tmp_path)
    rows = [[(r["hash"], r["score"]) for r in Store(d / "results.db", readonly=True).rows()] for d in (run, again)]
    assert rows[0] == rows[1]


def test_score_cells_scores_distinct_cells_and_stops_when_the_space_runs_out():
    cfg = SearchConfig(space="dag4", tasks=["arith"], steps=3, train={"hidden_size": 8}).resolved()
    tc = cfg.train_config("arith")
    task = make_task("arith", seed=0, **tc.task_options)
    space = load_space("dag4")
    net = build_supernet(space, task, tc)
    before = {k: v.detach().clone() for k, v in net.state_dict().items()}
    trained = train_supernet(net, task, tc, random.Random(0))
    assert trained["steps"] == 3 and any(not torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    small = DagSpace("tiny", nodes=2, activations=["tanh", "relu"], bias=True)  # 2 x 1 x 2 = 4 cells
    tiny_net = build_supernet(small, task, tc)
    scored = score_cells(tiny_net, task, tc, 50, random.Random(0))
    assert len(scored) == len({r["hash"] for r in scored}) == len(small.distinct_cells())


@pytest.mark.parametrize("args, says", [
    (("--space", "mutation"), "dag, dag4"),
    (("--space", "attention"), "dag, dag4"),
    (("--backend", "ray"), "--backend local"),
    (("--tasks", "arith,copy"), "one task"),
    (("-o", "bogus=1"), "no option 'bogus'"),
    (("-o", "candidates=2"), "at least trials"),
    (("-o", "candidates=0"), "candidates must be at least 1"),
])
def test_bad_inputs_are_refused_in_one_line(tmp_path, args, says):
    base = dict(zip(TINY[0::2], TINY[1::2]))
    base.pop("--no-progress", None)
    flags = [a for k, v in base.items() for a in (k, v)]
    refused("search", "--strategy", "rsws", *flags, "--no-progress", *args, "--runs", str(tmp_path), "--name", "x",
            says=says)
    assert not (tmp_path / "x").exists()


def test_resume_of_a_one_shot_run_is_refused(run):
    refused("resume", str(run), says="cannot be resumed yet")


@pytest.mark.slow
def test_evaluate_retrains_the_top_one_shot_cell(tmp_path):
    run = _search(tmp_path)
    out = cli("evaluate", str(run), "--top", "1", "--seeds", "1", "--budget", "10", "--baselines", "gru",
              "--lrs", "1", "--backend", "local", "--no-progress", "--json")
    assert out.exit_code == 0, (out.stdout, out.stderr, out.exception)
    assert (run / "evaluation" / "results.md").exists()
