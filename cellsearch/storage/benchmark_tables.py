"""Benchmark tables: already-trained cells, looked up by hash to replay searches without training.

A **benchmark table** has one row per trained cell, keyed by the cell's canonical structural
hash (``cellsearch.dsl.hashing``), so a candidate matches a table row whatever its node names
or argument order. Columns:

========== =========================================================================
hash       canonical hash of the cell (required)
score      higher is better; empty when training gave no score (required)
status     ok | diverged | failed | stopped-early | rejected (default ok)
cell_name  the cell's name (optional)
cell_yaml  the cell in equation form (optional; lets a replay write ``best.yaml``)
params     parameter count (optional)
seconds    what training it cost, in seconds (optional; for cost-aware comparisons)
metrics    JSON object {task: {metric: value}} (optional)
source     where the row came from: a run directory, ``nasbench_nlp`` (optional)
seeds      how many trainings (seeds) the score is the mean of (optional)
curve      JSON learning curve {"steps": [...], "mean": [...], "members": [[...], ...]}: the
           primary metric at each evaluation step, the mean over seeds and each seed's
           (optional; ``benchmarks/make_table.py --seeds``; what early stopping is replayed on)
========== =========================================================================

Tables are written and read as Parquet, CSV or JSON (one record per line), chosen by the file's
suffix. They come from our own runs (``export_run``: every cell a search trained, with its
search score) or from NAS-Bench-NLP training logs (``import_nasbench_logs``). When a table has
several rows for one cell (re-evaluations, several seeds), a lookup gives the first one.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from cellsearch.errors import ConfigError
from cellsearch.fileio import atomic_write, check_regular, read_regular
from cellsearch.limits import (MAX_RECIPE_FILE_BYTES, MAX_TABLE_DATA_BYTES, MAX_TABLE_FILE_BYTES, MAX_TABLE_ROWS,
                               LimitError, check_limit, check_new_path, clipped, shown)
from cellsearch.storage.outcome import TrialOutcome
from cellsearch.storage.store import FINAL_STATUSES

COLUMNS = ("hash", "score", "status", "cell_name", "cell_yaml", "params", "seconds", "metrics", "source", "seeds",
           "curve")
REQUIRED = ("hash", "score")
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".json": "json", ".jsonl": "json"}
STATUSES = tuple(s for s in FINAL_STATUSES if s != "missing")  # outcomes of a training
# what each column holds (besides empty cells): the schema ``read_table`` checks
TEXT_COLUMNS = ("hash", "status", "cell_name", "cell_yaml", "metrics", "source", "curve")
NUMBER_COLUMNS = ("score", "params", "seconds", "seeds")
COUNT_COLUMNS = ("params", "seeds")  # whole numbers >= 0


def _format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(f"{path}: unknown table format '{path.suffix}' (use {', '.join(sorted(FORMATS))})")
    return fmt


def finite_or_none(value: Any) -> float | None:
    """``value`` as a float, or None when it is missing, not a number or not finite."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def make_frame(rows: Iterable[dict[str, Any]]):
    """A table (pandas DataFrame with the columns above) from row dicts; ``metrics`` dicts become JSON."""
    import pandas as pd

    records = []
    for r in rows:
        rec = {c: r.get(c) for c in COLUMNS}
        for key in ("metrics", "curve"):
            if isinstance(rec[key], dict):
                rec[key] = json.dumps(rec[key], allow_nan=False, default=str)
        rec["score"] = finite_or_none(rec["score"])
        rec["status"] = rec["status"] or "ok"
        records.append(rec)
    df = pd.DataFrame.from_records(records, columns=list(COLUMNS))
    df["score"] = df["score"].astype("float64")
    df["params"] = df["params"].astype("Int64")
    df["seconds"] = df["seconds"].astype("float64")
    df["seeds"] = df["seeds"].astype("Int64")
    return df


def write_table(df, path: str | os.PathLike) -> Path:
    """Write a table; the format follows the suffix (.parquet, .csv, .json/.jsonl)."""
    path = Path(path)
    fmt = _format(path)
    check_new_path("the table file", path)
    if path.is_dir():
        raise ConfigError(f"{path} is a directory: give the table's file name (e.g. {path / 'table.parquet'})")
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"{parent} is a file, not a directory: cannot write {path}")

    def write(f) -> None:
        if fmt == "parquet":
            try:
                df.to_parquet(f, index=False)
            except ImportError as exc:
                raise ConfigError(f"writing Parquet needs pyarrow ({exc}); install cellsearch[search] or write "
                                  f"a .csv/.json table instead") from None
        elif fmt == "csv":
            df.to_csv(f, index=False)
        else:
            df.to_json(f, orient="records", lines=True)

    # written whole under a private name, then renamed: a reader (or a second writer) never sees half a table
    return atomic_write(path, write)


