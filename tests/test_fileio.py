"""Hostile files against the CLI: planted links, special files, a full disk, outputs in the way.

The second round of hostile inputs (issue "Hostile inputs, second round"), the parts about
files: every write is atomic and never follows a link planted beside its target, a run file
that is itself a link is refused, what is not a regular file is never read, a full disk is one
line that says what is kept, and an output that cannot be written is refused before the work.
Each refusal is exit status 2, one stderr line, no traceback (``refused``), under a memory cap
and a time limit, with the files inside the run and outside it hashed before and after
(``unchanged``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path

import pytest
import torch

from cellsearch.storage.store import Store
from tests.support.hostile import cli, refused, tree_digest, unchanged
from tests.support.paths import REPO

pytestmark = pytest.mark.timeout(60)

TRAIN = ["--steps", "2", "--hidden", "8", "--batch-size", "4", "--no-progress", "--json"]


@pytest.fixture
def outside(tmp_path) -> Path:
    """A folder outside every run, holding a file that planted links point at."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "precious.txt").write_text("not cellsearch's to write\n")
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train") / "t"
    res = cli("train", "lstm", "--out", str(out), *TRAIN)
    assert res.exit_code == 0, res.stderr
    return out / "checkpoint.pt"


@pytest.fixture
def training(checkpoint, tmp_path) -> Path:
    """A private copy of a training's output directory (checkpoint.pt, metrics.json)."""
    return Path(shutil.copytree(checkpoint.parent, tmp_path / "t"))


def _no_temporary_files(*folders: Path) -> None:
    left = [p for f in folders for p in f.rglob("*") if p.name.endswith(".tmp") and not p.is_symlink()]
    assert not left, f"temporary files left behind: {left}"


@contextlib.contextmanager
def disk_full(monkeypatch, root: Path, names: tuple[str, ...] = ()):
    """The file system under ``root`` is full: ``write(2)`` of a file below it fails with ENOSPC, as
    a full disk makes it fail (only for the temporary files of ``names``, when given: a disk that
    fills up at that write). SQLite and libraries that write by path are not affected."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd to tell which file a write goes to")
    real = os.write
    root_text = str(root.resolve()) + os.sep

    def write(fd, data):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if target.startswith(root_text) and (not names or any(Path(target).name.startswith(f".{n}.") for n in names)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)
    try:
        yield
    finally:
        monkeypatch.setattr(os, "write", real)


# ---------------------------------------------------------------------- planted links
PLANTED = ("best.yaml.tmp", "state.json.tmp", ".writer.json.tmp", "config.json.tmp")  # the old fixed temp names


def test_links_planted_beside_run_files_are_never_followed(run_copy, outside):
    """Probe: planted symlinks `best.yaml.tmp`, `state.json.tmp`, `.writer.json.tmp` in runs/NAME overwrite
    an outside file on `resume`."""
    for name in PLANTED:
        (run_copy / name).symlink_to(outside / "precious.txt")
    with unchanged(outside):
        res = cli("resume", str(run_copy), "--trials", "4", "--no-progress")
    assert res.exit_code == 0, res.stderr
    for name in PLANTED:  # left alone, neither followed nor replaced
        assert os.readlink(run_copy / name) == str(outside / "precious.txt"), name
    with Store(run_copy / "results.db", readonly=True) as store:
        assert store.count() >= 4  # the resume did its work, writing every run file
    _no_temporary_files(run_copy)


def test_a_link_planted_beside_a_checkpoint_is_never_followed(training, outside):
    """Probe: a planted symlink `checkpoint.pt.tmp` in a training's --out overwrites an outside file."""
    (training / "checkpoint.pt.tmp").symlink_to(outside / "precious.txt")
    (training / "metrics.json.tmp").symlink_to(outside / "precious.txt")
    before = (training / "checkpoint.pt").read_bytes()
    with unchanged(outside):
        res = cli("train", "lstm", "--resume", str(training), "--out", str(training), *TRAIN[2:], "--steps", "3")
    assert res.exit_code == 0, res.stderr
    assert (training / "checkpoint.pt").read_bytes() != before  # written, as a new file
    assert (training / "checkpoint.pt.tmp").is_symlink()
    _no_temporary_files(training)


