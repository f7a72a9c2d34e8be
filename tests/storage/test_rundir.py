"""A run directory's integrity: a damaged results.db, config.json or state.json is one line and
never changed, readers open the database read-only, resume refuses what is not a run, and a run
resumes from elsewhere. The ``run_copy`` fixture (tests/conftest.py) is a finished run to damage.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import textwrap
from pathlib import Path

import pytest

from cellsearch.storage.store import Store
from tests.support.hostile import cli, refused, tree_digest


# ---------------------------------------------------------------------- run-directory integrity
def _read_commands(run: Path, tmp_path: Path) -> list[list[str]]:
    """Commands that only read a run."""
    return [["leaderboard", str(run)], ["leaderboard", str(run), "--json"],
            ["export", str(run), "--format", "py", "-o", str(tmp_path / "cell.py")],
            ["runs", "export", str(run), "-o", str(tmp_path / "table.csv")],
            ["analyze", "report", str(run), "-o", str(tmp_path / "report")]]


def _damage(db: Path, how: str) -> None:
    data = db.read_bytes()
    if how == "truncated":
        db.write_bytes(data[: len(data) // 3])
    elif how == "corrupted":
        db.write_bytes(data[:100] + os.urandom(len(data) - 100))
    elif how == "empty":
        db.write_bytes(b"")
    elif how == "garbage":
        db.write_bytes(os.urandom(4096))
    elif how == "foreign":
        db.unlink()
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE photos (id INTEGER, path TEXT)")
            conn.execute("INSERT INTO photos VALUES (1, 'cat.jpg')")
        conn.close()
    else:  # pragma: no cover
        raise ValueError(how)


@pytest.mark.parametrize("how", ["truncated", "corrupted", "empty", "garbage", "foreign"])
def test_a_damaged_results_db_is_one_line_and_never_changed(run_copy, tmp_path, how):
    _damage(run_copy / "results.db", how)
    before = tree_digest(run_copy)
    for args in _read_commands(run_copy, tmp_path):
        refused(*args, says="results.db")
    refused("resume", str(run_copy), "--trials", "5", says="results.db")
    refused("evaluate", str(run_copy), "--top", "1", "--seeds", "1", "--budget", "2", "--backend", "local",
            "--no-progress", says="results.db")
    assert tree_digest(run_copy) == before
    assert not (tmp_path / "cell.py").exists() and not (tmp_path / "table.csv").exists()


def test_readers_open_the_database_read_only(run_copy, tmp_path):
    db = run_copy / "results.db"
    before = tree_digest(run_copy)
    for args in _read_commands(run_copy, tmp_path):
        res = cli(*args)
        assert res.exit_code == 0, (args, res.stderr)
    assert tree_digest(run_copy) == before
    with Store(db, readonly=True) as store, pytest.raises(RuntimeError, match="read-only"):
        store.set_meta("x", 1)


def test_an_empty_results_file_is_not_given_a_schema(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "results.db").write_bytes(b"")
    refused("leaderboard", str(run), says="empty")
    assert (run / "results.db").read_bytes() == b""


@pytest.mark.parametrize("content, says", [
    ("{not json", "not JSON"),
    ("[1, 2, 3]", "not an object"),
    ('{"trials": "many"}', "trials"),
    ('{"strategy": 5}', "strategy"),
    ('{"colour": "blue"}', "colour"),
    # (resume has no --minutes: the setting from config.json keeps its name)
    ('{"minutes": "nan", "steps": null}', "minutes must be a positive number"),
])
def test_a_broken_config_json_names_the_file(run_copy, content, says):
    (run_copy / "config.json").write_text(content)
    before = tree_digest(run_copy)
    refused("resume", str(run_copy), says=("config.json", says) if "minutes" not in says else says)
    assert tree_digest(run_copy) == before


@pytest.mark.parametrize("content, says", [
    ("{oops", "not JSON"),
    ('"state"', "not an object"),
    ('{"version": 1}', "needs 'strategy' and 'last_row'"),
    ('{"version": 7, "strategy": {}, "last_row": 0}', "version 7"),
    ('{"version": 1, "strategy": {"rng": "x"}, "last_row": 0}', "state.json"),
    ('{"version": 1, "strategy": [], "last_row": "x"}', "needs 'strategy' and 'last_row'"),
])
def test_a_broken_state_json_names_the_file_and_what_to_do(run_copy, content, says):
    (run_copy / "state.json").write_text(content)
    before = tree_digest(run_copy)
    line = refused("resume", str(run_copy), "--trials", "5", says=("state.json", says))
    assert "move it away" in line
    assert tree_digest(run_copy) == before


def test_resume_refuses_a_run_whose_results_were_deleted(run_copy):
    (run_copy / "results.db").unlink()
    before = tree_digest(run_copy)
    refused("resume", str(run_copy), says=("no results.db", "cannot be resumed"))
    assert tree_digest(run_copy) == before  # best.yaml in particular


def test_resume_refuses_what_is_not_a_run(tmp_path):
    refused("resume", str(tmp_path / "nothing"), says="no such run directory")
    (tmp_path / "file").write_text("x")
    refused("resume", str(tmp_path / "file"), says="not a directory")
    refused("resume", str(tmp_path), says="no config.json")


def test_a_search_over_a_relative_space_resumes_from_elsewhere(tmp_path, monkeypatch):
    work = tmp_path / "project"
    (work / "cells").mkdir(parents=True)
    (work / "cells" / "mine.yaml").write_text(textwrap.dedent("""\
        name: mine
        states: [h]
        nodes:
          h: tanh(linear(x, h_prev))
        """))
    (work / "space.yaml").write_text("kind: finite\ncells: [cells/mine.yaml, gru, lstm]\n")
    monkeypatch.chdir(work)
    res = cli("search", "--space", "space.yaml", "--strategy", "random", "--trials", "1", "--budget", "2",
              "--hidden", "8", "--backend", "local", "--name", "rel", "--runs", "runs", "--no-progress")
    assert res.exit_code == 0, res.stderr
    run = work / "runs" / "rel"
    assert (run / "space" / "space.yaml").exists()
    # the user moves on: the space and its cell change or vanish, and we resume from another folder
    shutil.rmtree(work / "cells")
    (work / "space.yaml").unlink()
    monkeypatch.chdir(tmp_path)
    res = cli("resume", str(run), "--trials", "3", "--no-progress")
    assert res.exit_code == 0, res.stderr
    with Store(run / "results.db", readonly=True) as store:
        assert store.count() >= 3


# ---------------------------------------------------------------------- a new run's directory
@pytest.mark.parametrize("strategy", ["random", "rsws"])
def test_a_new_search_is_refused_where_a_file_or_a_run_is_in_the_way(tmp_path, strategy):
    """One check for every search (``rundir.check_new_run``): a parent that is a file, a run directory
    that is a file, one that holds a run."""
    args = ["search", "--strategy", strategy, "--space", "dag4", "--tasks", "arith", "--budget", "2", "--trials",
            "1", "--hidden", "8", "--backend", "local", "--no-progress"]
    if strategy == "rsws":
        args += ["-o", "candidates=1"]
    (tmp_path / "file").write_text("")
    refused(*args, "--runs", str(tmp_path / "file" / "runs"), "--name", "r", says="is a file, not a directory of runs")
    refused(*args, "--runs", str(tmp_path), "--name", "file", says="is a file, not a run directory")
    (tmp_path / "held").mkdir()
    Store(tmp_path / "held" / "results.db").close()
    refused(*args, "--runs", str(tmp_path), "--name", "held", says=("already holds a run", "cellsearch resume"))
