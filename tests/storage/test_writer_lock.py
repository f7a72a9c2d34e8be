"""One writer per run: a second writer is refused naming the holder, a dead writer's stale lock is
taken over, two resumes at once train each cell once, and trial ids stay unique across resumes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cellsearch.runner.search import SearchRun
from cellsearch.storage.store import Store
from tests.support.hostile import cli, refused, tiny, tree_digest
from tests.support.paths import REPO


# ---------------------------------------------------------------------- one writer per run
_HOLD = """
import sys, time
from cellsearch.storage.writer_lock import WriterLock
lock = WriterLock(sys.argv[1], "cellsearch search").acquire()
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _holder(run: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(run), str(seconds)], stdout=subprocess.PIPE, text=True,
                            cwd=REPO)
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_trial_ids_are_unique_across_resumes(tmp_path):
    SearchRun(tiny("ids", space="mutation", trials=2), tmp_path).run()
    SearchRun.resume(tmp_path / "ids", trials=4).run()
    SearchRun.resume(tmp_path / "ids", trials=6).run()
    with Store(tmp_path / "ids" / "results.db", readonly=True) as store:
        ids = [r["trial_id"] for r in store.rows() if r["trial_id"] is not None]
    assert len(ids) >= 5 and len(ids) == len(set(ids)), ids
