"""The results database of a search: SQLite in ``runs/NAME/results.db``.

One row per evaluated candidate (and one per deduplicated candidate, pointing at the row
whose result it reused). Only the search driver writes, one transaction per trial, so a
killed search loses at most the trials that were still running. ``read_results`` gives a
pandas DataFrame for notebooks.

A results file is checked before use (an SQLite file holding our tables at our schema
version), readers open it read-only (``Store(path, readonly=True)``: nothing can create or
change a file), and any SQLite failure on a damaged file becomes one ``ConfigError`` line
naming it. A results file (or its journal) that is a symbolic link is refused: SQLite would
follow it and write another run's file, or any file. A full disk is a ``fileio.DiskFullError``,
after which the database holds every trial committed before it.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import stat
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

from cellsearch.errors import ConfigError
from cellsearch.fileio import FileRefusedError, write_error

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    trial_id TEXT,             -- Ray Tune trial id (or local id)
    hash TEXT NOT NULL,        -- canonical structural hash of the cell
    cell_name TEXT,
    cell_yaml TEXT NOT NULL,   -- the cell in equation form
    strategy TEXT NOT NULL,
    origin TEXT,               -- sample | mutation | seed | reference | reevaluate
    parent TEXT,               -- parent hash for mutations
    decisions TEXT,            -- JSON list of the space's decisions, if any
    plan TEXT,                 -- (unused: NULL; kept so that every results file has one schema)
    status TEXT NOT NULL,      -- ok | diverged | failed | stopped-early | rejected | missing
    stage TEXT,                -- where a staged evaluation rejected it (or 'passed')
    score REAL,                -- higher is better; NULL when there is none
    metrics TEXT,              -- JSON {task: {metric: value}}
    params INTEGER,
    seconds REAL,
    node TEXT,                 -- Ray node id the trial ran on
    error TEXT,
    reused_from INTEGER REFERENCES trials(id),
    created REAL NOT NULL      -- unix time
);
CREATE INDEX IF NOT EXISTS trials_hash ON trials(hash);
-- trainings of the final evaluation protocol (`cellsearch evaluate` / `fidelity`), one per job
CREATE TABLE IF NOT EXISTS retrains (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,  -- protocol:hash:task:lr:seed (a job done once is never run again)
    protocol TEXT NOT NULL,    -- fingerprint of the protocol's training settings (budget, model, task options)
    purpose TEXT,              -- evaluate | fidelity: which command ran it first
    hash TEXT NOT NULL,
    cell_name TEXT,
    cell_yaml TEXT NOT NULL,
    task TEXT NOT NULL,
    lr REAL NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL,      -- ok | diverged | failed
    valid REAL,                -- the task's primary metric on the validation split (chooses the learning rate)
    test REAL,                 -- ... and on the test split (what is reported)
    metrics TEXT,              -- JSON {"valid": {...}, "test": {...}}
    params INTEGER,
    seconds REAL,
    node TEXT,
    error TEXT,
    created REAL NOT NULL
);
"""

# (``missing``: a replayed search's candidate that the benchmark table does not hold)
FINAL_STATUSES = ("ok", "diverged", "failed", "stopped-early", "rejected", "missing")


_SQLITE_MAGIC = b"SQLite format 3\x00"
_TRIAL_COLUMNS = ("id", "trial_id", "hash", "cell_name", "cell_yaml", "strategy", "origin", "parent", "decisions",
                  "plan", "status", "stage", "score", "metrics", "params", "seconds", "node", "error", "reused_from",
                  "created")
# SQLite's files beside the database: a link planted at one of these names is written through
_COMPANIONS = ("-journal", "-wal", "-shm")
_SQLITE_FULL = 13  # SQLite's result code for a full disk (or a database at its page limit)
# columns of the tables every cellsearch results file has had since schema version 1
_REQUIRED = {"meta": {"key", "value"}, "trials": set(_TRIAL_COLUMNS)}


