"""The public API (``cellsearch/__init__.py``): every name in ``__all__`` imports from
``cellsearch`` and is the very object its home module defines, the lazy table and the
``TYPE_CHECKING`` imports name the same things, and ``import cellsearch`` stays cheap (no torch)."""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import cellsearch

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
INIT = ROOT / "cellsearch" / "__init__.py"
PUBLIC = [name for name in cellsearch.__all__ if name != "__version__"]


def _type_checking_imports() -> dict[str, str]:
    """name -> module of the ``from M import name`` statements under ``if TYPE_CHECKING:``."""
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom) and stmt.module is not None
                for alias in stmt.names:
                    found[alias.asname or alias.name] = stmt.module
    return found


def test_all_lists_each_name_once_and_the_version():
    assert len(set(cellsearch.__all__)) == len(cellsearch.__all__)
    assert "__version__" in cellsearch.__all__
    assert isinstance(cellsearch.__version__, str) and cellsearch.__version__


def test_type_checking_imports_match_the_lazy_table():
    assert _type_checking_imports() == cellsearch._HOMES
    assert sorted(PUBLIC) == sorted(cellsearch._HOMES)


@pytest.mark.parametrize("name", PUBLIC)
def test_public_name_is_the_object_of_its_home_module(name):
    home = importlib.import_module(cellsearch._HOMES[name])
    obj = getattr(cellsearch, name)
    assert obj is getattr(home, name)
    # defined there, not merely re-exported by it
    assert getattr(obj, "__module__", None) == home.__name__
    doc = inspect.getdoc(obj) or ""
    # its own words, not the signature a dataclass makes up for a class without a docstring (which
    # the API reference, docs/api.md, does not show)
    assert doc and not doc.startswith(f"{name}("), f"cellsearch.{name} has no docstring"


def test_from_import_star_gives_all(tmp_path):
    namespace: dict[str, object] = {}
    exec("from cellsearch import *", namespace)
    assert set(cellsearch.__all__) <= set(namespace)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        cellsearch.no_such_name  # noqa: B018
    with pytest.raises(ImportError):
        exec("from cellsearch import no_such_name", {})


def test_dir_lists_the_public_api():
    assert set(cellsearch.__all__) <= set(dir(cellsearch))


def test_import_cellsearch_does_not_load_torch():
    # a fresh interpreter: this one has torch loaded by the test session already
    code = ("import sys, cellsearch, cellsearch.cli; "
            "heavy = [m for m in ('torch', 'numpy', 'ray', 'pandas') if m in sys.modules]; "
            "print(','.join(heavy))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "", f"import cellsearch loaded {out.stdout.strip()}"


def test_a_public_name_loads_on_use_in_a_fresh_interpreter():
    code = ("import sys, cellsearch; assert 'torch' not in sys.modules; "
            "from cellsearch import CellRNN; import cellsearch.nn.layers as m; "
            "assert CellRNN is m.CellRNN and 'torch' in sys.modules")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
