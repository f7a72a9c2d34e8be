"""Fixtures of the compiler tests."""

import pytest


@pytest.fixture
def interpreted(monkeypatch):
    """Fused kernels on the CPU: the Triton kernels generated during the test run through Triton's
    interpreter (``TRITON_INTERPRET=1``), so a machine without a GPU checks the code a GPU runs."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
