"""The type checker passes over the whole package: ``python -m mypy cellsearch`` with the settings of
``[tool.mypy]`` in pyproject.toml (strict on the modules of the public API); and a user's type
checker sees the public API's types through ``from cellsearch import ...``."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())


@pytest.mark.slow
def test_mypy_passes_over_the_package(tmp_path):
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install -e '.[test]')")
    # its own cache folder, so the test neither reads a stale cache nor writes into the checkout
    out = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy-cache"), "cellsearch"],
                         cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stdout[-8000:] + out.stderr[-2000:]
    assert "Success" in out.stdout


@pytest.mark.slow
def test_a_users_type_checker_sees_the_public_api(tmp_path):
    """``from cellsearch import ...`` in a user's code: the type checker sees each name's real type
    (the lazy attributes are typed through the TYPE_CHECKING imports) and refuses a name that is not
    in the API (no module ``__getattr__`` visible to it that would accept any name)."""
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install -e '.[test]')")
    user = tmp_path / "user.py"
    user.write_text("from cellsearch import CellRNN, TrainConfig, loads_cell, train, Typo\n"
                    "reveal_type(train(TrainConfig()))\n"
                    "reveal_type(loads_cell)\n"
                    "reveal_type(CellRNN('gru', 4, 8).forward)\n", encoding="utf-8")
    # run in tmp_path: the user's project, not this repository's [tool.mypy] settings
    out = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy-cache"), "user.py"],
                         cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    text = out.stdout
    assert 'Module "cellsearch" has no attribute "Typo"' in text, text[-3000:]
    assert "Found 1 error in 1 file" in text, text[-3000:]
    assert 'Revealed type is "cellsearch.training.result.TrainResult"' in text
    assert "-> cellsearch.dsl.graph.CellGraph" in text
    assert "-> tuple[torch._tensor.Tensor, tuple[torch._tensor.Tensor, ...]]" in text
