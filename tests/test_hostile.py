"""Hostile and broken inputs against the CLI: checkpoints, options, run files, concurrent writers.

Each refusal must be exit status 2, exactly one stderr line, no traceback, and the run's files
unchanged (``tree_digest`` before and after). Parser and loader limits are in test_limits.py
and test_fuzz_loading.py, `cells import` in test_cells_import.py, Ray clean-up in
test_ray_cleanup.py: together they cover every class of the hostile-input issue.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from cellsearch.runner.search import SearchRun
from cellsearch.storage.store import Store
from tests.hostile import tiny, cli, refused, tree_digest



@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train") / "t"
    res = cli("train", "lstm", "--steps", "2", "--hidden", "8", "--batch-size", "4", "--out", str(out),
              "--no-progress", "--json")
    assert res.exit_code == 0, res.stderr
    return out / "checkpoint.pt"


# ---------------------------------------------------------------------- 1. checkpoints never run code
class _RunsCommand:
    """Pickles as a call to os.system: what a crafted checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _checkpoint_commands(ckpt: Path, tmp_path: Path) -> list[list[str]]:
    # every CLI path that takes a checkpoint: the file or its directory
    return [["generate", str(ckpt)], ["generate", str(ckpt.parent)],
            ["train", "lstm", "--resume", str(ckpt), "--steps", "3", "--out", str(tmp_path / "o"), "--no-progress"],
            ["train", "lstm", "--resume", str(ckpt.parent), "--steps", "3", "--out", str(tmp_path / "o"),
             "--no-progress"]]


@pytest.mark.parametrize("where", ["top", "nested"])
def test_a_crafted_pickle_in_a_checkpoint_runs_no_code(checkpoint, tmp_path, where):
    marker = tmp_path / "PWNED"
    ckpt = torch.load(checkpoint, weights_only=True)
    evil = _RunsCommand(marker) if where == "top" else dict(ckpt, history=[{"step": _RunsCommand(marker)}])
    path = tmp_path / "evil" / "checkpoint.pt"
    path.parent.mkdir()
    torch.save(evil, path)
    before = tree_digest(tmp_path / "evil")
    for args in _checkpoint_commands(path, tmp_path):
        refused(*args, says=("refused", "posix.system"))
    assert not marker.exists(), "the checkpoint ran code"
    assert tree_digest(tmp_path / "evil") == before
    from cellsearch.errors import ConfigError
    from cellsearch.training.trainer import Trainer
    from cellsearch.training.saved_model import load_model

    with pytest.raises(ConfigError):
        Trainer.from_checkpoint(path)
    with pytest.raises(ConfigError):
        load_model(path)
    assert not marker.exists()


