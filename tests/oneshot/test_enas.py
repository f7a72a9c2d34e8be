"""ENAS from the command line: the controller samples the cells that train the shared weights and learns
from their validation reward; the top K sampled cells are recorded as candidates that ``leaderboard`` and
``export`` read; an interrupted run resumes exactly; bad inputs are refused in one line."""

from __future__ import annotations


import pytest
import torch

from cellsearch.oneshot.enas import ENAS, run_enas
from cellsearch.spaces import load_space
from cellsearch.storage.settings import SearchConfig
from cellsearch.storage.store import Store
from cellsearch.tasks import make_task, primary_metric
from tests.support.hostile import cli
from tests.support.oneshot import OneShotSuite, finished_run, kill_resume_and_rerun

TINY = ("--space", "dag4", "--tasks", "arith", "--budget", "12", "--trials", "3", "-o", "candidates=6",
        "-o", "controller_every=4", "-o", "controller_batch=2", "--hidden", "16", "--backend", "local")
OPTIONS = {"candidates": 6, "controller_every": 4, "controller_batch": 2}
SUITE_OPTIONS = ("-o", "controller_every=4", "-o", "controller_batch=2")  # (TINY's own, as flags)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return finished_run("enas", SUITE_OPTIONS, tmp_path_factory)  # (the small search TestENASSuite reads too)


def test_the_controller_was_trained(run):
    # (the recorded cells themselves: OneShotSuite.test_records_trials_cells_with_one_shot_scores)
    # the controller was trained: 12 steps / every 4 = 3 phases of one REINFORCE step on 2 cells
    ckpt = torch.load(run / "oneshot.pt", weights_only=True)
    assert ckpt["strategy"] == "enas" and ckpt["extra"]["controller"]["updates"] == 3
    assert len(ckpt["extra"]["rewards"]) == 6
    # leaderboard and export on these cells: OneShotSuite.test_leaderboard_and_export_read_the_cells


def test_the_controller_moves_towards_the_rewarded_choice_and_then_trains_it():
    """A synthetic reward (1 when the first decision takes choice 0, else 0): REINFORCE must raise that
    choice's probability, and the cells that train the shared weights follow the controller."""
    cfg = SearchConfig(space="dag4", tasks=["arith"], steps=1, train={"hidden_size": 8}).resolved()
    tc = cfg.train_config("arith")
    task = make_task("arith", seed=0, **tc.task_options)
    metric = primary_metric("arith")
    search = ENAS(load_space("dag4"), task, tc, 5, seed=0,
                  options={"controller_every": 1, "controller_batch": 4, "controller_lr": 0.05,
                           "entropy_weight": 0.0})
    search.evaluate = lambda choices: {metric: 1.0 if choices[0] == 0 else 0.0}  # type: ignore[method-assign]
    before = search.probabilities()[0]
    for _ in range(30):
        search.after_step()
    after = search.probabilities()[0]
    assert before < 0.6 and after > 0.9, (before, after)
    assert sum(search.train_cell()[0] == 0 for _ in range(50)) >= 40


class Killed(Exception):
    """Stands for a kill: the process state is lost, what the run wrote to disk stays."""


def test_an_interrupted_run_resumes_to_exactly_the_uninterrupted_result(run, tmp_path):
    cfg = SearchConfig(name="k", space="dag4", strategy="enas", tasks=["arith"], steps=12, trials=3,
                       strategy_options=OPTIONS, train={"hidden_size": 16}, backend="local")

    def kill(event):
        if event["phase"] == "train" and event["done"] == 7:  # after one controller phase, before the next
            raise Killed

    with pytest.raises(Killed):
        run_enas(cfg, tmp_path, on_progress=kill)
    assert not list(Store(tmp_path / "k" / "results.db").rows())
    out = cli("resume", str(tmp_path / "k"), "--no-progress")
    assert out.exit_code == 0, (out.stdout, out.stderr, out.exception)
    rows = [[(r["hash"], r["score"], r["decisions"]) for r in Store(d / "results.db", readonly=True).rows()]
            for d in (run, tmp_path / "k")]
    assert rows[0] == rows[1]
    a, b = (torch.load(d / "oneshot.pt", weights_only=True) for d in (run, tmp_path / "k"))
    assert all(torch.equal(a["net"][k], b["net"][k]) for k in a["net"])
    assert a["extra"] == b["extra"]  # the controller's weights, Adam state, generator, baseline, rewards


@pytest.mark.slow
def test_kill_9_during_training_then_resume_gives_the_uninterrupted_result(tmp_path):
    flags = [a if a != "12" else "60" for a in TINY]  # a budget long enough to be killed in
    a, b = kill_resume_and_rerun(tmp_path, "enas", flags)
    assert all(torch.equal(a["net"][k], b["net"][k]) for k in a["net"]) and a["extra"] == b["extra"]


class TestENASSuite(OneShotSuite):
    """The one-shot strategies' shared tests, for enas."""

    strategy = "enas"
    options = SUITE_OPTIONS
    refusals = ((("-o", "controller_every=0"), "controller_every must be at least 1"),
                (("-o", "controller_batch=100000000"), "controller_batch"),
                (("-o", "controller_lr=0"), "controller_lr must be a positive number"),
                (("-o", "entropy_weight=-1"), "entropy_weight must be a number >= 0"),
                (("-o", "baseline_decay=2"), "baseline_decay must be at most 1"),
                (("-o", "temperature=5"), "no option 'temperature'"))
