"""One-shot strategies' shared tests: the kill -9 check (killed at its first checkpoint, resumed, compared with
an uninterrupted run) and ``OneShotSuite``, the tests every one-shot strategy's test module subclasses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from cellsearch.spaces import load_space
from cellsearch.storage.settings import SearchConfig
from cellsearch.storage.store import Store
from cellsearch.tasks import primary_metric
from tests.support.hostile import cli, refused
from tests.support.paths import REPO


def kill_resume_and_rerun(runs: Path, strategy: str, flags: list[str], cells: int = 3,
                          checkpoint: str = "oneshot.pt") -> tuple[dict[str, Any], dict[str, Any]]:
    """Start ``cellsearch search --strategy STRATEGY FLAGS`` as run ``k``, kill -9 it once its
    ``checkpoint`` exists, resume it, and run the same search uninterrupted as run ``u``. Asserts both
    recorded the same cells with the same scores (``cells`` of them); returns both final checkpoints."""
    cmd = [sys.executable, "-m", "cellsearch", "search", "--strategy", strategy, *flags, "--no-progress",
           "--runs", str(runs)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([*cmd, "--name", "k"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = runs / "k" / checkpoint
    deadline = time.monotonic() + 120
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the search ended before it could be killed"
    # (a process of its own, as the search's: a Ray it starts must not inherit ``cli``'s memory cap)
    resume = subprocess.run([sys.executable, "-m", "cellsearch", "resume", str(runs / "k"), "--no-progress"], env=env,
                            capture_output=True, text=True)
    assert resume.returncode == 0, (resume.stdout, resume.stderr)
    subprocess.run([*cmd, "--name", "u"], env=env, check=True, stdout=subprocess.DEVNULL)
    rows = [[(r["hash"], r["score"]) for r in Store(runs / d / "results.db", readonly=True).rows()]
            for d in ("k", "u")]
    assert rows[0] == rows[1] and len(rows[0]) == cells
    killed, uninterrupted = (torch.load(runs / d / "oneshot.pt", weights_only=True) for d in ("k", "u"))
    return killed, uninterrupted


def small_search_flags(strategy: str, options: tuple[str, ...] = ()) -> list[str]:
    """The small one-shot search's flags (3 cells recorded of 6 scored, 12 supernet steps, hidden size 16)."""
    return ["--strategy", strategy, "--space", "dag4", "--tasks", "arith", "--budget", "12", "--trials", "3",
            "-o", "candidates=6", *options, "--hidden", "16", "--backend", "local", "--no-progress"]


_FINISHED: dict[tuple[str, tuple[str, ...]], Path] = {}


def finished_run(strategy: str, options: tuple[str, ...], tmp_path_factory: Any) -> Path:
    """The small search of ``strategy`` run once per test process (its tests only read it): the run
    folder that ``OneShotSuite`` and the strategy's own test module share."""
    key = (strategy, tuple(options))
    if key not in _FINISHED:
        runs = tmp_path_factory.mktemp("runs")
        out = cli("search", *small_search_flags(strategy, options), "--runs", str(runs), "--name", "r")
        assert out.exit_code == 0 and out.exception is None, (out.stdout, out.stderr, out.exception)
        _FINISHED[key] = runs / "r"
    return _FINISHED[key]