@pytest.mark.parametrize("name", ["config.json", "state.json", "best.yaml", "results.db-journal"])
def test_a_run_file_that_is_a_link_is_refused(run_copy, outside, name):
    """Probe: a run file that is itself a symlink (pointing outside the run) is written through."""
    target = outside / name
    if (run_copy / name).exists():
        shutil.copy(run_copy / name, target)
        (run_copy / name).unlink()
    (run_copy / name).symlink_to(target)
    with unchanged(run_copy, outside):
        refused("resume", str(run_copy), "--trials", "5", "--no-progress", says=(name, "symbolic link"))


def test_a_results_db_linked_into_another_run_is_refused(run_copy, tmp_path):
    """Probe: `results.db` pointing into another run: trials were silently added to that other run."""
    other = Path(shutil.copytree(run_copy, tmp_path / "other"))
    (run_copy / "results.db").unlink()
    (run_copy / "results.db").symlink_to(other / "results.db")
    with unchanged(run_copy, other):
        refused("resume", str(run_copy), "--trials", "6", "--no-progress", says=("results.db", "symbolic link"))
        refused("leaderboard", str(run_copy), says="symbolic link")


def test_a_lock_file_that_is_a_link_is_refused(run_copy, outside):
    """Probe: `.lock` as a symlink: a 72-line ELOOP traceback."""
    (run_copy / ".lock").unlink(missing_ok=True)
    (run_copy / ".lock").symlink_to(outside / "precious.txt")
    with unchanged(run_copy, outside):
        refused("resume", str(run_copy), "--trials", "5", "--no-progress", says=(".lock", "symbolic link"))
    assert (run_copy / ".lock").is_symlink()


# ---------------------------------------------------------------------- special files
def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("command", ["cells check", "spaces check", "search --space", "train --recipe"])
def test_a_fifo_as_an_input_file_is_refused_without_blocking(tmp_path, command):
    """Probe: a FIFO given as a cell, space or recipe file hangs `cells check`, `spaces check`,
    `search --space`, `train --recipe`."""
    fifo = _fifo(tmp_path / "input.yaml")
    runs = tmp_path / "runs"
    args = {"cells check": ["cells", "check", str(fifo)], "spaces check": ["spaces", "check", str(fifo)],
            "search --space": ["search", "--space", str(fifo), "--runs", str(runs), "--backend", "local",
                               "--no-progress"],
            "train --recipe": ["train", "lstm", "--recipe", str(fifo), "--out", str(tmp_path / "t"),
                               "--no-progress"]}[command]
    with unchanged(tmp_path):
        refused(*args, says=("input.yaml", "not a regular file"))
    assert not runs.exists()


@pytest.mark.parametrize("name", ["config.json", "state.json"])
@pytest.mark.parametrize("kind", ["link to /dev/zero", "fifo"])
def test_an_endless_run_file_is_refused_without_reading_it(run_copy, name, kind):
    """Probe: `config.json` or `state.json` linked to `/dev/zero` reads until MemoryError."""
    if kind == "link to /dev/zero" and not os.path.exists("/dev/zero"):
        pytest.skip("needs /dev/zero")
    (run_copy / name).unlink()
    if kind == "fifo":
        _fifo(run_copy / name)
    else:
        (run_copy / name).symlink_to("/dev/zero")
    with unchanged(run_copy):
        refused("resume", str(run_copy), "--trials", "5", "--no-progress",
                says=(name, "symbolic link" if kind != "fifo" else "not a regular file"))


