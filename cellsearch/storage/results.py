"""Read queries over a search run, opened read-only: its settings, its cells ranked, its outcomes.

A run directory is what ``cellsearch search`` writes (``config.json``, ``results.db``). Every
function here checks the run, opens the database read-only (``Store(readonly=True)``) and
changes nothing, so it is safe while the search is still running. The ranking of a run's
cells (``best_per_cell``: one entry per canonical hash, its best evaluation) is the one used
by the leaderboard, the reports and the final evaluation.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Protocol, TypeVar

from cellsearch.storage import rundir
from cellsearch.errors import ConfigError
from cellsearch.storage.settings import SearchConfig
from cellsearch.storage.store import Store, decode_json


def load_search_config(run_dir: str | Path) -> SearchConfig:
    """A run's search settings (its config.json), every field type-checked."""
    path = rundir.require_run(run_dir)
    return SearchConfig.from_dict(rundir.read_run_config(path), str(path / rundir.CONFIG))


def run_config(run_dir: str | Path) -> dict[str, Any]:
    """The search settings of a run (its config.json), checked, as plain data."""
    return asdict(load_search_config(run_dir))


def _present(value: Any) -> bool:
    """A database value that is there: not NULL (None) and not pandas' NaN for it."""
    return value is not None and value == value


def _score(row: _RowLike) -> float:
    score = row["score"]
    return float(score) if _present(score) else -math.inf


class _RowLike(Protocol):
    """A results row as the store gives it (``sqlite3.Row``) or as a dict: its columns by name."""

    def __getitem__(self, key: str, /) -> Any: ...


RowT = TypeVar("RowT", bound=_RowLike)


def best_per_cell(rows: Iterable[RowT]) -> list[tuple[RowT, int]]:
    """The distinct cells among ``rows`` (results rows: ``id``, ``hash``, ``score``, ``reused_from``),
    best first: ``(best evaluation, evaluations)`` per canonical hash.

    Deduplicated rows (``reused_from``) repeat a stored result and take no part. A cell's best
    evaluation is its highest score (the earliest on a tie); cells rank by that score, then by
    the id of that row; cells without any score come last."""
    best: dict[str, RowT] = {}
    counts: dict[str, int] = {}
    for row in rows:
        if _present(row["reused_from"]):
            continue
        h = row["hash"]
        counts[h] = counts.get(h, 0) + 1
        if h not in best or _score(row) > _score(best[h]):
            best[h] = row
    ranked = sorted(best.values(), key=lambda r: (-_score(r), r["id"]))
    return [(r, counts[r["hash"]]) for r in ranked]


def _ranked(run_dir: str | Path, top: int | None, *, reference: bool) -> list[dict[str, Any]]:
    from cellsearch.dsl.equations import format_equation, inlined_nodes
    from cellsearch.dsl.io import loads_cell

    if top is not None and top < 0:
        raise ConfigError(f"top must be 0 or more, not {top}", field="leaderboard.top")
    path = rundir.require_run(run_dir)
    with Store(path / rundir.RESULTS, readonly=True) as store:
        rows = [r for r in store.rows() if reference or r["origin"] != "reference"]
    out = []
    for rank, (r, evaluations) in enumerate(best_per_cell(rows)[:top], 1):
        g = loads_cell(r["cell_yaml"], warn=False)
        inline = inlined_nodes(g)
        out.append({"rank": rank, "hash": r["hash"], "score": r["score"], "status": r["status"],
                    "params": r["params"], "metrics": decode_json(r["metrics"], {}, path / rundir.RESULTS),
                    "cell": g.name,
                    "origin": r["origin"], "stage": r["stage"], "evaluations": evaluations,
                    "equations": {n.name: format_equation(g, n.name, inline) for n in g.nodes if n.name not in inline},
                    "cell_yaml": r["cell_yaml"]})
    return out


def leaderboard(run_dir: str | Path, top: int = 10) -> list[dict[str, Any]]:
    """Distinct cells of a run ranked by score (best evaluation per cell, the reference cell's
    evaluation included), with their equations."""
    return _ranked(run_dir, top, reference=True)


def top_cells(run_dir: str | Path, top: int | None = None) -> list[dict[str, Any]]:
    """The ``top`` best distinct cells the search's strategy evaluated (all with None), ranked as in
    ``leaderboard`` but with the reference cell's own evaluation left out (same keys)."""
    return _ranked(run_dir, top, reference=False)


def front_objectives(run_dir: str | Path) -> list[str]:
    """The objectives a run's Pareto front is drawn over: the search's own when it had several,
    else ``score`` and ``params`` (a single-objective run's cells, by score and size)."""
    names = list(load_search_config(run_dir).objectives)
    return names if len(names) > 1 else ["score", "params"]


