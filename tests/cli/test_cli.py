"""End-to-end tests of the `cellsearch` command line (through typer's CliRunner)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cellsearch.cli import app
from cellsearch.library import builtin_names
from tests.support.paths import SHARED

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def test_cells_list_shows_every_builtin():
    res = run("cells", "list", "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["name"] for r in rows] == builtin_names()
    assert all(r["description"] and r["source"] for r in rows)
    assert run("cells", "list").exit_code == 0


def test_cells_info_json_has_the_documented_keys():
    res = run("cells", "info", "lstm", "--json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    for key in ("name", "hash", "states", "nodes", "params"):
        assert key in info
    assert info["states"] == ["h", "c"]
    assert info["params"] == 4 * (128 * 128 * 2 + 128)
    res = run("cells", "info", "gru", "--input-size", "32", "--hidden-size", "64", "--json")
    assert json.loads(res.stdout)["params"] == 3 * (64 * 32 + 64 * 64) + 4 * 64


def test_cells_info_text_shows_equations():
    res = run("cells", "info", "gru")
    assert res.exit_code == 0
    assert "h = blend(z, h_prev, n)" in res.stdout


def test_cells_code_prints_generated_python():
    res = run("cells", "code", "lstm")
    assert res.exit_code == 0
    assert "def step(xt, prev, consts):" in res.stdout
    compile(res.stdout, "<code>", "exec")  # it is plain Python


def test_check_reports_each_file(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("name: g\nstates: [h]\nnodes:\n  h: tanh(linear(x, h_prev))\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: b\nstates: [h]\nnodes:\n  h: tanh(linar(x, h_prev))\n")
    res = run("cells", "check", str(good))
    assert res.exit_code == 0 and "ok" in res.stdout
    res = run("cells", "check", str(good), str(bad))
    assert res.exit_code == 2
    assert "bad.yaml:4: node 'h'" in res.stderr and "unknown function 'linar'" in res.stderr
    assert "Traceback" not in res.output


def test_check_warns_about_unused_nodes(tmp_path):
    f = tmp_path / "unused.yaml"
    f.write_text("name: u\nstates: [h]\nnodes:\n  a: sigmoid(x)\n  h: tanh(linear(x, h_prev))\n")
    res = run("cells", "check", str(f))
    assert res.exit_code == 0
    assert "warning" in res.stderr and "'a' is never used" in res.stderr


@pytest.mark.parametrize("args, message", [
    (("cells", "info", "nope"), "no built-in cell named 'nope'"),
    (("cells", "info", "missing/file.yaml"), "no such file"),
    (("cells", "info", "mut1", "-I", "64"), "input 'x' has size 64"),
    (("cells", "draw", "lstm", "-o", "x.jpg"), "use a .png, .svg, .pdf or .dot"),
])
def test_bad_input_is_one_line_and_exit_status_2(args, message):
    res = run(*args)
    assert res.exit_code == 2
    assert message in res.stderr
    assert res.stderr.strip().count("\n") == 0
    assert "Traceback" not in res.output


@pytest.mark.parametrize("suffix", [".png", ".svg", ".dot"])
def test_draw_writes_a_file(tmp_path, suffix):
    out = tmp_path / f"lstm{suffix}"
    res = run("cells", "draw", "lstm", "-o", str(out))
    assert res.exit_code == 0, res.output
    assert out.stat().st_size > 100


def test_import_nasbench_recipes(tmp_path):
    recipes = SHARED / "data/nasbench_nlp/recipes_example.json"
    if not recipes.exists():
        pytest.skip(f"sample recipes not found at {recipes}")
    res = run("cells", "import", str(recipes), "-o", str(tmp_path / "cells"))
    assert res.exit_code == 0, res.output
    files = sorted((tmp_path / "cells").glob("*.yaml"))
    assert len(files) == 10
    res = run("cells", "check", *map(str, files))
    assert res.exit_code == 0, res.output


def test_bench_json_reports_ratios():
    res = run("bench", "--json", "--rounds", "1", "-T", "4", "-B", "2", "-I", "8", "-H", "8")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    for cell in ("lstm", "gru"):
        assert out[cell]["vs_torch"] > 0 and out[cell]["vs_interpreter"] > 0
    # cells with a memory (attention reads a random source as long as the sequence; the NTM its own)
    res = run("bench", "--json", "--cells", "attn-gru,ntm", "--rounds", "1", "-T", "4", "-B", "2", "-I", "8", "-H", "8")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert all(out[cell]["vs_interpreter"] > 0 and "vs_torch" not in out[cell] for cell in ("attn-gru", "ntm"))


@pytest.mark.timeout(60)
def test_commands_print_their_warnings_and_end():
    """cli_errors shows cellsearch warnings as `warning:` lines and other warnings on stderr (an earlier
    version re-recorded them while iterating over its own record and never returned)."""
    import warnings

    import typer

    from cellsearch.cli import cli_errors
    from cellsearch.errors import CellWarning

    local = typer.Typer()

    @local.command()
    @cli_errors
    def noisy() -> None:
        warnings.warn("precision loss", RuntimeWarning)
        warnings.warn("node 'a' is never used", CellWarning)

    @local.command()
    def other() -> None:  # a second command keeps typer from collapsing the app into one command
        pass

    res = runner.invoke(local, ["noisy"])
    assert res.exit_code == 0
    assert "precision loss" in res.stderr and "warning: node 'a' is never used" in res.stderr


@pytest.mark.parametrize("command, option", [("train", "--task"), ("search", "--tasks")])
def test_the_help_names_every_task(command, option):
    from cellsearch.tasks import TASK_NAMES

    res = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "400"})
    assert res.exit_code == 0
    line = next(l for l in res.output.splitlines() if option in l)
    block = res.output[res.output.index(line):]
    missing = [t for t in TASK_NAMES if t not in block]
    assert not missing, f"{command} --help does not name {missing}"