class Store:
    """The results database at ``path``: created if missing (writers), or checked and opened.

    ``readonly=True`` opens an existing file with SQLite's read-only mode (for leaderboard,
    export, analysis): it must exist, and no write can happen through it."""

    def __init__(self, path: str | Path, *, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self._refuse_links()
        exists = self.path.exists()
        if readonly or exists:
            self._check_file()
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        uri = f"file:{quote(str(self.path.resolve()))}" + ("?mode=ro" if readonly else "")
        with self._damage_is_an_error():
            self.conn = sqlite3.connect(uri, uri=True, timeout=30)
            self.conn.row_factory = sqlite3.Row
            if exists or readonly:
                self._check_schema()
            if not readonly:
                with self.conn:
                    self.conn.executescript(_SCHEMA)
                    self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                                      (str(SCHEMA_VERSION),))

    def _refuse_links(self) -> None:
        for p in (self.path, *(self.path.with_name(self.path.name + s) for s in _COMPANIONS)):
            try:
                mode = os.lstat(p).st_mode
            except OSError:  # missing (or a name the OS refuses: the connect says so)
                continue
            if stat.S_ISLNK(mode):
                raise FileRefusedError(p, "is a symbolic link: a run's results are never written or read through a "
                                       "link (remove it, or put the file it points to in its place)")

    def _check_file(self) -> None:
        if not self.path.is_file():
            raise ConfigError(f"{self.path}: no results database here" if not self.path.exists()
                              else f"{self.path}: not a file")
        with open(self.path, "rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
        if not head:
            raise ConfigError(f"{self.path}: the results database is empty (0 bytes): the file is damaged")
        if head != _SQLITE_MAGIC:
            raise ConfigError(f"{self.path}: not a results database (not an SQLite file): the file is damaged "
                              "or is something else")

    def _check_schema(self) -> None:
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table, columns in _REQUIRED.items():
            if table not in tables:
                raise ConfigError(f"{self.path}: not a cellsearch results database (no table '{table}')")
            have = {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")}
            if not columns <= have:
                raise ConfigError(f"{self.path}: not a cellsearch results database (table '{table}' lacks "
                                  f"{', '.join(sorted(columns - have))})")
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None or row[0] != str(SCHEMA_VERSION):
            raise ConfigError(f"{self.path}: results schema version {row[0] if row else 'missing'} is not "
                              f"supported (this cellsearch reads {SCHEMA_VERSION})")

    @contextmanager
    def _damage_is_an_error(self):
        """SQLite errors on a damaged file (truncated, overwritten) become one line naming it."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF == _SQLITE_FULL:  # (extended codes add bits)
                raise write_error(self.path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))) from None
            if self.readonly and "readonly" in str(exc):  # readers never write (see _write): a hot journal
                raise ConfigError(f"{self.path}: a write to the results database was interrupted and needs "
                                  "recovery, which a reader cannot do: resume the run first") from None
            raise ConfigError(f"{self.path}: the results database is damaged ({exc})") from None

    def _query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self._damage_is_an_error():
            return self.conn.execute(sql, params).fetchall()

    def _write(self, sql: str, params: tuple) -> int:
        if self.readonly:
            raise RuntimeError(f"{self.path} was opened read-only")  # a bug, not bad input
        with self._damage_is_an_error(), self.conn:
            rowid = self.conn.execute(sql, params).lastrowid
        assert rowid is not None  # every caller INSERTs, which sets it
        return int(rowid)

    def close(self) -> None:
        """Close the database connection."""
        self.conn.close()

    # Ray Tune pickles its search algorithm (and with it this store) for its own bookkeeping:
    # travel as the path and reconnect on the other side.
    def __getstate__(self) -> dict:
        return {"path": str(self.path), "readonly": self.readonly}

    def __setstate__(self, state: dict) -> None:
        Store.__init__(self, state["path"], readonly=state.get("readonly", False))

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ meta
    def set_meta(self, key: str, value: Any) -> None:
        """Store ``value`` (as JSON) under ``key`` in the run's metadata, replacing what was there."""
        self._write("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        """The metadata value under ``key`` (``default`` if there is none); ConfigError if it is not JSON."""
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        if not rows:
            return default
        try:
            return json.loads(rows[0]["value"])
        except (TypeError, ValueError):
            raise ConfigError(f"{self.path}: the results database is damaged (meta '{key}' is not JSON)") from None

    # ------------------------------------------------------------------ trials
    def add_trial(self, *, hash: str, cell_yaml: str, strategy: str, status: str, score: float | None,
                  metrics: dict | None = None, cell_name: str | None = None, trial_id: str | None = None,
                  origin: str | None = None, parent: str | None = None, decisions=None,
                  stage: str | None = None, params: int | None = None, seconds: float | None = None,
                  node: str | None = None, error: str | None = None, reused_from: int | None = None) -> int:
        """Record one finished trial (one transaction) and return its row id; ValueError for a status
        that is not final. A NaN score is stored as no score."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"unknown status {status!r}")
        return self._write(  # one transaction per trial
                "INSERT INTO trials (trial_id, hash, cell_name, cell_yaml, strategy, origin, parent, decisions, plan,"
                " status, stage, score, metrics, params, seconds, node, error, reused_from, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (trial_id, hash, cell_name, cell_yaml, strategy, origin, parent,
                 json.dumps(list(decisions)) if decisions is not None else None, None, status, stage,
                 None if score is None or score != score else float(score), json.dumps(metrics or {}), params,
                 seconds, node, error, reused_from, time.time()))

    def lookup(self, hash: str) -> sqlite3.Row | None:
        """The first evaluated (not reused) row of a cell, if this run has evaluated it."""
        rows = self._query("SELECT * FROM trials WHERE hash = ? AND reused_from IS NULL ORDER BY id LIMIT 1",
                           (hash,))
        return rows[0] if rows else None

    def rows(self) -> Iterator[sqlite3.Row]:
        """Every trial row, in the order they were recorded."""
        return iter(self._query("SELECT * FROM trials ORDER BY id"))

    def count(self, include_reused: bool = True) -> int:
        """How many trials are recorded (``include_reused=False``: only those that were evaluated)."""
        q = "SELECT COUNT(*) FROM trials" + ("" if include_reused else " WHERE reused_from IS NULL")
        return int(self._query(q)[0][0])

    # ------------------------------------------------------------------ retrains (final evaluation)
    def add_retrain(self, *, key: str, protocol: str, purpose: str, hash: str, cell_name: str | None,
                    cell_yaml: str, task: str, lr: float, seed: int, status: str, valid: float | None,
                    test: float | None, metrics: dict | None = None, params: int | None = None,
                    seconds: float | None = None, node: str | None = None, error: str | None = None) -> int:
        """Record one final-evaluation training (replacing one with the same ``key``) and return its row id."""
        def num(v):
            return None if v is None or v != v else float(v)

        return self._write(
                "INSERT OR REPLACE INTO retrains (key, protocol, purpose, hash, cell_name, cell_yaml, task, lr, seed,"
                " status, valid, test, metrics, params, seconds, node, error, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, protocol, purpose, hash, cell_name, cell_yaml, task, float(lr), int(seed), status, num(valid),
                 num(test), json.dumps(metrics or {}), params, seconds, node, error, time.time()))

    def retrains(self, protocol: str | None = None) -> list[sqlite3.Row]:
        """The final-evaluation rows (of ``protocol`` only, if given), in the order they were recorded."""
        if self.readonly and not self._query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'retrains'"):
            return []  # a run from before final evaluations existed, opened read-only
        if protocol is None:
            return self._query("SELECT * FROM retrains ORDER BY id")
        return self._query("SELECT * FROM retrains WHERE protocol = ? ORDER BY id", (protocol,))

    def best(self) -> sqlite3.Row | None:
        """The evaluated trial with the highest score (reference cells left out; ties: the first), or None."""
        rows = self._query("SELECT * FROM trials WHERE score IS NOT NULL AND reused_from IS NULL "
                           "AND origin != 'reference' ORDER BY score DESC, id LIMIT 1")
        return rows[0] if rows else None


def read_results(run_dir: str | Path):
    """All rows of a run as a pandas DataFrame (metrics and decisions decoded from JSON)."""
    import pandas as pd

    path = Path(run_dir)
    db = path / "results.db" if path.is_dir() else path
    with Store(db, readonly=True) as store:
        df = pd.DataFrame([dict(r) for r in store.rows()], columns=list(_TRIAL_COLUMNS))
    df["metrics"] = df["metrics"].map(lambda s: decode_json(s, {}, db))
    df["decisions"] = df["decisions"].map(lambda s: decode_json(s, None, db))
    return df


def decode_json(text: Any, empty: Any, db: str | Path) -> Any:
    """A JSON column's value (``empty`` for NULL/''); a damaged value is one ConfigError naming ``db``."""
    if not isinstance(text, str) or not text:
        return empty
    try:
        return json.loads(text)
    except ValueError:
        raise ConfigError(f"{db}: the results database is damaged (a row holds invalid JSON)") from None