def test_a_checkpoint_that_is_not_a_regular_file_is_refused(tmp_path):
    """Probe: a FIFO as a checkpoint (`torch.load` of a path would block on it)."""
    fifo = _fifo(tmp_path / "checkpoint.pt")
    refused("generate", str(fifo), says="not a regular file")
    refused("train", "lstm", "--resume", str(fifo), "--out", str(tmp_path / "o"), "--no-progress",
            says="not a regular file")
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------- a full disk
def test_a_full_disk_stops_a_search_in_one_line_and_resume_goes_on(tmp_path, outside, monkeypatch):
    """Probe: a full disk under --runs: `search` ends with 94 stderr lines and three chained tracebacks."""
    runs = tmp_path / "runs"
    args = ["--runs", str(runs), "--name", "full", "--backend", "local", "--no-progress", "--strategy", "random",
            "--space", "greff", "--trials", "3", "--budget", "2", "--hidden", "8"]
    with unchanged(outside), disk_full(monkeypatch, runs, names=("state.json",)):  # full after the first trial
        line = refused("search", *args, says=("no space left on", "state.json", "free space and run",
                                              f"cellsearch resume {runs / 'full'}"))
    assert "Traceback" not in line
    run = runs / "full"
    with Store(run / "results.db", readonly=True) as store:
        first = [r["hash"] for r in store.rows()]
    assert first, "the trial finished before the disk filled up is kept"
    _no_temporary_files(run)
    res = cli("resume", str(run), "--no-progress")  # space freed: the search goes on from where it stopped
    assert res.exit_code == 0, res.stderr
    with Store(run / "results.db", readonly=True) as store:
        rows = list(store.rows())
    trained = [r["hash"] for r in rows if r["reused_from"] is None]
    assert len(trained) == len(set(trained)), "a cell was trained again after the resume"
    assert [r["hash"] for r in rows][: len(first)] == first