class OneShotSuite:
    """The tests every one-shot strategy passes (``cellsearch.oneshot.strategies``): subclass it in a test
    module and set ``strategy`` (its ``--strategy`` name) and ``options`` (``-o`` flags for a small run).

    Covered: a small search runs end to end from the command line and records ``trials`` cells with
    one-shot scores (stage ``one-shot``, best first, decisions that decode to the recorded cell);
    ``leaderboard --json`` and ``export --format py`` read them (``evaluate``: slow); the library's
    ``SearchRun`` interrupted during training resumes to exactly the uninterrupted run's cells; a space
    whose decisions are not a fixed graph's edges and ops, an unknown option and CUDA where there is none
    are refused in one line."""

    strategy: str = ""
    options: tuple[str, ...] = ()
    refusals: tuple[tuple[tuple[str, ...], str], ...] = ()  # the strategy's own bad inputs: (flags, what the line says)

    def flags(self) -> list[str]:
        """The small search's flags (``small_search_flags``)."""
        return small_search_flags(self.strategy, self.options)

    def settings(self, name: str) -> "SearchConfig":
        """The small search's settings, as the library takes them."""
        from cellsearch.cli.train import parse_options

        options = parse_options(["candidates=6", *[o for o in self.options if o != "-o"]])
        return SearchConfig(name=name, space="dag4", strategy=self.strategy, tasks=["arith"], steps=12, trials=3,
                            strategy_options=options, train={"hidden_size": 16}, backend="local")

    @pytest.fixture
    def run(self, tmp_path_factory) -> Path:
        """A finished small search (``finished_run``: once per process, shared with the strategy's module)."""
        return finished_run(self.strategy, self.options, tmp_path_factory)

    def test_records_trials_cells_with_one_shot_scores(self, run):
        cfg = json.loads((run / "config.json").read_text())
        assert cfg["strategy"] == self.strategy and cfg["space"] == "dag4"
        with Store(run / "results.db", readonly=True) as store:
            rows = list(store.rows())
            meta = store.get_meta("oneshot")
        assert len(rows) == 3 and meta["scored"] == 6 and meta["steps"] == 12 and meta["strategy"] == self.strategy
        assert {(r["status"], r["stage"], r["origin"], r["strategy"]) for r in rows} == {
            ("ok", "one-shot", "oneshot", self.strategy)}
        scores = [r["score"] for r in rows]
        assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
        assert len({r["hash"] for r in rows}) == 3
        space = load_space("dag4")
        assert all(space.decode(json.loads(r["decisions"])).name == r["cell_name"] for r in rows)
        assert rows[0]["cell_name"] in (run / "best.yaml").read_text()

    def test_leaderboard_and_export_read_the_cells(self, run, tmp_path):
        out = cli("leaderboard", str(run), "--json")
        assert out.exit_code == 0, out.stderr
        board = json.loads(out.stdout)
        assert [r["stage"] for r in board] == ["one-shot"] * 3
        assert board[0]["metrics"]["arith"][primary_metric("arith")] == board[0]["score"]
        out = cli("export", str(run), "--format", "py", "-o", str(tmp_path / "cell.py"))
        assert out.exit_code == 0, out.stderr
        assert "class " in (tmp_path / "cell.py").read_text() and board[0]["cell"] in (tmp_path / "cell.py").read_text()

    @pytest.mark.slow
    def test_evaluate_retrains_the_top_cell(self, run):
        out = cli("evaluate", str(run), "--top", "1", "--seeds", "1", "--budget", "10", "--baselines", "gru",
                  "--lrs", "1", "--backend", "local", "--no-progress", "--json")
        assert out.exit_code == 0, (out.stdout, out.stderr, out.exception)
        assert (run / "evaluation" / "results.md").exists()

    def test_an_interrupted_search_resumes_to_exactly_the_uninterrupted_cells(self, run, tmp_path):
        from cellsearch.runner.events import OneShotProgress
        from cellsearch.runner.search import SearchRun

        class Killed(Exception):
            """Stands for a kill: the process state is lost, what the run wrote to disk stays."""

        def kill(event):
            if isinstance(event, OneShotProgress) and event.phase == "train" and event.done == 7:
                raise Killed

        with pytest.raises(Killed):
            SearchRun(self.settings("k"), tmp_path).run(on_event=kill)
        assert (tmp_path / "k" / "oneshot.pt").exists() and not list(Store(tmp_path / "k" / "results.db").rows())
        summary = SearchRun.resume(tmp_path / "k").run()
        assert summary["trials"] == 3
        rows = [[(r["hash"], r["score"], r["decisions"]) for r in Store(d / "results.db", readonly=True).rows()]
                for d in (run, tmp_path / "k")]
        assert rows[0] == rows[1]

    @pytest.mark.parametrize("args, says", [
        (("--space", "mutation"), "dag, dag4"),
        (("--space", "attention"), "dag, dag4"),
        (("--tasks", "arith,copy"), "one task"),
        (("-o", "bogus=1"), "no option 'bogus'"),
        (("-o", "candidates=2"), "at least trials"),
        (("-o", "candidates=0"), "candidates must be at least 1"),
        (("--objectives", "score,params"), "one-shot score alone"),
    ])
    def test_refuses_in_one_line(self, tmp_path, args, says):
        refused("search", *self.flags(), *args, "--runs", str(tmp_path), "--name", "x", says=says)
        assert not (tmp_path / "x").exists()

    def test_refuses_its_own_bad_options_in_one_line(self, tmp_path):
        for args, says in self.refusals:
            refused("search", *self.flags(), *args, "--runs", str(tmp_path), "--name", "x", says=says)
            assert not (tmp_path / "x").exists()

    @pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
    @pytest.mark.parametrize("backend", ["local", "ray"])
    def test_cuda_without_cuda_is_refused_in_one_line(self, tmp_path, backend):
        flags = [f if f != "local" else backend for f in self.flags()]
        refused("search", *flags, "--gpus-per-trial", "1", "--runs", str(tmp_path), "--name", "x",
                says="CUDA is not available")
        assert not (tmp_path / "x").exists()