def objective_values(run_dir: str | Path, objectives: list[str] | None = None) -> list[dict[str, Any]]:
    """Every distinct cell the search's strategy evaluated (the reference cell left out) with its
    values of ``objectives`` (default ``front_objectives``) and its Pareto ``front`` (0: on the
    front, ``pareto.non_dominated_sort``), in ``best_per_cell``'s order.

    Each cell is its best evaluation; its values are ``storage.objectives``': score and params as
    recorded, macs from the cell at the run's sizes. A cell without every value (failed, no
    parameter count) is left out. Keys: ``hash``, ``objectives`` ({name: value}), ``front``,
    ``score``, ``params``, ``cell``, ``origin``, ``evaluations``, ``cell_yaml`` and ``id`` (its row)."""
    from cellsearch.dsl.io import loads_cell
    from cellsearch.pareto import pareto_ranks
    from cellsearch.storage.objectives import check_objectives, measured, oriented

    names = check_objectives(objectives if objectives is not None else front_objectives(run_dir),
                             field="pareto.objectives")
    path = rundir.require_run(run_dir)
    train = load_search_config(path).train
    with Store(path / rundir.RESULTS, readonly=True) as store:
        rows = [r for r in store.rows() if r["origin"] != "reference"]
    cells = []
    for r, evaluations in best_per_cell(rows):
        if not _present(r["score"]) or not math.isfinite(r["score"]):
            continue
        graph = loads_cell(r["cell_yaml"], warn=False)
        sizes = measured(graph, train, r["params"], decode_json(r["metrics"], {}, path / rundir.RESULTS)) \
            if any(n != "score" for n in names) else {}
        if any(n != "score" and n not in sizes for n in names):
            continue  # (latency not measured: a trial from a search without it, a replay)
        raw = {n: float(r["score"]) if n == "score" else sizes[n] for n in names}
        cells.append({"hash": r["hash"], "objectives": raw, "front": 0, "score": r["score"], "params": r["params"],
                      "cell": graph.name, "origin": r["origin"], "evaluations": evaluations,
                      "cell_yaml": r["cell_yaml"], "id": r["id"]})
    for c, rank in zip(cells, pareto_ranks([oriented([c["objectives"][n] for n in names], names) for c in cells])):
        c["front"] = rank
    return cells


def pareto_front(run_dir: str | Path, objectives: list[str] | None = None) -> list[dict[str, Any]]:
    """The non-dominated cells of ``objective_values`` (its front 0), best score first. Each entry:
    ``rank`` (1 = best score on the front), ``hash``, ``objectives`` ({name: value}), ``score``,
    ``params``, ``cell``, ``origin``, ``evaluations`` and ``cell_yaml``."""
    front = sorted((c for c in objective_values(run_dir, objectives) if c["front"] == 0),
                   key=lambda c: (-c["score"], c["id"]))
    return [{"rank": k, **{key: c[key] for key in ("hash", "objectives", "score", "params", "cell", "origin",
                                                    "evaluations", "cell_yaml")}}
            for k, c in enumerate(front, 1)]


def stage_counts(run_dir: str | Path) -> dict[str, int]:
    """How many candidates each filter stage rejected (and how many passed), for staged searches."""
    with Store(Path(run_dir) / rundir.RESULTS, readonly=True) as store:
        counts: dict[str, int] = {}
        for row in store.rows():
            if row["origin"] == "reference":
                continue
            if row["reused_from"] is not None:
                key = "reused (duplicate)"
            else:
                key = f"rejected at {row['stage']}" if row["status"] == "rejected" else row["status"]
            counts[key] = counts.get(key, 0) + 1
    return counts


def stage_warnings(run_dir: str | Path) -> dict[str, str]:
    """The run's warnings about filter stages that rejected every candidate trained at the time
    (``runner.events.StageRejectedAll``): stage -> its one line; empty when there were none."""
    path = rundir.require_run(run_dir)
    with Store(path / rundir.RESULTS, readonly=True) as store:
        warned = store.get_meta("stage_warnings", {})
    return {str(k): str(v) for k, v in warned.items()} if isinstance(warned, dict) else {}


def best_candidate(run_dir: str | Path) -> dict[str, Any] | None:
    """What the best *candidate* (the reference cell left out, also where the strategy evaluated it
    as a seed or a re-evaluation) scored: ``hash``, ``cell``, ``score``,
    ``status``, ``stage`` and ``value``. The candidate is the best-scored one (value None), deduplicated
    rows left out; when none has a score (every one rejected, say) it is the rejected one with
    the highest metric at the stage that rejected it (``score`` None). None when the run trained
    no candidate."""
    from cellsearch.tasks import primary_metric

    path = rundir.require_run(run_dir)
    db = path / rundir.RESULTS
    with Store(db, readonly=True) as store:
        every = list(store.rows())
    reference = {r["hash"] for r in every if r["origin"] == "reference"}
    # (a seed or a re-evaluation of the reference cell is still the reference: the search found it not)
    rows = [r for r in every if r["hash"] not in reference and r["reused_from"] is None]
    if not rows:
        return None

    def reached(row: Any) -> float:
        stage = row["stage"]
        if row["status"] != "rejected" or not stage:
            return -math.inf
        value = (decode_json(row["metrics"], {}, db).get(stage) or {}).get(primary_metric(stage))
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else -math.inf

    scored = [r for r in rows if _present(r["score"]) and math.isfinite(r["score"])]  # (as ``Store.best``)
    if scored:
        row = max(scored, key=lambda r: (r["score"], -r["id"]))
        value = None
    else:
        row = max(rows, key=lambda r: (reached(r), -r["id"]))
        value = reached(row) if math.isfinite(reached(row)) else None
    return {"hash": row["hash"], "cell": row["cell_name"],
            "score": row["score"] if scored else None, "status": row["status"], "stage": row["stage"],
            "value": value}


def trained_rows(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every evaluation a run holds except the deduplicated ones (which repeat a stored result), in
    database order, as plain dicts with ``metrics`` decoded."""
    path = rundir.require_run(run_dir)
    db = path / rundir.RESULTS
    with Store(db, readonly=True) as store:
        return [dict(r, metrics=decode_json(r["metrics"], {}, db)) for r in store.rows() if r["reused_from"] is None]