def read_table(path: str | os.PathLike):
    """Read and check a table written by ``write_table`` (or by hand in the same shape).

    What reading may cost is checked first: the file's size, and for Parquet the rows and the
    decoded size its metadata states (a small file can expand to millions of rows); CSV and JSON
    stop one row past ``MAX_TABLE_ROWS``. Then every column's values are checked against the
    schema (text, numbers, counts): a bad table is one ``ConfigError`` naming the column and row.
    """
    import pandas as pd

    path = Path(path)
    fmt = _format(path)
    if not path.exists():
        raise ConfigError(f"no benchmark table at {path}")
    check_regular(path, "table file size", MAX_TABLE_FILE_BYTES)  # (not a FIFO, a device or a directory)
    try:
        if fmt == "parquet":
            _check_parquet_size(path)
            df = pd.read_parquet(path)
        elif fmt == "csv":
            # text columns as text: a CSV cell reads as a number only where the schema says number
            df = pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS}, nrows=MAX_TABLE_ROWS + 1)
        else:  # JSON keeps its own types (dtype=False: no guessing that "1" is a number)
            df = pd.read_json(path, orient="records", lines=True, dtype=False, nrows=MAX_TABLE_ROWS + 1)
    except ImportError as exc:
        raise ConfigError(f"reading Parquet needs pyarrow ({exc}); install cellsearch[search]") from None
    except MemoryError:  # (pyarrow's ArrowMemoryError too) past the checks above: say so in one line
        raise ConfigError(f"{path}: the table is too large to read into memory") from None
    except (ValueError, OSError, NotImplementedError) as exc:  # (pyarrow's and pandas' parse errors)
        raise ConfigError(f"{path}: not a readable {fmt} table ({clipped(str(exc), 160)})") \
            from None
    if len(df) > MAX_TABLE_ROWS:
        raise LimitError(f"{path}: rows", "table rows", f"more than {MAX_TABLE_ROWS}", MAX_TABLE_ROWS)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ConfigError(f"{path}: the table has no column(s) {', '.join(missing)} "
                          f"(columns: {clipped(', '.join(map(str, df.columns))) or 'none'})")
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = None
    _check_schema(df, path)
    df["status"] = df["status"].fillna("ok")
    bad = sorted(set(df["status"]) - set(STATUSES))
    if bad:
        raise ConfigError(f"{path}: unknown status(es) {clipped(', '.join(bad))} (known: {', '.join(STATUSES)})")
    if df["hash"].isna().any():
        raise ConfigError(f"{path}: row {int(df['hash'].isna().to_numpy().argmax()) + 1} has no hash")
    return df


def _check_parquet_size(path: Path) -> None:
    """Refuse a Parquet table whose metadata states more rows or decoded bytes than the limits,
    before any of its data is read."""
    import pyarrow.parquet as pq

    meta = pq.read_metadata(path)
    check_limit(f"{path}: rows", "table rows", meta.num_rows, MAX_TABLE_ROWS)
    decoded = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    check_limit(f"{path}: decoded size in bytes", "table data size", decoded, MAX_TABLE_DATA_BYTES)