def test_a_full_disk_stops_a_one_shot_search_in_one_line_with_the_resume_advice(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    args = ["--runs", str(runs), "--name", "full", "--backend", "local", "--no-progress", "--strategy", "rsws",
            "--space", "dag4", "--tasks", "arith", "--trials", "1", "-o", "candidates=2", "--budget", "2",
            "--hidden", "8"]
    with disk_full(monkeypatch, runs, names=("oneshot.pt",)):  # full at the supernet's first checkpoint
        line = refused("search", *args, says=("no space left on", "oneshot.pt", "free space and run",
                                              f"cellsearch resume {runs / 'full'}"))
    assert "Traceback" not in line
    _no_temporary_files(runs / "full")
    res = cli("resume", str(runs / "full"), "--no-progress")
    assert res.exit_code == 0, res.stderr
    with Store(runs / "full" / "results.db", readonly=True) as store:
        assert len(list(store.rows())) == 1


def test_a_full_disk_when_a_new_search_starts_leaves_nothing(tmp_path, monkeypatch):
    """Probe: a full disk under --runs before the first trial: nothing half-made is left to trip the next search."""
    runs = tmp_path / "runs"
    args = ["--runs", str(runs), "--name", "full", "--backend", "local", "--no-progress", "--strategy", "random",
            "--space", "greff", "--trials", "1", "--budget", "2", "--hidden", "8"]
    with disk_full(monkeypatch, runs):
        refused("search", *args, says=("no space left on", "start the search again"))
    assert tree_digest(runs) == {}
    res = cli("search", *args)
    assert res.exit_code == 0, res.stderr


def test_a_full_disk_keeps_the_last_good_checkpoint(training, monkeypatch):
    """Probe: a full disk: `train` loses its training in `torch.save`."""
    checkpoint = training / "checkpoint.pt"
    with unchanged(training), disk_full(monkeypatch, training, names=("checkpoint.pt",)):
        refused("train", "lstm", "--resume", str(checkpoint), "--out", str(training), *TRAIN[2:], "--steps", "3",
                says=("no space left on", "the last good checkpoint", str(checkpoint), "--resume"))
    _no_temporary_files(training)
    res = cli("generate", str(checkpoint), "--prompt", "1+1=", "--length", "3")  # whole, and still loads
    assert res.exit_code == 0, res.stderr


def test_a_full_disk_during_an_export_leaves_nothing_behind(tmp_path, monkeypatch):
    """Probe: a full disk: `export` raises ENOSPC (and leaves a half-written module behind)."""
    out = tmp_path / "export"
    out.mkdir()
    (out / "cell.py").write_text("# an earlier export, kept\n")
    real = torch.save

    def save(obj, f, *a, **kw):  # the weights do not fit on the disk any more
        if isinstance(f, (str, os.PathLike)) and str(f).startswith(str(out)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", save)
    with unchanged(out):
        refused("export", "lstm", "--format", "py", "-o", str(out / "cell.py"), "-H", "8", "-I", "8",
                says=("no space left on", "cell.py"))
    assert sorted(p.name for p in out.iterdir()) == ["cell.py"]


def test_a_full_disk_under_a_ray_search_stops_it_once(tmp_path):
    """Probe: a full disk under a Ray search: Tune logged the searcher's traceback for every trial and went on.
    The searcher keeps the first failure, asks for no new trial, and the driver raises it after Tune ends."""
    pytest.importorskip("ray")
    from ray.tune.search import Searcher

    from cellsearch.fileio import DiskFullError, write_error
    from cellsearch.library import get_cell
    from cellsearch.runner.trial import trial_spec
    from cellsearch.runner.tune import SourceSearcher, search_trials
    from cellsearch.spaces.base import Candidate
    from cellsearch.strategies.base import Stage

    spec = trial_spec(Candidate(get_cell("gru")), [Stage("arith")], steps=2)

    class FullSource:
        cfg = None
        completed = 0

        def next_trial(self, trial_id):
            return spec

        def complete(self, trial_id, outcome, node=None):
            self.completed += 1
            raise write_error(tmp_path / "results.db", OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))

        def save(self):
            raise AssertionError("saved after the failure")

    source = FullSource()
    searcher = SourceSearcher(source, search_trials())
    assert searcher.suggest("t1")["candidate"]["hash"] == spec.hash
    result = {"final": True, "outcome": '{"status": "ok", "score": 1.0}', "node": "n"}
    searcher.on_trial_complete("t1", result)  # (Tune would log a traceback for an exception here)
    searcher.on_trial_complete("t2", result)
    searcher.save("checkpoint")
    assert source.completed == 1 and searcher.suggest("t3") == Searcher.FINISHED
    with pytest.raises(DiskFullError, match="no space left on"):
        searcher.raise_failure()


def test_a_full_disk_under_any_other_output_is_one_line(run_copy, tmp_path, monkeypatch):
    """Probe: a full disk under an output written by a library (a report's tables): one line, not a traceback."""
    import pandas as pd

    def to_csv(self, path, *a, **kw):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv)
    with unchanged(run_copy):
        refused("analyze", "report", str(run_copy), "-o", str(tmp_path / "report"), says=("no space left on", ".csv"))


def test_sqlite_reports_a_full_disk_as_one(tmp_path):
    """Probe: a full disk under results.db: SQLite's 'database or disk is full' is the full-disk error,
    not 'damaged'."""
    from cellsearch.fileio import DiskFullError

    with Store(tmp_path / "results.db") as store:
        store.conn.execute("PRAGMA max_page_count = 8")  # (SQLite's own way of running out of room)
        with pytest.raises(DiskFullError, match="no space left on"):
            for i in range(1000):
                store.set_meta(f"k{i}", "x" * 1000)
    with Store(tmp_path / "results.db", readonly=True) as store:
        assert store.get_meta("k0") == "x" * 1000  # what was committed before is kept


# ---------------------------------------------------------------------- outputs
def test_train_out_at_a_file_is_refused_before_training(tmp_path, monkeypatch):
    """Probe: `train --out` pointing at an existing file trains first and fails at the save."""
    from cellsearch.training.trainer import Trainer

    def no_training(*a, **kw):
        raise AssertionError("trained before checking the output")

    monkeypatch.setattr(Trainer, "train_step", no_training)
    (tmp_path / "afile").write_text("keep me\n")
    with unchanged(tmp_path):
        refused("train", "lstm", "--out", str(tmp_path / "afile"), *TRAIN, says=("--out", "is a file"))
        refused("train", "lstm", "--out", str(tmp_path / "afile" / "sub"), *TRAIN, says=("is a file", "--out"))
        refused("train", "lstm", "--seeds", "0,1", "--out", str(tmp_path / "afile"), *TRAIN, says="is a file")


