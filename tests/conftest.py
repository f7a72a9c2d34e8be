"""Test configuration for every folder: Ray's environment, Hypothesis's profile, the fixtures
several folders share (a finished run, float64), and the xdist group of the Ray tests.

Hypothesis runs derandomized by default so that CI is reproducible: the same examples every run.
Explore new examples locally with ``HYPOTHESIS_PROFILE=explore python -m pytest ...``.
Fixtures that one folder's modules share are in that folder's conftest.py; helpers that are not
fixtures are in tests/support.
"""

import os
import secrets
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import settings

# Every Ray the tests start is theirs alone, and leaves nothing behind in the user's files:
# - Ray (2.5x) turns token authentication on for a local cluster as soon as a token file exists,
#   and each process decides that when it first reads Ray's config. Decide it once, before any
#   test imports Ray, so the driver, `ray start` nodes and workers always agree.
# - The token is this test session's, in the environment (Ray's first source of it), which every
#   process the tests start inherits: no `ray get-auth-token --generate`, no ~/.ray/auth_token.
# - RAY_TMPDIR: Ray's sessions, logs, sockets and the address file that `ray.init()` would join
#   go to a folder of this test session (xdist workers inherit it), not the shared /tmp/ray;
#   short, as Ray's socket paths below it may not pass 107 bytes. The process that made it
#   removes it at the end.
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
_RAY_TMPDIR = None if "RAY_TMPDIR" in os.environ else tempfile.mkdtemp(prefix="cs-ray-")
if _RAY_TMPDIR is not None:
    os.environ["RAY_TMPDIR"] = _RAY_TMPDIR


def pytest_unconfigure(config):
    if _RAY_TMPDIR is not None:
        shutil.rmtree(_RAY_TMPDIR, ignore_errors=True)


settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished tiny search (``tests.support.hostile.tiny``), one per test module; don't change it."""
    from tests.support.hostile import finished_search

    return finished_search(tmp_path_factory.mktemp("runs"))


@pytest.fixture
def run_copy(finished_run, tmp_path):
    """A private copy of ``finished_run``, free to damage."""
    return Path(shutil.copytree(finished_run, tmp_path / "runs" / "done"))


@pytest.fixture
def float64():
    """torch's default dtype float64 for the test (differential tests compare to ~1e-10)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


# The suite runs on two pytest-xdist workers (`-n 2 --dist loadgroup`, the README's test command).
# Tests marked `ray` (modules that start local Ray clusters or pools of worker processes) run on
# one worker, one after another: two clusters at once on a 2-core machine would oversubscribe it
# and stretch Ray's start-up timeouts. xdist groups by a suffix "@ray" it writes into each marked
# item's node id on the worker; from pytest 9.2 on, a node id is structured and xdist's write is
# lost (pytest-dev/pytest-xdist#1386: the tests are then spread as if unmarked), so where the
# suffix is missing after xdist's hook, it is written the structured way here.
try:
    from _pytest.nodeid import NodeId  # pytest >= 9.2
except ImportError:  # an older pytest, where xdist's own suffix takes effect
    NodeId = None


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config, items):
    xdist = config.pluginmanager.hasplugin("xdist")  # (its marker is registered only with it)
    ray = [item for item in items if xdist and item.get_closest_marker("ray") is not None]
    for item in ray:
        item.add_marker(pytest.mark.xdist_group("ray"))
    result = yield  # (xdist's hook, on a worker, reads the group here)
    if NodeId is not None and config.getoption("loadgroup", default=False):
        for item in ray:
            if not item.nodeid.endswith("@ray"):
                item._id = NodeId.parse(f"{item.nodeid}@ray")
    return result
