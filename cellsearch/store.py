"""The results database of a search: SQLite in ``runs/NAME/results.db``.

One row per evaluated candidate (and one per deduplicated candidate, pointing at the row
whose result it reused). Only the search driver writes, one transaction per trial, so a
killed search loses at most the trials that were still running. ``read_results`` gives a
pandas DataFrame for notebooks.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator

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
    plan TEXT,                 -- JSON evaluation plan, if not the default
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


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, timeout=30)
        self.conn.row_factory = sqlite3.Row
        with self.conn:
            self.conn.executescript(_SCHEMA)
            self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def close(self) -> None:
        self.conn.close()

    # Ray Tune pickles its search algorithm (and with it this store) for its own bookkeeping:
    # travel as the path and reconnect on the other side.
    def __getstate__(self) -> dict:
        return {"path": str(self.path)}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ meta
    def set_meta(self, key: str, value: Any) -> None:
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row["value"]) if row else default

    # ------------------------------------------------------------------ trials
    def add_trial(self, *, hash: str, cell_yaml: str, strategy: str, status: str, score: float | None,
                  metrics: dict | None = None, cell_name: str | None = None, trial_id: str | None = None,
                  origin: str | None = None, parent: str | None = None, decisions=None, plan=None,
                  stage: str | None = None, params: int | None = None, seconds: float | None = None,
                  node: str | None = None, error: str | None = None, reused_from: int | None = None) -> int:
        if status not in FINAL_STATUSES:
            raise ValueError(f"unknown status {status!r}")
        with self.conn:  # one transaction per trial
            cur = self.conn.execute(
                "INSERT INTO trials (trial_id, hash, cell_name, cell_yaml, strategy, origin, parent, decisions, plan,"
                " status, stage, score, metrics, params, seconds, node, error, reused_from, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (trial_id, hash, cell_name, cell_yaml, strategy, origin, parent,
                 json.dumps(list(decisions)) if decisions is not None else None,
                 json.dumps(plan) if plan is not None else None, status, stage,
                 None if score is None or score != score else float(score), json.dumps(metrics or {}), params,
                 seconds, node, error, reused_from, time.time()))
        return int(cur.lastrowid)

    def lookup(self, hash: str) -> sqlite3.Row | None:
        """The first evaluated (not reused) row of a cell, if this run has evaluated it."""
        return self.conn.execute("SELECT * FROM trials WHERE hash = ? AND reused_from IS NULL ORDER BY id LIMIT 1",
                                 (hash,)).fetchone()

    def rows(self) -> Iterator[sqlite3.Row]:
        return iter(self.conn.execute("SELECT * FROM trials ORDER BY id").fetchall())

    def count(self, include_reused: bool = True) -> int:
        q = "SELECT COUNT(*) FROM trials" + ("" if include_reused else " WHERE reused_from IS NULL")
        return int(self.conn.execute(q).fetchone()[0])

    # ------------------------------------------------------------------ retrains (final evaluation)
    def add_retrain(self, *, key: str, protocol: str, purpose: str, hash: str, cell_name: str | None,
                    cell_yaml: str, task: str, lr: float, seed: int, status: str, valid: float | None,
                    test: float | None, metrics: dict | None = None, params: int | None = None,
                    seconds: float | None = None, node: str | None = None, error: str | None = None) -> int:
        def num(v):
            return None if v is None or v != v else float(v)

        with self.conn:
            cur = self.conn.execute(
                "INSERT OR REPLACE INTO retrains (key, protocol, purpose, hash, cell_name, cell_yaml, task, lr, seed,"
                " status, valid, test, metrics, params, seconds, node, error, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, protocol, purpose, hash, cell_name, cell_yaml, task, float(lr), int(seed), status, num(valid),
                 num(test), json.dumps(metrics or {}), params, seconds, node, error, time.time()))
        return int(cur.lastrowid)

    def retrains(self, protocol: str | None = None) -> list[sqlite3.Row]:
        if protocol is None:
            return self.conn.execute("SELECT * FROM retrains ORDER BY id").fetchall()
        return self.conn.execute("SELECT * FROM retrains WHERE protocol = ? ORDER BY id", (protocol,)).fetchall()

    def best(self) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM trials WHERE score IS NOT NULL AND reused_from IS NULL "
                                 "AND origin != 'reference' ORDER BY score DESC, id LIMIT 1").fetchone()


def read_results(run_dir: str | Path):
    """All rows of a run as a pandas DataFrame (metrics and decisions decoded from JSON)."""
    import pandas as pd

    path = Path(run_dir)
    db = path / "results.db" if path.is_dir() else path
    if not db.exists():
        from cellsearch.errors import ConfigError

        raise ConfigError(f"no results database at {db}")
    with sqlite3.connect(db) as conn:
        df = pd.read_sql_query("SELECT * FROM trials ORDER BY id", conn)
    df["metrics"] = df["metrics"].map(lambda s: json.loads(s) if isinstance(s, str) and s else {})
    df["decisions"] = df["decisions"].map(lambda s: json.loads(s) if isinstance(s, str) and s else None)
    return df
