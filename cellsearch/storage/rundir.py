"""A run directory (``runs/NAME``) on disk: which files make one, and reading them as data.

A search writes ``config.json`` (its settings), ``results.db`` (every evaluated cell),
``state.json`` (the strategy's state), ``best.yaml`` and, when its space came from a file,
``space/`` (a snapshot of the space and the cell files it names, so the run resumes from any
folder). Every reader here checks what it reads and names the broken file and what to do in
one line; none of them creates or changes a file. A run file that is a symbolic link, a FIFO or
a device is refused (``fileio``): a run's files are its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cellsearch.errors import ConfigError
from cellsearch.fileio import FileRefusedError, read_regular
from cellsearch.limits import MAX_RUN_JSON_BYTES

CONFIG = "config.json"
RESULTS = "results.db"
STATE = "state.json"
BEST = "best.yaml"
SPACE_SNAPSHOT = "space"


def check_new_run(run_dir: Path) -> None:
    """A new search may go to ``run_dir``: its parents are folders (or can be made), it is no file, and it
    holds no run (no results.db); ConfigError, one line, otherwise."""
    for parent in reversed(run_dir.parents):
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"{parent} is a file, not a directory of runs: choose another runs_dir (--runs)",
                              field="SearchRun.runs_dir")
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir} is a file, not a run directory: choose another name (--name) or runs_dir "
                          "(--runs)", field=("SearchConfig.name", "SearchRun.runs_dir"))
    if (run_dir / RESULTS).exists():
        raise ConfigError(f"{run_dir} already holds a run: resume it (`cellsearch resume {run_dir}`, "
                          "SearchRun.resume) or choose another name", field="SearchConfig.name")


def require_run(run_dir: str | Path, what: str = "a search run") -> Path:
    """``run_dir`` as a Path, after checking that it is a directory holding config.json and results.db."""
    path = Path(run_dir)
    if not path.exists():
        raise ConfigError(f"{path}: no such run directory")
    if not path.is_dir():
        raise ConfigError(f"{path}: not a directory (give runs/NAME of {what})")
    missing = [f for f in (CONFIG, RESULTS) if not (path / f).exists()]
    if missing:
        advice = (" (it was deleted or never written: this run cannot be resumed or read; start a new search)"
                  if missing == [RESULTS] and (path / CONFIG).exists() else "")
        raise ConfigError(f"{path} is not {what}: it has no {' and no '.join(missing)}{advice}")
    return path


def read_json_file(path: str | Path, what: str, advice: str) -> dict[str, Any]:
    """A run's JSON file as a mapping; ``what`` names it in errors, ``advice`` says what to do."""
    path = Path(path)
    try:  # (a link is refused: a run's files are its own, never another run's or a device)
        text = read_regular(path, f"{what} size", MAX_RUN_JSON_BYTES, follow=False).decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: missing {what}; {advice}") from None
    except FileRefusedError as exc:
        raise ConfigError(f"{exc}; {advice}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the {what} ({exc}); {advice}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: damaged {what} (not JSON: {exc}); {advice}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: damaged {what} (a JSON {type(data).__name__}, not an object); {advice}")
    return data


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """The search settings of a run (its config.json) as plain data; ``run_dir`` as ``require_run`` gave it."""
    return read_json_file(Path(run_dir) / CONFIG, "search settings",
                          "restore it from a backup, or start a new search")
