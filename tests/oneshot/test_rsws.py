"""RS-WS from the command line: train a supernet, score random cells with it, record the best K as
candidates that ``leaderboard``, ``export`` and ``evaluate`` read; bad inputs refused in one line."""

from __future__ import annotations

import json

import pytest
import torch

from cellsearch.oneshot.rsws import RSWS, run_rsws
from cellsearch.spaces.dag import DagSpace
from cellsearch.storage.settings import SearchConfig
from cellsearch.storage.store import Store
from cellsearch.tasks import make_task
from tests.support.hostile import cli, refused, unchanged
from tests.support.oneshot import OneShotSuite, finished_run, kill_resume_and_rerun

TINY = ("--space", "dag4", "--tasks", "arith", "--budget", "12", "--trials", "3", "-o", "candidates=6",
        "--hidden", "16", "--backend", "local", "--no-progress")


def _search(runs, name="r", *extra):
    out = cli("search", "--strategy", "rsws", *TINY, "--runs", str(runs), "--name", name, *extra)
    assert out.exit_code == 0 and out.exception is None, (out.stdout, out.stderr, out.exception)
    return runs / name


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return finished_run("rsws", (), tmp_path_factory)  # (the small search TestRSWSSuite reads too)


# (the recorded cells, leaderboard, export and evaluate on them: OneShotSuite's tests)


def test_the_same_seed_gives_the_same_cells_and_scores(run, tmp_path):
    again = _search(tmp_path)
    rows = [[(r["hash"], r["score"]) for r in Store(d / "results.db", readonly=True).rows()] for d in (run, again)]
    assert rows[0] == rows[1]


def test_training_moves_the_shared_weights_and_scoring_stops_when_the_space_runs_out():
    cfg = SearchConfig(space="dag4", tasks=["arith"], steps=3, train={"hidden_size": 8}).resolved()
    tc = cfg.train_config("arith")
    task = make_task("arith", seed=0, **tc.task_options)
    small = DagSpace("tiny", nodes=2, activations=["tanh", "relu"], bias=True)  # 2 x 1 x 2 = 4 cells
    search = RSWS(small, task, tc, 50, seed=0)
    before = {k: v.detach().clone() for k, v in search.net.state_dict().items()}
    search.run()
    assert search.step == 3
    assert any(not torch.equal(v, search.net.state_dict()[k]) for k, v in before.items())
    assert len(search.scored) == len({r["hash"] for r in search.scored}) == len(small.distinct_cells())
    scores = [r["score"] for r in search.ranked()]
    assert scores == sorted(scores, reverse=True)


class Killed(Exception):
    """Stands for a kill: the process state is lost, what the run wrote to disk stays."""


@pytest.mark.parametrize("phase, at", [("train", 7), ("score", 4)])
def test_an_interrupted_run_resumes_to_exactly_the_uninterrupted_result(run, tmp_path, phase, at):
    cfg = SearchConfig(name="k", space="dag4", strategy="rsws", tasks=["arith"], steps=12, trials=3,
                       strategy_options={"candidates": 6}, train={"hidden_size": 16}, backend="local")

    def kill(event):
        if event["phase"] == phase and event["done"] == at:
            raise Killed

    with pytest.raises(Killed):
        run_rsws(cfg, tmp_path, on_progress=kill)
    assert (tmp_path / "k" / "oneshot.pt").exists() and not list(Store(tmp_path / "k" / "results.db").rows())
    out = cli("resume", str(tmp_path / "k"), "--no-progress")
    assert out.exit_code == 0, (out.stdout, out.stderr, out.exception)
    rows = [[(r["hash"], r["score"], r["decisions"]) for r in Store(d / "results.db", readonly=True).rows()]
            for d in (run, tmp_path / "k")]
    assert rows[0] == rows[1]
    # the shared weights and the optimizer's moments too, bit for bit (the last checkpoints of the two runs)
    a, b = (torch.load(d / "oneshot.pt", weights_only=True) for d in (run, tmp_path / "k"))
    assert a["net"].keys() == b["net"].keys() and all(torch.equal(a["net"][k], b["net"][k]) for k in a["net"])
    assert all(torch.equal(x["exp_avg_sq"], y["exp_avg_sq"])
               for x, y in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()))
    again = cli("resume", str(tmp_path / "k"), "--no-progress")  # a finished run: its result again, nothing added
    assert again.exit_code == 0 and len(list(Store(tmp_path / "k" / "results.db").rows())) == 3


def test_resume_refuses_a_damaged_checkpoint_in_one_line(tmp_path):
    cfg = SearchConfig(name="k", space="dag4", strategy="rsws", tasks=["arith"], steps=5, trials=1,
                       train={"hidden_size": 8}, backend="local")

    def kill(event):
        raise Killed

    with pytest.raises(Killed):
        run_rsws(cfg, tmp_path, on_progress=kill)
    (tmp_path / "k" / "oneshot.pt").write_bytes(b"not a checkpoint")
    refused("resume", str(tmp_path / "k"), says="oneshot.pt")
    refused("resume", str(tmp_path / "k"), "--trials", "3", says="resumes as it was started")


@pytest.mark.slow
def test_kill_9_during_training_then_resume_gives_the_uninterrupted_result(tmp_path):
    flags = [a if a != "12" else "200" for a in TINY]  # a budget long enough to be killed in
    a, b = kill_resume_and_rerun(tmp_path, "rsws", flags)
    assert all(torch.equal(a["net"][k], b["net"][k]) for k in a["net"])


def test_a_time_budget_trains_until_it_is_spent(tmp_path):
    flags = [a for a in TINY if a not in ("--budget", "12")]
    out = cli("search", "--strategy", "rsws", *flags, "--minutes", "0.01", "--runs", str(tmp_path), "--name", "m")
    assert out.exit_code == 0, (out.stdout, out.stderr, out.exception)
    with Store(tmp_path / "m" / "results.db", readonly=True) as store:
        meta = store.get_meta("oneshot")
    assert meta["steps"] >= 1 and 0.5 <= meta["train_seconds"] < 5


def test_dry_run_prints_the_settings_and_writes_nothing(tmp_path):
    out = cli("search", "--strategy", "rsws", *TINY, "--runs", str(tmp_path), "--name", "d", "--dry-run")
    assert out.exit_code == 0, out.stderr
    settings = json.loads(out.stdout)
    assert settings["strategy"] == "rsws" and settings["strategy_options"] == {"candidates": 6}
    assert not (tmp_path / "d").exists()


def test_a_second_search_to_the_same_run_is_refused(run):
    with unchanged(run):
        refused("search", "--strategy", "rsws", *TINY, "--runs", str(run.parent), "--name", run.name,
                says="already holds a run")


class TestRSWSSuite(OneShotSuite):
    """The one-shot strategies' shared tests, for rsws."""

    strategy = "rsws"
