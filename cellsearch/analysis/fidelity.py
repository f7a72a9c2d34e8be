"""Search fidelity (``cellsearch fidelity``): how well the search's scores predicted the scores
of the same cells retrained under the final evaluation protocol.

``fidelity_run`` has the runner retrain a sample of the run's scored cells spread over its
score range (``spread_sample``; ``runner.retrain``), correlates search scores with final scores
(Spearman ρ, Kendall τ: ``analysis.stats``) and warns when τ is below ``MIN_TAU``: then the
search's proxy budget is too small to trust its ranking. Reports go to ``runs/NAME/fidelity/``.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from cellsearch.analysis.evaluation import format_value
from cellsearch.analysis.plots import pyplot
from cellsearch.analysis.stats import mean_ci, rank_correlation
from cellsearch.errors import CellWarning, ConfigError
from cellsearch.runner.events import EventHandler
from cellsearch.runner.jobs import JobSettings
from cellsearch.runner.protocol import Protocol
from cellsearch.runner.retrain import Retrainer, distinct_labels, scored_cells

MIN_TAU = 0.4  # below this Kendall τ the search's ranking is not to be trusted


@dataclass
class FidelityReport:
    table: Any  # one row per sampled cell: search score, final score (and per task)
    correlation: Any  # stats.RankCorrelation, search score vs final score
    per_task: dict[str, Any]
    warning: str | None
    out_dir: Path
    files: dict[str, Path]


def spread_sample(items: list, k: int, key: Callable[[Any], float]) -> list:
    """``k`` items spread evenly over the range of ``key`` (by rank: lowest, highest and evenly
    spaced ranks between), in ascending order of ``key``."""
    ordered = sorted(items, key=key)
    n = len(ordered)
    if k >= n:
        return ordered
    if k == 1:
        return [ordered[-1]]
    picks = sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})
    return [ordered[i] for i in picks]


def fidelity_run(run_dir: str | Path, protocol: Protocol, settings: JobSettings, *, sample: int = 8,
                 min_tau: float = MIN_TAU, on_event: EventHandler | None = None) -> FidelityReport:
    """Retrain a spread sample of a run's scored cells; correlate search scores with final scores.
    ``on_event`` hears of the retrainings' progress (``runner.events``)."""
    import pandas as pd

    if sample < 3:
        raise ConfigError("--sample must be at least 3 (a rank correlation needs three cells)")
    protocol.validate()
    run_dir = Path(run_dir)
    scored = scored_cells(run_dir)
    if len(scored) < 3:
        raise ConfigError(f"{run_dir}: the search scored {len(scored)} distinct cell(s); "
                          f"a rank correlation needs at least 3")
    cells = distinct_labels(spread_sample(scored, sample, key=lambda c: c.search_score))
    results = Retrainer(run_dir, protocol, settings, "fidelity", on_event).run(cells)
    by_cell: dict[str, dict[str, float]] = {c.hash: {} for c in cells}
    for r in results:
        by_cell[r.cell.hash][r.task] = mean_ci(list(r.test.values())).mean
    # one final score per cell: the test score itself for one task; for several, the mean over
    # tasks of the score relative to the sample's best on that task (so no task dominates by scale)
    best_per_task = {t: max((v[t] for v in by_cell.values() if not math.isnan(v[t])), default=math.nan)
                     for t in protocol.tasks}
    records = []
    for c in cells:
        per = by_cell[c.hash]
        if len(protocol.tasks) == 1:
            final = per[protocol.tasks[0]]
        else:
            rel = [per[t] / best_per_task[t] for t in protocol.tasks if best_per_task[t] and not math.isnan(per[t])]
            final = sum(rel) / len(rel) if len(rel) == len(protocol.tasks) else math.nan
        records.append({"cell": c.label, "hash": c.hash, "search_score": c.search_score, "final_score": final,
                        **{f"final_{t}": per[t] for t in protocol.tasks}})
    table = pd.DataFrame.from_records(records)
    corr = rank_correlation(table["search_score"], _failed_last(table["final_score"]))
    per_task = {t: rank_correlation(table["search_score"], _failed_last(table[f"final_{t}"]))
                for t in protocol.tasks} if len(protocol.tasks) > 1 else {}
    warning = None
    if math.isnan(corr.kendall):
        warning = ("no rank correlation: the final scores are all equal (or every retraining failed); the "
                   "search's ranking cannot be checked")
    elif corr.kendall < min_tau:
        warning = (f"Kendall τ = {corr.kendall:.2f} < {min_tau:g}: the search's scores rank cells differently "
                   f"from the evaluation budget's; the proxy budget is too small to trust the search's ranking "
                   f"(search with a larger --budget, or compare finalists with `cellsearch evaluate`)")
    out = run_dir / "fidelity"
    files = _write_fidelity(table, corr, per_task, warning, protocol, out)
    if warning:
        warnings.warn(warning, CellWarning, stacklevel=2)
    return FidelityReport(table, corr, per_task, warning, out, files)


