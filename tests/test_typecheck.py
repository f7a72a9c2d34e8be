"""The type checker passes over the whole package: ``python -m mypy cellsearch`` with the settings of
``[tool.mypy]`` in pyproject.toml (strict on the modules of the public API)."""

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
