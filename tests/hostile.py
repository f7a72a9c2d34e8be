"""Helpers for the hostile-input tests: run the CLI, check the one-line refusal, hash a run's files.

Every bad input must give exactly one line on stderr (``error: ...``), exit status 2, no
traceback, and leave what is stored unchanged: ``refused(...)`` checks the first three,
``tree_digest(dir)`` before and after checks the last.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from cellsearch.cli import app

_runner = CliRunner()


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None


def cli(*args: str) -> Outcome:
    """Run ``cellsearch ARGS`` in this process (through the top-level group, as the console script)."""
    res = _runner.invoke(app, [str(a) for a in args])
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
    """{relative path: sha256} of every file below ``root`` (a missing root gives {}), leaving out
    the writer lock's own files (``cellsearch.writer_lock.BOOKKEEPING``): they record who writes,
    not what a run holds."""
    from cellsearch.writer_lock import BOOKKEEPING

    root = Path(root)
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in BOOKKEEPING}
