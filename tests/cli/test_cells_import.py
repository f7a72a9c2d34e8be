"""`cellsearch cells import`: existing files are refused (or replaced with --force), a bad output
path is one line, and a recipe's soft problems are warned about as `cells check` warns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cellsearch.dsl.nasbench import import_recipes
from cellsearch.errors import CellWarning, ConfigError
from tests.support.hostile import cli, refused, tree_digest
from tests.support.paths import SHARED

SAMPLE = SHARED / "data/nasbench_nlp/recipes_example.json"

READS_X = {"n": {"op": "linear", "input": ["x", "h_prev_0"]}, "h_new_0": {"op": "activation_tanh", "input": ["n"]}}
NO_X = {"n": {"op": "linear", "input": ["h_prev_0"]}, "h_new_0": {"op": "activation_tanh", "input": ["n"]}}


@pytest.fixture
def recipes(tmp_path) -> Path:
    """Two recipes: ``r_0`` reads x, ``r_1`` never does."""
    path = tmp_path / "r.json"
    path.write_text(json.dumps([READS_X, NO_X]))
    return path


def imported(recipes: Path, out: Path, *extra: str) -> str:
    """Import (must succeed); returns stderr."""
    res = cli("cells", "import", recipes, "-o", out, *extra)
    assert res.exit_code == 0 and res.exception is None, (res.stdout, res.stderr, res.exception)
    return res.stderr


def test_sample_imports_and_checks_clean(tmp_path):
    if not SAMPLE.is_file():
        pytest.skip(f"NAS-Bench-NLP sample recipes not found at {SAMPLE}")
    out = tmp_path / "cells"
    assert imported(SAMPLE, out) == ""  # the sample's cells read x and use every node: no warnings
    files = sorted(out.glob("*.yaml"))
    assert len(files) == len(json.loads(SAMPLE.read_text()))
    res = cli("cells", "check", *files)
    assert res.exit_code == 0 and res.stderr == ""


def test_reimport_leaves_identical_files_alone(tmp_path, recipes):
    out = tmp_path / "cells"
    imported(recipes, out)
    before = tree_digest(out)
    mtimes = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    imported(recipes, out)
    assert tree_digest(out) == before
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes  # not even rewritten


def test_edited_file_is_refused_and_nothing_is_written(tmp_path, recipes):
    out = tmp_path / "cells"
    imported(recipes, out)
    (out / "r_0.yaml").unlink()  # would be written, but must not be: the import is refused as a whole
    (out / "r_1.yaml").write_text((out / "r_1.yaml").read_text() + "# edited by hand\n")
    before = tree_digest(out)
    refused("cells", "import", recipes, "-o", out, says=(str(out / "r_1.yaml"), "already exists", "--force"))
    assert tree_digest(out) == before


def test_refusal_names_the_first_existing_file(tmp_path, recipes):
    out = tmp_path / "cells"
    out.mkdir()
    (out / "r_0.yaml").write_text("mine\n")
    (out / "r_1.yaml").write_text("mine too\n")
    line = refused("cells", "import", recipes, "-o", out, says=(str(out / "r_0.yaml"), "and 1 more"))
    assert "r_1.yaml" not in line
    assert (out / "r_0.yaml").read_text() == "mine\n"


def test_force_overwrites(tmp_path, recipes):
    fresh, out = tmp_path / "fresh", tmp_path / "cells"
    imported(recipes, fresh)
    out.mkdir()
    (out / "r_1.yaml").write_text("mine\n")
    (out / "notes.txt").write_text("not a cell\n")
    imported(recipes, out, "--force")
    assert tree_digest(out) == {**tree_digest(fresh), "notes.txt": tree_digest(out)["notes.txt"]}
    assert (out / "notes.txt").read_text() == "not a cell\n"


def test_output_that_is_a_file_is_refused(tmp_path, recipes):
    target = tmp_path / "cells"
    target.write_text("a file, not a directory\n")
    before = tree_digest(tmp_path)
    refused("cells", "import", recipes, "-o", target, says=(str(target), "not a directory"))
    refused("cells", "import", recipes, "-o", target, "--force", says="not a directory")
    refused("cells", "import", recipes, "-o", target / "sub", says=str(target / "sub"))
    assert tree_digest(tmp_path) == before


def test_a_directory_in_the_way_is_refused_even_with_force(tmp_path, recipes):
    out = tmp_path / "cells"
    (out / "r_1.yaml").mkdir(parents=True)
    refused("cells", "import", recipes, "-o", out, "--force", says=(str(out / "r_1.yaml"), "is a directory"))
    assert tree_digest(out) == {} and not (out / "r_0.yaml").exists()


def test_a_recipe_that_never_reads_x_is_warned_about_like_check_does(tmp_path, recipes):
    out = tmp_path / "cells"
    warnings = imported(recipes, out).splitlines()
    assert warnings == ["warning: r_1: input 'x' is never used"]
    check = cli("cells", "check", out / "r_0.yaml", out / "r_1.yaml")
    assert check.exit_code == 0 and check.stderr.splitlines() == warnings


def test_library_refuses_without_force(tmp_path, recipes):
    out = tmp_path / "cells"
    out.mkdir()
    (out / "r_0.yaml").write_text("mine\n")
    with pytest.raises(ConfigError, match="set force to overwrite") as exc:
        import_recipes(recipes, out)
    assert exc.value.fields == ("import_recipes.force",)  # (the command line shows --force: see above)
    assert sorted(p.name for p in out.iterdir()) == ["r_0.yaml"]
    with pytest.warns(CellWarning, match="r_1: input 'x' is never used"):
        written = import_recipes(recipes, out, force=True)
    assert [p.name for p in written] == ["r_0.yaml", "r_1.yaml"]
    with pytest.warns(CellWarning, match="r_1: input 'x' is never used"):  # still so: said again
        assert import_recipes(recipes, out) == []  # everything already in place: nothing written
