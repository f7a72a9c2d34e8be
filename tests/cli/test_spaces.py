"""`cellsearch spaces list|show|check` (the sub-app, through typer's CliRunner)."""

from __future__ import annotations

import json

import typer
import yaml
from typer.testing import CliRunner

from cellsearch.cli.spaces import app
from cellsearch.spaces import SPACE_NAMES, list_spaces, load_space
from tests.support.paths import REPO

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def test_list_shows_every_shipped_space():
    res = run("list", "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["name"] for r in rows] == list(SPACE_NAMES)
    assert [r["description"] for r in rows] == list(list_spaces().values())
    assert {r["name"]: r["kind"] for r in rows}["greff"] == "finite"
    res = run("list")
    assert res.exit_code == 0 and all(name in res.stdout for name in SPACE_NAMES)


def test_show_prints_the_shipped_text_with_kind_and_decisions():
    res = run("show", "dag4")
    assert res.exit_code == 0, res.output
    first, rest = res.stdout.split("\n", 1)
    assert first == "# dag4.yaml: space 'dag4', kind dag, 7 decisions"
    assert rest == (REPO / "search_spaces" / "dag4.yaml").read_text(encoding="utf-8")
    res = run("show", "dag4", "--json")
    info = json.loads(res.stdout)
    assert (info["name"], info["kind"], info["decisions"]) == ("dag4", "dag", 7)
    assert yaml.safe_load(info["text"])["kind"] == "dag"


def test_show_output_is_a_space_file_and_show_reads_files(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text(run("show", "nas_rl").stdout)
    assert len(load_space(f).decisions()) == 34
    res = run("show", str(f))
    assert res.exit_code == 0
    assert res.stdout.startswith(f"# {f}: space 'nas_rl', kind tree, 34 decisions\n")


def test_show_rejects_unknown_names_in_one_line():
    res = run("show", "dagg")
    assert res.exit_code == 2
    assert res.stderr.count("\n") == 1 and "unknown search space 'dagg'" in res.stderr
    assert "did you mean 'dag'" in res.stderr and "Traceback" not in res.output


def test_check_reports_each_file(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("kind: dag\nnodes: 3\nactivations: [tanh]\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: dag\nnodes: 1\n")
    res = run("check", str(good), *(str(REPO / "search_spaces" / f"{n}.yaml") for n in SPACE_NAMES))
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0] == f"ok {good}: good (kind dag, 5 decisions)"
    assert len(lines) == 1 + len(SPACE_NAMES) and all(line.startswith("ok ") for line in lines)
    res = run("check", str(good), str(bad), str(tmp_path / "missing.yaml"))
    assert res.exit_code == 2
    assert res.stdout.startswith(f"ok {good}")
    errors = res.stderr.splitlines()
    assert len(errors) == 2
    assert errors[0].startswith(f"error: {bad}: field 'nodes': must be between 2 and 64")
    assert errors[1].startswith(f"error: {tmp_path / 'missing.yaml'}") and "no such file" in errors[1]
    assert "Traceback" not in res.output


def test_registers_as_a_sub_app():
    """The main CLI adds it with app.add_typer(spaces.app, name="spaces")."""
    main = typer.Typer()
    main.add_typer(app, name="spaces")

    @main.command()
    def other() -> None:  # (a second command, so "spaces" stays a sub-command)
        pass

    res = runner.invoke(main, ["spaces", "show", "greff", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["decisions"] == 1