def _damaged_checkpoints(ckpt: dict, good: Path) -> dict[str, object]:
    data = good.read_bytes()
    shapes = dict(ckpt, model={k: v[:1] for k, v in ckpt["model"].items()})
    return {"tensor": torch.zeros(3), "no-cell": {k: v for k, v in ckpt.items() if k != "cell_yaml"},
            "wrong-type": dict(ckpt, step="many"), "shapes": shapes, "version": dict(ckpt, version=99),
            "bad-vocab": dict(ckpt, vocab={"itos": [1, 2]}), "bad-cell": dict(ckpt, cell_yaml="nodes: [[["),
            "garbage": os.urandom(2000), "truncated": data[: len(data) // 2], "empty": b""}


def test_a_checkpoint_that_is_not_ours_is_one_line(checkpoint, tmp_path):
    ckpt = torch.load(checkpoint, weights_only=True)
    for name, content in _damaged_checkpoints(ckpt, checkpoint).items():
        path = tmp_path / name / "checkpoint.pt"
        path.parent.mkdir()
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            torch.save(content, path)
        before = tree_digest(path.parent)
        for args in _checkpoint_commands(path, tmp_path)[::2]:
            refused(*args, says=str(path.parent.name))
        assert tree_digest(path.parent) == before, name


def test_a_missing_checkpoint_is_one_line(tmp_path):
    refused("generate", str(tmp_path / "nothing.pt"), says="no checkpoint")


def test_checkpoints_load_as_data_only(checkpoint):
    from cellsearch.training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)  # what `cellsearch train` writes loads under weights_only
    assert ckpt["step"] == 2 and isinstance(ckpt["cell_yaml"], str)


def test_no_module_deserializes_unsafely():
    """The audit as a test: no torch.load without weights_only=True, no pickle, no unsafe YAML."""
    import re

    root = Path(__file__).resolve().parents[1] / "cellsearch"
    unsafe = re.compile(r"weights_only\s*=\s*False|pickle\.loads?\(|yaml\.load\(|yaml\.unsafe_load|yaml\.full_load")

    def bad(line: str) -> bool:
        return bool(unsafe.search(line)) or ("torch.load(" in line and "weights_only=True" not in line)

    found = [f"{p.relative_to(root)}:{i}" for p in root.rglob("*.py")
             for i, line in enumerate(p.read_text().splitlines(), 1) if bad(line)]
    assert not found, found


# ---------------------------------------------------------------------- 3. options validated before any side effect
@pytest.mark.parametrize("args, says", [
    (["--budget", "0"], "--budget must be at least 1"),
    (["--budget", "-5"], "--budget must be at least 1"),
    (["--minutes", "-1"], "--minutes must be a positive number"),
    (["--minutes", "nan"], "--minutes must be a positive number"),
    (["--minutes", "inf"], "--minutes must be a positive number"),
    (["--hidden", "0"], "--hidden must be at least 1"),
    (["--parallel", "0"], "--parallel"),
    (["--strategy", "annealing"], "unknown strategy"),
    (["--space", "nowhere.yaml"], "no such file"),
    (["--reference", "nosuchcell"], "nosuchcell"),
    (["-o", "population_size=abc"], "population_size"),
    (["--cpus-per-trial", "0"], "--cpus-per-trial"),
    (["--gpus-per-trial", "-1"], "--gpus-per-trial"),
    (["--name", ".."], "--name '..' cannot name a run folder"),
    (["--benchmark", "nowhere.parquet"], "nowhere.parquet"),
])
def test_bad_search_options_are_refused_before_anything_is_written(tmp_path, args, says):
    runs = tmp_path / "runs"
    refused("search", "--runs", str(runs), "--name", "x", "--backend", "local", "--no-progress",
            "--strategy", "random", *args, says=says)
    assert not runs.exists(), "a refused search created its run directory"


def test_runs_pointing_to_a_file_is_one_line(tmp_path):
    runs = tmp_path / "runs"
    runs.write_text("not a folder")
    refused("search", "--runs", str(runs), "--backend", "local", "--no-progress", says="is a file")
    assert runs.read_text() == "not a folder"


def test_a_corrected_search_runs_after_a_refused_one(tmp_path):
    runs = tmp_path / "runs"
    common = ["search", "--runs", str(runs), "--name", "again", "--backend", "local", "--no-progress",
              "--strategy", "random", "--space", "greff", "--trials", "1", "--hidden", "8"]
    refused(*common, "--budget", "0", says="--budget")
    res = cli(*common, "--budget", "2")
    assert res.exit_code == 0, res.stderr
    assert (runs / "again" / "results.db").exists()


def test_leaderboard_top_must_not_be_negative(run_copy):
    before = tree_digest(run_copy)
    refused("leaderboard", str(run_copy), "--top", "-1", says="--top")
    assert tree_digest(run_copy) == before


@pytest.mark.parametrize("args, says", [
    (["search", "--trials", "zero"], "--trials"),
    (["search", "--no-such-option"], "No such option"),
    (["train"], "Missing argument"),
])
def test_usage_errors_are_one_line(args, says):
    refused(*args, says=says)


# ---------------------------------------------------------------------- 4. run-directory integrity
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


# ---------------------------------------------------------------------- 5. one writer per run
_HOLD = """
import sys, time
from cellsearch.storage.writer_lock import WriterLock
lock = WriterLock(sys.argv[1], "cellsearch search").acquire()
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _holder(run: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(run), str(seconds)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_writer_is_refused_naming_the_holder(run_copy, tmp_path):
    proc = _holder(run_copy, 60)
    try:
        before = tree_digest(run_copy)
        refused("resume", str(run_copy), "--trials", "5", says=(f"pid {proc.pid}", "another process"))
        refused("evaluate", str(run_copy), "--top", "1", "--seeds", "1", "--budget", "2", "--backend", "local",
                "--no-progress", says=f"pid {proc.pid}")
        assert tree_digest(run_copy) == before
        assert cli("leaderboard", str(run_copy)).exit_code == 0  # readers are not writers
    finally:
        proc.kill()
        proc.wait()


def test_a_stale_lock_of_a_killed_writer_is_taken_over(run_copy):
    proc = _holder(run_copy, 60)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    res = cli("resume", str(run_copy), "--trials", "4", "--no-progress")
    assert res.exit_code == 0, res.stderr
    assert f"took over the lock of pid {proc.pid}" in res.stderr
    assert json.loads((run_copy / ".writer.json").read_text())["released"] is True


def test_two_resumes_at_once_train_each_cell_once(tmp_path):
    """The race of the issue: two `resume`s of one run at once; the second is refused while the first
    writes, and no cell is trained twice."""
    SearchRun(tiny("race", space="mutation", trials=1, steps=20), tmp_path).run()
    run = tmp_path / "race"
    cmd = [str(Path(sys.executable).parent / "cellsearch"), "resume", str(run), "--trials", "500", "--no-progress"]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        holder = run / ".writer.json"
        while time.time() < deadline:  # until the first holds the lock
            if holder.exists() and json.loads(holder.read_text() or "{}").get("pid") == first.pid:
                break
            time.sleep(0.05)
        second = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120)
        assert first.poll() is None, "the first resume ended before the second started: the race was not run"
        deadline = time.time() + 180  # let the first train a cell of its own (slow on a loaded machine)
        while time.time() < deadline and first.poll() is None and len(_trained(run)) < 2:
            time.sleep(0.5)
    finally:
        first.send_signal(signal.SIGINT)  # a Ctrl-C: the first stops cleanly, keeping what it trained
        first.wait(timeout=120)
    assert second.returncode == 2 and f"pid {first.pid}" in second.stderr, second.stderr
    assert second.stderr.count("\n") == 1
    trained = _trained(run)
    assert len(trained) >= 2 and len(trained) == len(set(trained)), "a cell was trained twice"


def _trained(run: Path) -> list[str]:
    """Hashes of the cells a run trained (not reused), read as a reader would."""
    with Store(run / "results.db", readonly=True) as store:
        return [r["hash"] for r in store.rows() if r["reused_from"] is None]


def test_trial_ids_are_unique_across_resumes(tmp_path):
    SearchRun(tiny("ids", space="mutation", trials=2), tmp_path).run()
    SearchRun.resume(tmp_path / "ids", trials=4).run()
    SearchRun.resume(tmp_path / "ids", trials=6).run()
    with Store(tmp_path / "ids" / "results.db", readonly=True) as store:
        ids = [r["trial_id"] for r in store.rows() if r["trial_id"] is not None]
    assert len(ids) >= 5 and len(ids) == len(set(ids)), ids


def test_a_table_output_in_the_way_is_refused(run_copy, tmp_path):
    (tmp_path / "folder.csv").mkdir()
    refused("runs", "export", str(run_copy), "-o", str(tmp_path / "folder.csv"), says="is a directory")
    (tmp_path / "file").write_text("keep me")
    refused("runs", "export", str(run_copy), "-o", str(tmp_path / "file" / "t.csv"), says="is a file")
    assert (tmp_path / "file").read_text() == "keep me"
    res = cli("runs", "export", str(run_copy), "-o", str(tmp_path / "t.csv"))
    assert res.exit_code == 0, res.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []  # written whole, then renamed


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".json"])
def test_a_garbage_replay_table_is_refused_before_the_run_exists(tmp_path, suffix):
    table = tmp_path / f"table{suffix}"
    table.write_bytes(b"\x00\xff garbage \n" * 50 + os.urandom(500))
    runs = tmp_path / "runs"
    refused("search", "--runs", str(runs), "--benchmark", str(table), "--no-progress", says=str(table))
    assert not runs.exists()