def _missing_cell(value: Any) -> bool:
    """An empty cell: None, NaN or pandas' NA (the empty cell of a column, by its type)."""
    import pandas as pd

    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def _number(value: Any) -> bool:
    """A real number, or text that reads as one (a CSV cell of a column that also holds text)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return False
        return True
    return False


def _count(value: Any) -> bool:
    """A whole count: a number that is finite, integral and >= 0."""
    if not _number(value):
        return False
    v = float(value)
    return math.isfinite(v) and v >= 0 and v == int(v)


def _check_schema(df, path: Path) -> None:
    """Check that every column holds what the schema says (``TEXT_COLUMNS``, ``NUMBER_COLUMNS``,
    ``COUNT_COLUMNS``) besides empty cells, else ConfigError naming the column, the first bad row
    and its value; a number column that is not numeric by its type (numbers given as text, or no
    cell at all) becomes floats."""
    import numpy as np
    import pandas as pd

    for column in (*TEXT_COLUMNS, *NUMBER_COLUMNS):
        values = df[column]
        if column in TEXT_COLUMNS:
            if isinstance(values.dtype, pd.StringDtype):  # text and empty cells only, by its type
                continue
            ok, kind = (lambda v: isinstance(v, str)), "text"
        elif values.dtype.kind in "iuf" and column not in COUNT_COLUMNS:
            continue  # numbers by its type
        else:
            ok, kind = (_count, "whole numbers >= 0") if column in COUNT_COLUMNS else (_number, "numbers")
            if values.dtype.kind in "iuf":  # numbers by type: only the count rule to check, at once
                v = values.to_numpy(dtype="float64", na_value=np.nan)
                present = ~np.isnan(v)
                with np.errstate(invalid="ignore"):
                    good = np.isfinite(v) & (v >= 0) & (v == np.round(v))
                if (good | ~present).all():
                    continue
        for row, value in enumerate(values.tolist(), 1):
            if not _missing_cell(value) and not ok(value):
                raise ConfigError(f"{path}: column '{column}' must hold {kind} or be empty; row {row} holds "
                                  f"{shown(value)} ({type(value).__name__})")
        if column in NUMBER_COLUMNS and values.dtype.kind not in "iuf":  # numbers given as text, or no cell
            df[column] = np.array([np.nan if _missing_cell(v) else float(v) for v in values.tolist()],
                                  dtype="float64")


@dataclass
class TableEntry:
    """One trained cell of a replay table, as a search trial's outcome."""

    hash: str
    score: float | None
    status: str
    cell_name: str | None
    cell_yaml: str | None
    params: int | None
    seconds: float | None
    metrics: dict

    def outcome(self) -> TrialOutcome:
        """What the search trial (``runner.trial.evaluate_candidate``) gave for this cell; ``seconds`` is
        what its training cost when the table was made."""
        status = self.status if self.status in STATUSES else "failed"
        if status == "ok" and self.score is None:
            status = "failed"
        return TrialOutcome(score=self.score, status=status, stage=None, metrics=self.metrics,
                            params=self.params, seconds=self.seconds, error=None)


