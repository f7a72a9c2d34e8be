"""Tables of already-trained cells, for replaying searches without training.

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
from cellsearch.limits import MAX_RECIPE_FILE_BYTES, MAX_TABLE_FILE_BYTES, check_file_size, clipped
from cellsearch.outcome import TrialOutcome
from cellsearch.store import FINAL_STATUSES

COLUMNS = ("hash", "score", "status", "cell_name", "cell_yaml", "params", "seconds", "metrics", "source", "seeds",
           "curve")
REQUIRED = ("hash", "score")
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".json": "json", ".jsonl": "json"}
STATUSES = tuple(s for s in FINAL_STATUSES if s != "missing")  # outcomes of a training


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
    from cellsearch.limits import check_new_path

    check_new_path("the table file", path)
    if path.is_dir():
        raise ConfigError(f"{path} is a directory: give the table's file name (e.g. {path / 'table.parquet'})")
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"{parent} is a file, not a directory: cannot write {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    # written whole under a private name, then renamed: a reader (or a second writer) never sees half a table
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if fmt == "parquet":
            try:
                df.to_parquet(tmp, index=False)
            except ImportError as exc:
                raise ConfigError(f"writing Parquet needs pyarrow ({exc}); install cellsearch[search] or write "
                                  f"a .csv/.json table instead") from None
        elif fmt == "csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_json(tmp, orient="records", lines=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_table(path: str | os.PathLike):
    """Read and check a table written by ``write_table`` (or by hand in the same shape)."""
    import pandas as pd

    path = Path(path)
    fmt = _format(path)
    if not path.is_file():
        raise ConfigError(f"no benchmark table at {path}")
    check_file_size(path, "table file size", MAX_TABLE_FILE_BYTES)
    try:
        if fmt == "parquet":
            df = pd.read_parquet(path)
        elif fmt == "csv":
            df = pd.read_csv(path, dtype={"hash": str})
        else:
            df = pd.read_json(path, orient="records", lines=True, dtype={"hash": str})
    except ImportError as exc:
        raise ConfigError(f"reading Parquet needs pyarrow ({exc}); install cellsearch[search]") from None
    except (ValueError, OSError) as exc:  # (pyarrow's and pandas' parse errors are ValueErrors)
        raise ConfigError(f"{path}: not a readable {fmt} table ({clipped(str(exc), 160)})") \
            from None
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ConfigError(f"{path}: the table has no column(s) {', '.join(missing)} "
                          f"(columns: {', '.join(map(str, df.columns)) or 'none'})")
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = None
    df["status"] = df["status"].fillna("ok")
    bad = sorted(set(df["status"]) - set(STATUSES))
    if bad:
        raise ConfigError(f"{path}: unknown status(es) {', '.join(map(str, bad))} (known: {', '.join(STATUSES)})")
    if df["hash"].isna().any():
        raise ConfigError(f"{path}: row {int(df['hash'].isna().idxmax()) + 1} has no hash")
    df["score"] = pd.to_numeric(df["score"], errors="coerce")
    return df


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
        return self._entries.get(cell_hash)

    def entries(self) -> list[TableEntry]:
        return list(self._entries.values())

    def best(self) -> TableEntry | None:
        scored = [e for e in self.entries() if e.score is not None and e.status == "ok"]
        return max(scored, key=lambda e: e.score) if scored else None


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
    from cellsearch.results import trained_rows

    rows = [{"hash": r["hash"], "score": r["score"], "status": r["status"], "cell_name": r["cell_name"],
             "cell_yaml": r["cell_yaml"], "params": r["params"], "seconds": r["seconds"], "metrics": r["metrics"],
             "source": str(Path(run_dir))} for r in trained_rows(run_dir) if r["status"] in STATUSES]
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
    best_epoch = min(finite_val)[1] if finite_val else None
    status = NASBENCH_STATUS.get(str(log.get("status", "OK")).strip().lower(), "failed")
    score = math.exp(-val[best_epoch]) if best_epoch is not None else None
    if status == "ok" and score is None:
        status = "failed"
    metrics: dict[str, Any] = {"epochs": len(train), "best_epoch": best_epoch}
    if best_epoch is not None:
        metrics.update(word_prob=score, perplexity=math.exp(val[best_epoch]), val_loss=val[best_epoch])
        if best_epoch < len(test) and test[best_epoch] is not None:
            metrics.update(test_loss=test[best_epoch], test_perplexity=math.exp(test[best_epoch]))
    wall = [t for t in (finite_or_none(w) for w in (log.get("wall_times") or [])) if t is not None]
    params = log.get("num_params")
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
            check_file_size(f, "recipe file size", MAX_RECIPE_FILE_BYTES)
            try:
                log = json.loads(f.read_text())
            except RecursionError:
                raise ConfigError(f"{f}: nested deeper than a NAS-Bench-NLP log can be") from None
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{f}: not valid JSON ({exc})") from None
            if not isinstance(log, dict):
                raise ConfigError(f"{f}: a log must be a JSON object")
            rows.append(nasbench_log_entry(log, str(f)))
        except ConfigError as exc:
            if on_error == "fail":
                raise
            skipped.append((str(f), str(exc)))
    return make_frame(rows), skipped