def test_train_out_holding_a_linked_checkpoint_is_refused_before_training(tmp_path, outside, monkeypatch):
    """Probe: `train --out` whose checkpoint.pt is a link: refused before training, the outside file unchanged."""
    from cellsearch.training.trainer import Trainer

    monkeypatch.setattr(Trainer, "train_step", lambda *a, **kw: pytest.fail("trained before checking the output"))
    out = tmp_path / "t"
    out.mkdir()
    (out / "checkpoint.pt").symlink_to(outside / "precious.txt")
    with unchanged(out, outside):
        refused("train", "lstm", "--out", str(out), *TRAIN, says=("checkpoint.pt", "symbolic link"))


@pytest.fixture(scope="module")
def attention_checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("attention") / "t"
    res = cli("train", "attn-gru", "--task", "copy", "--steps", "1", "--hidden", "8", "--batch-size", "4",
              "--out", str(out), "--no-progress", "--json")
    assert res.exit_code == 0, res.stderr
    return out / "checkpoint.pt"


def test_an_attention_map_that_cannot_be_written_is_one_line(attention_checkpoint, tmp_path, outside):
    """Probe: `generate --attention-map` to an unwritable path or `/dev/full` is a traceback."""
    if os.path.exists("/dev/full"):
        (tmp_path / "full.png").symlink_to("/dev/full")  # (the suffix the option asks for, and a device)
        refused("generate", str(attention_checkpoint), "--prompt", "ab", "--attention-map", str(tmp_path / "full.png"),
                says=("full.png", "symbolic link"))
    (tmp_path / "out.png").symlink_to(outside / "precious.txt")
    with unchanged(outside):
        refused("generate", str(attention_checkpoint), "--prompt", "ab", "--attention-map", str(tmp_path / "out.png"),
                says="symbolic link")
    (tmp_path / "a-dir.png").mkdir()
    refused("generate", str(attention_checkpoint), "--prompt", "ab", "--attention-map", str(tmp_path / "a-dir.png"),
            says="is a directory")
    if os.path.isdir("/proc/self"):  # a folder nobody may create files in, root included
        refused("generate", str(attention_checkpoint), "--prompt", "ab", "--attention-map", "/proc/self/map.png",
                says=("cannot write", "permission denied"))
    if os.geteuid() != 0:  # (root writes anywhere)
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        refused("generate", str(attention_checkpoint), "--prompt", "ab", "--attention-map", str(locked / "m.png"),
                says="permission denied")
    res = cli("generate", str(attention_checkpoint), "--prompt", "ab", "--attention-map", str(tmp_path / "m.png"))
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
    _no_temporary_files(tmp_path)


def test_a_failed_export_leaves_nothing_behind(tmp_path, monkeypatch):
    """Probe: a failed export leaves a broken half-written module and its weights behind."""
    from cellsearch.export import ExportError, formats

    def failed_check(*a, **kw):  # the written module does not match the cell: the export fails at its check
        raise ExportError("the exported module does not match the compiled cell")

    monkeypatch.setattr(formats, "check_python", failed_check)
    out = tmp_path / "export"
    refused("export", "lstm", "--format", "py", "-o", str(out / "cell.py"), "-H", "8", "-I", "8",
            says="does not match")
    assert not out.exists() or list(out.iterdir()) == []


def test_an_export_output_in_the_way_is_refused_before_the_work(tmp_path, outside):
    """Probe: an export whose output (or its weights, card, drawing) is a link or a device is refused first."""
    out = tmp_path / "export"
    out.mkdir()
    (out / "cell.pt").symlink_to(outside / "precious.txt")  # the py export's weights file
    with unchanged(out, outside):
        refused("export", "lstm", "--format", "py", "-o", str(out / "cell.py"), "-H", "8", "-I", "8",
                says=("cell.pt", "symbolic link"))
    if os.path.exists("/dev/full"):
        refused("export", "lstm", "--format", "torchscript", "-o", "/dev/full", "-H", "8", "-I", "8",
                says="not a regular file")


