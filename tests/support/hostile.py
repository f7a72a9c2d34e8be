"""Helpers for the hostile-input tests: run the CLI, check the one-line refusal, hash a run's files.

Every bad input must give exactly one line on stderr (``error: ...``), exit status 2, no
traceback, and leave what is stored unchanged: ``refused(...)`` checks the first three,
``tree_digest(dir)`` before and after checks the last.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from cellsearch.cli import app

_runner = CliRunner()

# Every probe runs under a cap on the address space this process may add (a refusal must not
# allocate its way to the answer) and, through pytest-timeout, a time limit (``pytestmark`` of
# the test modules): an unbounded allocation fails the probe with MemoryError instead of taking
# the machine, and a hang fails it instead of stalling CI.
PROBE_MEMORY_BYTES = 2 << 30


@contextlib.contextmanager
def memory_cap(extra_bytes: int = PROBE_MEMORY_BYTES):
    """Cap this process's address space at what it maps now plus ``extra_bytes`` (the soft limit
    only, restored afterwards)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        mapped = int(f.read().split()[0]) * resource.getpagesize()
    cap = mapped + extra_bytes
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None


def cli(*args: str, input: str | None = None) -> Outcome:
    """Run ``cellsearch ARGS`` in this process (through the top-level group, as the console script),
    under ``memory_cap``."""
    with memory_cap():
        res = _runner.invoke(app, [str(a) for a in args], input=input)
    exc = res.exception if not isinstance(res.exception, SystemExit) else None
    return Outcome(res.exit_code, res.stdout, res.stderr, exc)


def refused(*args: str, says: str | tuple[str, ...] = ()) -> str:
    """Run the CLI and check the refusal: exit 2, one stderr line starting 'error:', no traceback.
    ``says``: fragments the line must contain. Returns the line."""
    out = cli(*args)
    assert out.exception is None, f"raised {out.exception!r}"
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.exit_code == 2, (out.exit_code, out.stderr, out.stdout)
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{out.stderr}"
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in out.stderr + out.stdout
    for fragment in (says,) if isinstance(says, str) else says:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def tree_digest(root: str | Path) -> dict[str, str]:
    """{relative path: sha256} of every regular file below ``root`` (a link: where it points; a
    missing root gives {}), leaving out
    the writer lock's own files (``cellsearch.storage.writer_lock.BOOKKEEPING``): they record who writes,
    not what a run holds."""
    from cellsearch.storage.writer_lock import BOOKKEEPING

    root = Path(root)
    if not root.exists():
        return {}
    digest = {}
    for p in sorted(root.rglob("*")):
        if p.name in BOOKKEEPING:
            continue
        if p.is_symlink():  # a planted link is recorded as where it points, never followed
            digest[str(p.relative_to(root))] = "-> " + os.readlink(p)
        elif p.is_file():
            digest[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return digest


@contextlib.contextmanager
def unchanged(*roots: str | Path):
    """Check that no file below any of ``roots`` is added, removed or changed inside the block."""
    before = [tree_digest(r) for r in roots]
    yield
    after = [tree_digest(r) for r in roots]
    for root, b, a in zip(roots, before, after):
        assert a == b, f"files below {root} changed: {sorted(set(a.items()) ^ set(b.items()))[:5]}"


# ---------------------------------------------------------------------- a tiny search to damage
TINY_TRAIN = {"hidden_size": 8, "batch_size": 4, "lr": 1e-2}
TINY_TASKS = {"arith": {"max_digits": 2, "eval_examples": 20}}


def tiny(name: str, **kw):
    """A search of three 2-step trials on the greff space, in-process (no Ray): seconds to run."""
    from cellsearch.storage.settings import SearchConfig

    cfg = SearchConfig(name=name, space="greff", strategy="random", trials=3, steps=2, backend="local",
                       train=dict(TINY_TRAIN), task_options=dict(TINY_TASKS))
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def finished_search(runs: Path) -> Path:
    """A finished ``tiny`` search named ``done`` below ``runs``."""
    from cellsearch.runner.search import SearchRun

    SearchRun(tiny("done"), runs).run()
    return runs / "done"