def _failed_last(final):
    """Final scores for ranking: a cell whose every retraining failed (diverged) is the worst
    outcome, so it ranks last (all such cells tied) instead of dropping out of the correlation."""
    finite = final.dropna()
    return final.fillna(float(finite.min()) - 1.0 if len(finite) else 0.0)


def _corr_json(c) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(c).items()}


def _write_fidelity(table, corr, per_task: dict, warning: str | None, protocol: Protocol,
                    out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {"csv": out / "fidelity.csv", "markdown": out / "fidelity.md", "plot": out / "fidelity.png",
             "summary": out / "summary.json"}
    table.to_csv(files["csv"], index=False)
    budget = f"{protocol.steps} steps" if protocol.steps else f"{protocol.minutes} min"
    lines = ["# Search fidelity", "",
             f"{len(table)} cells sampled over the search's score range, retrained with the evaluation protocol "
             f"`{protocol.fingerprint}` ({budget}, {protocol.seeds} seed(s), learning rate chosen among "
             f"{', '.join(f'{lr:g}' for lr in protocol.learning_rates)}). A cell whose every retraining "
             f"failed ranks last.", "",
             f"- Spearman ρ = {format_value(corr.spearman, '.3f')} (p = {format_value(corr.spearman_p, '.3g')})",
             f"- Kendall τ = {format_value(corr.kendall, '.3f')} (p = {format_value(corr.kendall_p, '.3g')})"]
    for t, c in per_task.items():
        lines.append(f"- {t}: Spearman ρ = {format_value(c.spearman, '.3f')}, "
                     f"Kendall τ = {format_value(c.kendall, '.3f')}")
    if warning:
        lines += ["", f"**Warning:** {warning}"]
    lines += ["", "| cell | search score | final score |", "|---|---|---|"]
    for r in table.sort_values("search_score", ascending=False).to_dict("records"):
        final = format_value(r["final_score"]) if r["final_score"] == r["final_score"] else "failed (ranked last)"
        lines.append(f"| `{r['cell']}` | {format_value(r['search_score'])} | {final} |")
    files["markdown"].write_text("\n".join(lines) + "\n")
    plot_fidelity(table, corr, files["plot"])
    files["summary"].write_text(json.dumps({
        "protocol": protocol.to_json(), "correlation": _corr_json(corr),
        "per_task": {t: _corr_json(c) for t, c in per_task.items()}, "warning": warning,
        "cells": json.loads(table.to_json(orient="records"))}, indent=2) + "\n")
    return files


def plot_fidelity(table, corr, path: Path) -> Path:
    """Search score against final score, one dot per sampled cell."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ok = table[table["final_score"].notna()]
    ax.scatter(ok["search_score"], ok["final_score"], color="tab:blue", zorder=3)
    for r in ok.to_dict("records"):
        ax.annotate(r["cell"], (r["search_score"], r["final_score"]), fontsize=7, alpha=0.7,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("search score (proxy budget)")
    ax.set_ylabel("final score (evaluation protocol)")
    ax.set_title(f"Spearman ρ = {format_value(corr.spearman, '.2f')}, "
                 f"Kendall τ = {format_value(corr.kendall, '.2f')}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