class BenchmarkTable:
    """A table loaded for lookups by canonical hash (the first row of each cell)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        df = read_table(self.path)
        self.rows = len(df)
        self._entries: dict[str, TableEntry] = {}
        for r in df.to_dict("records"):
            h = str(r["hash"])
            if h in self._entries:
                continue
            metrics = r.get("metrics")
            if isinstance(metrics, str) and metrics:
                try:
                    metrics = json.loads(metrics)
                except json.JSONDecodeError:
                    metrics = {}
            self._entries[h] = TableEntry(
                hash=h, score=finite_or_none(r["score"]), status=str(r["status"]),
                cell_name=None if _missing(r.get("cell_name")) else str(r["cell_name"]),
                cell_yaml=None if _missing(r.get("cell_yaml")) else str(r["cell_yaml"]),
                params=None if _missing(r.get("params")) else int(r["params"]),
                seconds=finite_or_none(r.get("seconds")), metrics=metrics if isinstance(metrics, dict) else {})

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, cell_hash: str) -> bool:
        return cell_hash in self._entries

    def lookup(self, cell_hash: str) -> TableEntry | None:
        """The table's entry for the cell with this canonical hash, or None."""
        return self._entries.get(cell_hash)

    def entries(self) -> list[TableEntry]:
        """Every entry of the table."""
        return list(self._entries.values())

    def best(self) -> TableEntry | None:
        """The entry with the highest score among those that trained ("ok"), or None."""
        scored = [(e, e.score) for e in self.entries() if e.score is not None and e.status == "ok"]
        return max(scored, key=lambda pair: pair[1])[0] if scored else None


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN (pandas' empty cell)
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------------- sources
def export_run(run_dir: str | os.PathLike):
    """Every cell a search trained (duplicates reused by the search left out), as a table."""
    from cellsearch.storage.results import trained_rows

    rows = [{"hash": r["hash"], "score": r["score"], "status": r["status"], "cell_name": r["cell_name"],
             "cell_yaml": r["cell_yaml"], "params": r["params"], "seconds": r["seconds"], "metrics": r["metrics"],
             "source": str(Path(run_dir))} for r in trained_rows(Path(run_dir)) if r["status"] in STATUSES]
    return make_frame(rows)


NASBENCH_STATUS = {"ok": "ok", "nan": "diverged", "diverged": "diverged"}


def nasbench_log_entry(log: dict[str, Any], where: str) -> dict[str, Any]:
    """One table row from a NAS-Bench-NLP training log (the published JSON format).

    A log carries the recipe (``recepie``, a JSON string, as NAS-Bench-NLP spells it; ``recipe``
    and an already-decoded object are accepted too), ``num_params``, per-epoch ``train_losses``,
    ``val_losses`` and ``test_losses`` (mean cross-entropy per word; NaN once training diverged),
    ``wall_times`` per epoch and ``status``. The score is the best epoch's validation word
    probability exp(−loss) (= 1 / perplexity, higher is better: our PTB task's primary metric);
    the test loss is the one at that epoch, as NAS-Bench-NLP's own environment reads it.
    """
    from cellsearch.dsl.hashing import canonical_hash
    from cellsearch.dsl.io import dumps_cell
    from cellsearch.dsl.nasbench import decode_recipe, recipe_to_cell
    from cellsearch.errors import CellError

    recipe = log.get("recepie", log.get("recipe"))
    if recipe is None:
        raise ConfigError(f"{where}: not a NAS-Bench-NLP log (no 'recepie' field; keys: "
                          f"{', '.join(sorted(log)) or 'none'})")
    try:
        recipe = decode_recipe(recipe)
    except ValueError as exc:
        raise ConfigError(f"{where}: the recipe is not valid JSON ({exc})") from None
    if not isinstance(recipe, dict):
        raise ConfigError(f"{where}: the recipe must be a JSON object, not {type(recipe).__name__}")
    name = f"nb_{log.get('recepie_id', log.get('recipe_id', Path(where).stem))}"
    name = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in str(name))
    try:
        graph = recipe_to_cell(recipe, name)
    except CellError as exc:
        raise ConfigError(f"{where}: {exc}") from None

    def losses(key: str) -> list[float | None]:
        value = log.get(key) or []
        if not isinstance(value, list):
            raise ConfigError(f"{where}: '{key}' must be a list of per-epoch losses")
        return [finite_or_none(v) for v in value]

    train, val, test = losses("train_losses"), losses("val_losses"), losses("test_losses")
    finite_val = [(v, i) for i, v in enumerate(val) if v is not None]
    best_val, best_epoch = min(finite_val) if finite_val else (None, None)
    status = NASBENCH_STATUS.get(str(log.get("status", "OK")).strip().lower(), "failed")
    score = math.exp(-best_val) if best_val is not None else None
    if status == "ok" and score is None:
        status = "failed"
    metrics: dict[str, Any] = {"epochs": len(train), "best_epoch": best_epoch}
    if best_val is not None and best_epoch is not None:
        metrics.update(word_prob=score, perplexity=math.exp(best_val), val_loss=best_val)
        test_loss = test[best_epoch] if best_epoch < len(test) else None
        if test_loss is not None:
            metrics.update(test_loss=test_loss, test_perplexity=math.exp(test_loss))
    wall = [t for t in (finite_or_none(w) for w in (log.get("wall_times") or [])) if t is not None]
    params: Any = log.get("num_params")  # whatever the log holds: checked below
    return {"hash": canonical_hash(graph), "score": score, "status": status, "cell_name": graph.name,
            "cell_yaml": dumps_cell(graph), "params": int(params) if finite_or_none(params) is not None else None,
            "seconds": sum(wall) if wall else None, "metrics": {"ptb": metrics}, "source": "nasbench_nlp"}


def import_nasbench_logs(log_dir: str | os.PathLike, *, on_error: str = "fail"):
    """A table from a directory (searched recursively) or a single file of NAS-Bench-NLP JSON logs.

    ``on_error``: ``fail`` stops at the first unreadable log; ``skip`` leaves it out (the
    returned list of ``(file, reason)`` says which).
    """
    if on_error not in ("fail", "skip"):
        raise ConfigError(f"on_error must be fail or skip, not {on_error!r}")
    root = Path(log_dir)
    if not root.exists():
        raise ConfigError(f"no NAS-Bench-NLP logs at {root}")
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*.json") if p.is_file())
    if not files:
        raise ConfigError(f"{root}: no .json log files found")
    rows, skipped = [], []
    for f in files:
        try:
            try:
                log = json.loads(read_regular(f, "recipe file size", MAX_RECIPE_FILE_BYTES))
            except RecursionError:
                raise ConfigError(f"{f}: nested deeper than a NAS-Bench-NLP log can be") from None
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{f}: not valid JSON ({exc})") from None
            except OSError as exc:
                raise ConfigError(f"{f}: cannot read it ({exc.strerror or exc})") from None
            if not isinstance(log, dict):
                raise ConfigError(f"{f}: a log must be a JSON object")
            rows.append(nasbench_log_entry(log, str(f)))
        except ConfigError as exc:
            if on_error == "fail":
                raise
            skipped.append((str(f), str(exc)))
    return make_frame(rows), skipped