# ---------------------------------------------------------------------- one atomic write
def test_one_atomic_write_for_the_whole_package():
    """Probe: nine copies of the atomic write, each with a predictable `.tmp` name: one helper
    (``cellsearch.fileio``) replaces files, nothing else in the package calls os.replace."""
    root = REPO / "cellsearch"
    found = [str(p.relative_to(root)) for p in root.rglob("*.py") if "os.replace(" in p.read_text()]
    assert found == ["fileio.py"], found


def test_the_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    """Probe: an atomic write that fails (its writer raises) leaves the old file and no temporary file."""
    from cellsearch.fileio import atomic_write

    target = tmp_path / "f.json"
    atomic_write(target, '{"old": true}')
    os.chmod(target, 0o640)

    def broken(f):
        f.write(b'{"new": ')
        raise ValueError("the writer broke")

    with pytest.raises(ValueError, match="writer broke"):
        atomic_write(target, broken)
    assert target.read_text() == '{"old": true}'
    atomic_write(target, lambda f: f.write(b'{"new": true}'))
    assert target.read_text() == '{"new": true}' and (os.stat(target).st_mode & 0o777) == 0o640  # mode kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]


# ---------------------------------------------------------------------- reports and drawings
def test_reports_and_drawings_never_write_through_a_planted_link(run_copy, outside, tmp_path):
    """Probe (review of this change): `analyze report`, `cells draw`, and the reports that
    `evaluate`/`analyze gates` write into the run folder wrote with plain write_text/to_csv and so
    followed a link planted at the target, overwriting the outside file with exit 0."""
    precious = outside / "precious.txt"
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.md").symlink_to(precious)
    drawing = tmp_path / "g.dot"
    drawing.symlink_to(precious)
    with unchanged(outside, run_copy):
        refused("analyze", "report", str(run_copy), "-o", str(report), says=("report.md", "symbolic link"))
        refused("cells", "draw", "lstm", "-o", str(drawing), says=("g.dot", "symbolic link"))
    assert os.readlink(report / "report.md") == str(precious)


def test_every_file_the_package_writes_goes_through_fileio():
    """Probe (review of this change): the writes that bypassed the one helper. Nothing outside
    ``cellsearch/fileio.py`` writes a path itself (write_text/write_bytes, DataFrame.to_csv/to_parquet,
    Figure.savefig with a path), except the exporter, which writes into the private folder of
    ``fileio.staged``."""
    import re

    root = REPO / "cellsearch"
    direct = re.compile(r"\.(write_text|write_bytes)\(|\.(to_csv|to_parquet|savefig)\((?!f\b)")
    found = [f"{p.relative_to(root)}:{i}" for p in root.rglob("*.py")
             if p.name != "fileio.py" and p.parent.name != "export"
             for i, line in enumerate(p.read_text().splitlines(), 1) if direct.search(line)]
    assert not found, found


def test_staged_files_stand_or_fall_together(tmp_path, outside):
    """Review of this change: a target that became a link while the block ran was refused only
    after the targets before it had been replaced; a file the block never wrote was blamed on
    another; targets in two folders shared one private copy."""
    from cellsearch.fileio import FileRefusedError, WriteError, staged

    a, b = tmp_path / "m.py", tmp_path / "m.pt"
    a.write_text("old a")
    with pytest.raises(FileRefusedError):
        with staged(a, b) as (sa, sb):
            sa.write_text("new a")
            sb.write_text("new b")
            b.symlink_to(outside / "precious.txt")
    assert a.read_text() == "old a" and os.readlink(b) == str(outside / "precious.txt")
    b.unlink()
    with pytest.raises(WriteError, match="m.pt"):
        with staged(a, b) as (sa, sb):
            sa.write_text("new a")
    assert a.read_text() == "old a" and not b.exists()
    with pytest.raises(ValueError, match="distinct names in one folder"):
        with staged(a, tmp_path / "sub" / "m.py"):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.py", "outside"]  # no private folder left
