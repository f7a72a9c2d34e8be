"""One-shot searches on Ray: each search seed's supernet one Tune trial, the driver the one writer;
the cells match the local backend's, a kill -9 of the driver resumes to the uninterrupted cells; a
multi-objective search on Ray and its Pareto front."""

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
from cellsearch.pareto import dominates
from cellsearch.runner.search import SearchRun
from cellsearch.storage.settings import SearchConfig
from cellsearch.storage.store import Store
from tests.support.hostile import Outcome
from tests.support.oneshot import kill_resume_and_rerun
from tests.support.paths import REPO, SHARED

pytestmark = pytest.mark.ray  # starts local Rays

_runner = CliRunner()


def cli(*args: str) -> Outcome:
    """``cellsearch ARGS`` in this process; not ``tests.support.hostile.cli``, whose address-space cap the
    Ray processes a search starts would inherit (the raylet then cannot start its threads)."""
    res = _runner.invoke(app, [str(a) for a in args])
    return Outcome(res.exit_code, res.stdout, res.stderr, res.exception if not isinstance(res.exception, SystemExit)
                   else None)

SMALL = ["--strategy", "rsws", "--space", "dag4", "--tasks", "arith", "--budget", "12", "--trials", "2",
         "-o", "candidates=4", "--hidden", "16", "--seeds", "2", "--parallel", "2", "--cpus-per-trial", "1"]


def _rows(run):
    with Store(run / "results.db", readonly=True) as store:
        return [(r["trial_id"], r["hash"], r["score"], json.loads(r["metrics"]), r["node"]) for r in store.rows()]


def test_seeds_are_parallel_ray_trials_that_give_the_local_backends_cells(tmp_path):
    ray = cli("search", *SMALL, "--backend", "ray", "--runs", str(tmp_path), "--name", "ray")
    assert ray.exit_code == 0, (ray.stdout, ray.stderr, ray.exception)
    # progress lines per seed, from the workers through the driver
    for line in ("rsws seed 0: supernet step 12/12", "rsws seed 1: supernet step 12/12", "rsws seed 1: scored cell 4/4"):
        assert line in ray.stderr, ray.stderr
    local = cli("search", *SMALL, "--backend", "local", "--no-progress", "--runs", str(tmp_path), "--name", "local")
    assert local.exit_code == 0, (local.stdout, local.stderr, local.exception)
    on_ray, here = _rows(tmp_path / "ray"), _rows(tmp_path / "local")
    assert [r[:4] for r in on_ray] == [r[:4] for r in here]  # the same cells, scores and metrics (losses too)
    assert [r[0] for r in on_ray] == ["rsws_seed0_00000", "rsws_seed0_00001", "rsws_seed1_00000", "rsws_seed1_00001"]
    assert [r[3]["arith"]["seed"] for r in on_ray] == [0, 0, 1, 1]
    assert all(r[4] not in (None, "local") for r in on_ray) and {r[4] for r in here} == {"local"}
    for name in ("oneshot.pt", "oneshot-seed1.pt"):
        assert (tmp_path / "ray" / name).exists()
    with Store(tmp_path / "ray" / "results.db", readonly=True) as store:
        meta, summary = store.get_meta("oneshot"), store.get_meta("last_summary")
    assert [s["seed"] for s in meta["seeds"]] == [0, 1] and all(s["steps"] == 12 for s in meta["seeds"])
    best = max(on_ray, key=lambda r: r[2])
    assert summary["best_score"] == best[2] and summary["seeds"] == 2
    # a finished run resumes to its summary again, nothing trained or added
    again = SearchRun.resume(tmp_path / "ray").run()
    assert again == summary and len(_rows(tmp_path / "ray")) == 4


@pytest.mark.skipif(not (SHARED / "data/ptb").exists(), reason="needs ../shared/data/ptb")
def test_a_one_shot_search_on_ptb(tmp_path):
    out = cli("search", "--strategy", "rsws", "--space", "dag4", "--tasks", "ptb", "--data-dir",
              str(SHARED / "data/ptb"), "--budget", "4", "--trials", "2", "-o", "candidates=2", "--hidden", "16",
              "--backend", "ray", "--parallel", "1", "--cpus-per-trial", "1", "--no-progress", "--runs",
              str(tmp_path), "--name", "p")
    assert out.exit_code == 0, (out.stdout, out.stderr, out.exception)
    rows = _rows(tmp_path / "p")
    assert len(rows) == 2 and all(r[2] is not None and r[2] > 0 for r in rows)


@pytest.mark.slow
def test_kill_9_of_the_driver_then_resume_gives_every_seeds_uninterrupted_cells(tmp_path):
    flags = [a if a != "12" else "300" for a in SMALL] + ["--backend", "ray"]
    a, b = kill_resume_and_rerun(tmp_path, "rsws", flags[2:], cells=4, checkpoint="oneshot-seed1.pt")
    assert a["step"] == b["step"] == 300


@pytest.mark.parametrize("strategy", ["nsga2", "random"])
def test_multi_objective_search_on_ray_and_its_front(tmp_path, strategy):
    out = cli("search", "--strategy", strategy, "--objectives", "score,params", "--space", "greff", "--trials", "4",
              "--budget", "4", "--hidden", "8", "--parallel", "2", "--scheduler", "fifo", "--backend", "ray",
              "--no-progress", "--runs", str(tmp_path), "--name", "mo", "--top", "1")
    assert out.exit_code == 0, (out.stdout, out.stderr, out.exception)
    with Store(tmp_path / "mo" / "results.db", readonly=True) as store:
        rows = [r for r in store.rows() if r["origin"] != "reference"]
    trained = [r for r in rows if r["reused_from"] is None]  # (a cell drawn again is reused, not trained)
    assert len(rows) == 4 and trained and all(r["node"] not in (None, "local") for r in trained)  # trained on Ray
    board = cli("leaderboard", str(tmp_path / "mo"), "--pareto", "--json")
    assert board.exit_code == 0, board.stderr
    data = json.loads(board.stdout)
    assert data["objectives"] == ["score", "params"] and data["front"]
    points = [(e["score"], -e["params"]) for e in data["front"]]
    assert not any(dominates(p, q) for p in points for q in points)
    for r in rows:  # every cell with a score is on the front or dominated by (or equal to) a front cell
        if r["score"] is not None:
            p = (r["score"], -r["params"])
            assert p in points or any(dominates(q, p) for q in points)


def _descendants(pid: int) -> list[int]:
    """The live processes below ``pid`` (children, their children, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _title(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@pytest.mark.slow
def test_kill_9_of_a_worker_is_retried_from_its_checkpoint_to_the_uninterrupted_cells(tmp_path):
    flags = [a if a != "12" else "300" for a in SMALL] + ["--backend", "ray", "--no-progress", "--runs", str(tmp_path)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "cellsearch", "search", *flags]
    proc = subprocess.Popen([*cmd, "--name", "k"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 180
    while not (tmp_path / "k" / "oneshot.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    # the Tune trials' worker processes, the search's own descendants (Ray titles them ray::<actor>.train)
    workers = [p for p in _descendants(proc.pid) if "ImplicitFunc" in _title(p) or "_trainable" in _title(p)]
    assert workers, [_title(p) for p in _descendants(proc.pid)]
    os.kill(workers[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    # the killed trial failed once (Tune keeps its error) and was run again, from the seed's checkpoint
    assert list((tmp_path / "k" / "tune-oneshot").rglob("error.txt"))
    subprocess.run([*cmd, "--name", "u"], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert [r[:4] for r in _rows(tmp_path / "k")] == [r[:4] for r in _rows(tmp_path / "u")]
