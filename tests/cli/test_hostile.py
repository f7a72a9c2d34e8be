"""Hostile and broken options against the CLI: every one is refused before anything is written.

Each refusal must be exit status 2, exactly one stderr line, no traceback, and the run's files
unchanged (``tree_digest`` before and after). The other classes of the hostile-input issue:
checkpoints in training/test_checkpoint.py, run files and concurrent writers in
storage/test_rundir.py and storage/test_writer_lock.py, replay tables in storage/test_tables.py,
parser and loader limits in test_limits.py and dsl/test_fuzz_loading.py, sizes in
cli/test_hostile_bounds.py, files in test_fileio.py, `cells import` in cli/test_cells_import.py,
Ray clean-up in runner/test_ray_cleanup.py.
"""

from __future__ import annotations

import pytest

from tests.support.hostile import cli, refused, tree_digest, unchanged


# ---------------------------------------------------------------------- options validated before any side effect
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


# ---------------------------------------------------------------------- evaluate (issue 24)
def test_evaluate_with_an_unknown_baseline_is_one_line(tmp_path):
    """Probe: `evaluate --baselines nosuchcell` printed a "protocol ..." line before the error."""
    import pandas as pd

    from cellsearch.dsl.hashing import canonical_hash
    from cellsearch.library import resolve_cell

    table = tmp_path / "t.csv"  # a replayed search: a real run directory, no training
    pd.DataFrame({"hash": [canonical_hash(resolve_cell(c)) for c in ("lstm", "gru")], "score": [0.5, 0.4]}).to_csv(
        table, index=False)
    out = cli("search", "--space", "greff", "--strategy", "random", "--trials", "3", "--budget", "2",
              "--benchmark", str(table), "--runs", str(tmp_path / "runs"), "--name", "r", "--no-progress")
    assert out.exit_code == 0, out.stderr
    run = tmp_path / "runs" / "r"
    with unchanged(tmp_path):
        refused("evaluate", str(run), "--baselines", "lstm,nosuchcell", "--backend", "local", "--no-progress",
                says="nosuchcell")
