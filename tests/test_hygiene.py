"""The test suite's own rules: tests touch only what they start, test modules do not import each
other, every folder is a package, and Ray tests share one xdist worker.

Checked on the source (the abstract syntax tree, so comments and docstrings that name a command
do not count): a test that ran ``ray stop``, ``pkill`` or ``killall`` would stop processes it
did not start (``ray stop --force`` stops every Ray on the machine, a user's search included),
and ``ray get-auth-token --generate`` writes the user's ~/.ray/auth_token.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
_FORBIDDEN = re.compile(r"\b(pkill|killall)\b|\bray\s+stop\b|\bget-auth-token\s+--generate\b")


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are bare statements (docstrings and the like)."""
    return {id(node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)}


def _names_ray(node: ast.AST) -> bool:
    """Whether a command's program is Ray's CLI: "ray", ".../ray", or a name like ray_bin."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return re.search(r"(^|/)ray$", node.value) is not None
    return isinstance(node, (ast.Name, ast.Attribute)) and "ray" in ast.unparse(node).lower()


def forbidden_commands(source: str) -> list[str]:
    """The commands in ``source`` that stop processes by name (``ray stop``, ``pkill``, ``killall``)
    or write Ray's token file (``ray get-auth-token --generate``), as one string or as an argument
    list ([ray_bin, "stop", ...])."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            if _FORBIDDEN.search(node.value):
                found.append(f"line {node.lineno}: {node.value[:80]!r}")
        elif isinstance(node, (ast.List, ast.Tuple)) and node.elts:
            first, *rest = node.elts
            words = [e.value for e in rest if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            if _names_ray(first) and ("stop" in words or {"get-auth-token", "--generate"} <= set(words)):
                found.append(f"line {node.lineno}: {ast.unparse(node)[:80]}")
            elif isinstance(first, ast.Constant) and first.value in ("pkill", "killall"):
                found.append(f"line {node.lineno}: {ast.unparse(node)[:80]}")
    return found


@pytest.mark.parametrize("source", [
    'subprocess.run(["ray", "stop", "--force"])',
    'subprocess.run([ray_bin, "stop"], check=True)',
    'subprocess.run(("/usr/bin/ray", "stop"))',
    'os.system("ray stop --force")',
    'os.system("pkill -f raylet")',
    'subprocess.run(["killall", "raylet"])',
    'subprocess.run(["pkill", "-f", "gcs_server"])',
    'subprocess.run([ray_bin, "get-auth-token", "--generate"], check=True)',
    'os.system("ray get-auth-token --generate")',
])
def test_the_check_finds_the_commands(source):
    assert forbidden_commands(source), source


@pytest.mark.parametrize("source", [
    '# never `ray stop`: it stops every Ray here\nx = 1',
    'def f():\n    """Stops what it started (never ray stop)."""\n    os.killpg(proc.pid, signal.SIGKILL)',
    'subprocess.run([ray_bin, "start", "--head"])',
    'subprocess.run(["ray", "status"])',
    'subprocess.run([ray_bin, "get-auth-token"])',  # (reads the token, writes nothing)
    'stop = "stopped-early"',
])
def test_the_check_leaves_other_code_alone(source):
    assert not forbidden_commands(source), source


def test_no_test_stops_processes_it_did_not_start_or_writes_rays_token():
    # (this module holds such commands as examples for the check above, in strings it never runs)
    found = {str(p.relative_to(TESTS)): hits for p in sorted(TESTS.rglob("*.py")) if p != Path(__file__).resolve()
             for hits in [forbidden_commands(p.read_text(encoding="utf-8"))] if hits}
    assert not found, found


def test_test_modules_do_not_import_each_other():
    """Shared helpers live in tests.support (or are fixtures in a conftest.py), never in a test module."""
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                # a relative import: "." is tests.support only within tests/support itself
                names = ["." * node.level + (node.module or "")]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                first, *rest = name.split(".")
                if ((first == "tests" and rest[:1] != ["support"]) or first.startswith(("test_", "conftest"))
                        or (name.startswith(".") and path.parent.name != "support")):
                    found.append(f"{path.relative_to(TESTS)}:{node.lineno} imports {name}")
    assert not found, found


def test_every_test_folder_is_a_package():
    """Each folder has an __init__.py, so pytest imports tests.<folder>.test_x: two folders may hold
    modules of the same name."""
    folders = {p.parent for p in TESTS.rglob("*.py")}
    assert sorted(str(f.relative_to(TESTS.parent)) for f in folders if not (f / "__init__.py").is_file()) == []


@pytest.mark.slow
def test_test_folders_mirror_the_package():
    """Each folder of tests/ (but the helpers' ``support``) is named for a subpackage of cellsearch, so a
    package's tests are found where the package is; a subpackage with modules and no folder is named."""
    package = TESTS.parent / "cellsearch"
    subpackages = {d.name for d in package.iterdir() if (d / "__init__.py").exists()}
    folders = {d.name for d in TESTS.iterdir() if d.is_dir() and d.name not in ("support", "__pycache__")}
    assert folders - subpackages == set(), f"test folders that name no subpackage: {sorted(folders - subpackages)}"
    with_code = {name for name in subpackages if any(p.name != "__init__.py" for p in (package / name).glob("*.py"))}
    assert with_code - folders == set(), f"subpackages without a test folder: {sorted(with_code - folders)}"


def test_ray_tests_are_grouped_on_one_xdist_worker():
    """The `ray` marker puts a test in xdist's group "ray" (the README runs `-n 2 --dist loadgroup`):
    the group shows as the suffix "@ray" of its node id, which xdist alone no longer writes under
    pytest 9.2 (tests/conftest.py)."""
    pytest.importorskip("xdist")
    ray_test = "tests/runner/test_jobs.py::test_an_injected_job_function_runs_in_process"
    other = "tests/test_hygiene.py::test_every_test_folder_is_a_package"
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", "--dist", "loadgroup",
                          "-v", "-o", "addopts=", ray_test, other], cwd=TESTS.parent, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout[-3000:]
    assert f"PASSED {ray_test}@ray" in out.stdout
    assert f"PASSED {other}@" not in out.stdout  # (unmarked tests stay ungrouped)
