"""Search fidelity (``cellsearch fidelity``): how well the search's scores predicted the scores
of the same cells retrained under the final evaluation protocol.

``fidelity_run`` has the runner retrain a sample of the run's scored cells spread over its
score range (``spread_sample``; ``runner.retrain``), correlates search scores with final scores
(Spearman ρ, Kendall τ: ``analysis.stats``) and warns when τ is below ``MIN_TAU``: then the
search's proxy budget is too small to trust its ranking. With ``budgets`` it also draws the
*fidelity curve*: the same cells trained as a search would score them (the search's settings
and learning rate, seeds 0…S−1, mean validation score) at each budget, each budget's ranking
correlated with the final one, and the cheapest budget whose τ reaches ``TARGET_TAU``
recommended. Every training is recorded in the run's database under its own protocol, so a
second call (or ``evaluate``) reuses them. Reports go to ``runs/NAME/fidelity/``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from cellsearch.analysis.evaluation import format_value
from cellsearch.analysis.plots import pyplot
from cellsearch.analysis.stats import RankCorrelation, mean_ci, rank_correlation
from cellsearch.errors import CellWarning, ConfigError
from cellsearch.limits import MAX_BUDGETS, MAX_STEPS, check_limit, shown
from cellsearch.runner.events import EventHandler
from cellsearch.runner.jobs import JobSettings
from cellsearch.runner.protocol import Protocol
from cellsearch.runner.retrain import Cell, CellResult, Retrainer, distinct_labels, scored_cells
from cellsearch.fileio import atomic_write, save_figure, write_csv

T = TypeVar("T")

MIN_TAU = 0.4  # below this Kendall τ the search's ranking is not to be trusted
TARGET_TAU = 0.6  # the fidelity curve recommends the cheapest budget whose τ reaches this


@dataclass
class FidelityReport:
    """What ``fidelity_run`` returns: search vs final scores of the sampled cells, their rank
    correlation, the fidelity curve over budgets (if asked), and the files it wrote."""

    table: Any  # one row per sampled cell: search score, final score (and per task)
    correlation: Any  # stats.RankCorrelation, search score vs final score
    per_task: dict[str, Any]
    warning: str | None
    out_dir: Path
    files: dict[str, Path]
    curve: list[dict[str, Any]] | None = None  # per budget: steps, spearman, kendall, cells (see fidelity_curve)
    recommended: int | None = None  # the cheapest budget with τ ≥ the target (None: none reached it)


def spread_sample(items: list[T], k: int, key: Callable[[T], Any]) -> list[T]:
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
                 min_tau: float = MIN_TAU, on_event: EventHandler | None = None,
                 budgets: Sequence[int] | None = None, target_tau: float = TARGET_TAU) -> FidelityReport:
    """Retrain a spread sample of a run's scored cells; correlate search scores with final scores
    (and, with ``budgets``, each budget's scores: the fidelity curve). ``on_event`` hears of the
    retrainings' progress (``runner.events``)."""
    import pandas as pd

    budgets = check_fidelity_options(sample, budgets, min_tau, target_tau)
    protocol.validate()
    run_dir = Path(run_dir)
    scored = scored_cells(run_dir)
    if len(scored) < 3:
        raise ConfigError(f"{run_dir}: the search scored {len(scored)} distinct cell(s); "
                          f"a rank correlation needs at least 3")
    cells = distinct_labels(spread_sample(scored, sample, key=lambda c: c.search_score))
    results = Retrainer(run_dir, protocol, settings, "fidelity", on_event).run(cells)
    by_cell = _cell_scores(results, cells, protocol.tasks, "test")
    records = []
    for c in cells:
        records.append({"cell": c.label, "hash": c.hash, "search_score": c.search_score,
                        "final_score": by_cell[c.hash]["score"],
                        **{f"final_{t}": by_cell[c.hash][t] for t in protocol.tasks}})
    table = pd.DataFrame.from_records(records)
    corr = rank_correlation(table["search_score"], _failed_last(table["final_score"]))
    per_task = {t: rank_correlation(table["search_score"], _failed_last(table[f"final_{t}"]))
                for t in protocol.tasks} if len(protocol.tasks) > 1 else {}
    curve = recommended = None
    if budgets:
        curve = fidelity_curve(run_dir, protocol, settings, cells, table, budgets, on_event)
        recommended = next((b["steps"] for b in curve if b["kendall"] is not None and b["kendall"] >= target_tau),
                           None)
    warning = None
    if math.isnan(corr.kendall):
        warning = ("no rank correlation: the final scores are all equal (or every retraining failed); the "
                   "search's ranking cannot be checked")
    elif corr.kendall < min_tau:
        warning = (f"Kendall τ = {corr.kendall:.2f} < {min_tau:g}: the search's scores rank cells differently "
                   f"from the evaluation budget's; the proxy budget is too small to trust the search's ranking "
                   f"(search with a larger budget, or compare finalists by retraining them: `cellsearch evaluate`)")
    out = run_dir / "fidelity"
    files = _write_fidelity(table, corr, per_task, warning, protocol, out, curve, recommended, target_tau)
    if warning:
        warnings.warn(warning, CellWarning, stacklevel=2)
    return FidelityReport(table, corr, per_task, warning, out, files, curve, recommended)


def check_fidelity_options(sample: int, budgets: Sequence[int] | None, min_tau: float, target_tau: float) -> list[int]:
    """Check ``fidelity_run``'s own options (before anything is trained; the CLI calls it before it
    prints the protocol); returns the curve's budgets, sorted and distinct."""
    if isinstance(sample, bool) or not isinstance(sample, int) or sample < 3:
        raise ConfigError(f"sample must be at least 3 (a rank correlation needs three cells), not {shown(sample)}",
                          field="fidelity_run.sample")
    budgets = check_budgets(budgets)
    if not -1 <= min_tau <= 1:  # (also refuses NaN) Kendall's τ lies in [-1, 1]
        raise ConfigError(f"min_tau must be in [-1, 1] (Kendall's τ), got {shown(min_tau)}", field="fidelity_run.min_tau")
    if not 0 < target_tau <= 1:
        raise ConfigError(f"target_tau must be in (0, 1], got {shown(target_tau)}", field="fidelity_run.target_tau")
    return budgets


def check_budgets(budgets: Sequence[int] | None) -> list[int]:
    """The curve's budgets, sorted and distinct; one-line errors for bad ones."""
    if not budgets:
        return []
    check_limit("fidelity_run.budgets", "budgets", len(budgets), MAX_BUDGETS)
    for b in budgets:
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise ConfigError(f"budgets: each budget is a number of training steps ≥ 1, got {shown(b)}",
                              field="fidelity_run.budgets")
        check_limit("fidelity_run.budgets", "steps", b, MAX_STEPS)
    return sorted(set(budgets))


def fidelity_curve(run_dir: Path, protocol: Protocol, settings: JobSettings, cells: list[Cell], table: Any,
                   budgets: list[int],
                   on_event: EventHandler | None = None) -> list[dict[str, Any]]:
    """Each budget's ranking of ``cells`` against their final scores (``table["final_score"]``).

    At a budget the cells train as a search would score them: the search's model settings and
    learning rate (no sweep), ``protocol.seeds`` seeds, the mean *validation* score (what a search
    sees); a cell that failed every training ranks last. Adds a ``proxy_<steps>`` column to ``table``."""
    import pandas as pd

    final = _failed_last(table["final_score"])
    curve = []
    for steps in budgets:
        proxy = dataclasses.replace(protocol, steps=steps, minutes=None, lr_factors=(1.0,))
        results = Retrainer(run_dir, proxy, settings, f"fidelity at {steps} steps", on_event).run(cells)
        scores = _cell_scores(results, cells, protocol.tasks, "valid")
        column = f"proxy_{steps}"
        table[column] = [scores[c.hash]["score"] for c in cells]
        corr = rank_correlation(_failed_last(table[column]), final)
        point: dict[str, Any] = {"steps": steps, "spearman": _number(corr.spearman), "kendall": _number(corr.kendall),
                 "spearman_p": _number(corr.spearman_p), "kendall_p": _number(corr.kendall_p),
                 "cells": corr.n, "failed": int(table[column].isna().sum()),
                 "training_steps": steps * protocol.seeds * len(cells) * len(protocol.tasks)}
        if protocol.seeds > 1:  # what fewer seeds per candidate would have given: the first n seeds' mean
            point["kendall_by_seeds"] = {}
            for n in range(1, protocol.seeds):
                few = _cell_scores(results, cells, protocol.tasks, "valid", seeds=n)
                point["kendall_by_seeds"][n] = _number(rank_correlation(
                    _failed_last(pd.Series([few[c.hash]["score"] for c in cells])), final).kendall)
            point["kendall_by_seeds"][protocol.seeds] = point["kendall"]
        curve.append(point)
    return curve


def _number(v: float) -> float | None:
    return None if v is None or math.isnan(v) else float(v)


def _cell_scores(results: Sequence[CellResult], cells: list[Cell], tasks: list[str], split: str,
                 seeds: int | None = None) -> dict[str, dict[str, float]]:
    """Per cell: the mean over seeds (the first ``seeds``, or all) on each task (``split``: "test" or
    "valid") and one ``score``:
    the task's mean itself for one task; for several, the mean over tasks of the score relative to
    the sample's best on that task (so no task dominates by scale). NaN where every run failed."""
    by_cell: dict[str, dict[str, float]] = {c.hash: {} for c in cells}
    for r in results:
        values = getattr(r, split)
        by_cell[r.cell.hash][r.task] = mean_ci([v for seed, v in values.items() if seeds is None or seed < seeds]).mean
    best = {t: max((v[t] for v in by_cell.values() if not math.isnan(v[t])), default=math.nan) for t in tasks}
    for per in by_cell.values():
        if len(tasks) == 1:
            per["score"] = per[tasks[0]]
        else:
            rel = [per[t] / best[t] for t in tasks if best[t] and not math.isnan(per[t])]
            per["score"] = sum(rel) / len(rel) if len(rel) == len(tasks) else math.nan
    return by_cell


def _failed_last(final: Any) -> Any:
    """Final scores for ranking: a cell whose every retraining failed (diverged) is the worst
    outcome, so it ranks last (all such cells tied) instead of dropping out of the correlation."""
    finite = final.dropna()
    return final.fillna(float(finite.min()) - 1.0 if len(finite) else 0.0)


def _corr_json(c: RankCorrelation) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(c).items()}


def _write_fidelity(table: Any, corr: RankCorrelation, per_task: dict[str, Any], warning: str | None, protocol: Protocol,
                    out: Path, curve: list[dict[str, Any]] | None = None, recommended: int | None = None,
                    target_tau: float = TARGET_TAU) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {"csv": out / "fidelity.csv", "markdown": out / "fidelity.md", "plot": out / "fidelity.png",
             "summary": out / "summary.json"}
    write_csv(files["csv"], table, index=False)
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
    if curve:
        files["curve_plot"] = out / "fidelity-curve.png"
        lines += ["", "## Fidelity curve", "",
                  f"The same cells trained as a search scores them (the search's settings and learning rate, "
                  f"{protocol.seeds} seed(s), mean validation score) at each budget, ranked against the final "
                  f"scores above. Recommended (the cheapest budget with τ ≥ {target_tau:g}): "
                  f"{f'**{recommended} steps**' if recommended else f'none of these budgets reaches τ = {target_tau:g}'}.",
                  "", "| budget (steps) | Spearman ρ | Kendall τ | cells | failed | training steps |",
                  "|---|---|---|---|---|---|"]
        for b in curve:
            lines.append(f"| {b['steps']} | {format_value(b['spearman'], '.3f')} | "
                         f"{format_value(b['kendall'], '.3f')} | {b['cells']} | {b['failed']} | "
                         f"{b['training_steps']:,} |")
        if "kendall_by_seeds" in curve[0]:
            n_seeds = list(curve[0]["kendall_by_seeds"])
            lines += ["", "Kendall τ with the mean of the first n seeds per cell (what fewer seeds per candidate "
                      "would rank):", "", "| budget (steps) | " + " | ".join(f"n = {n}" for n in n_seeds) + " |",
                      "|---|" + "---|" * len(n_seeds)]
            for b in curve:
                lines.append(f"| {b['steps']} | " + " | ".join(format_value(b["kendall_by_seeds"][n], ".3f")
                                                              for n in n_seeds) + " |")
        plot_curve(curve, target_tau, files["curve_plot"])
    lines += ["", "| cell | search score | final score |", "|---|---|---|"]
    for r in table.sort_values("search_score", ascending=False).to_dict("records"):
        final = format_value(r["final_score"]) if r["final_score"] == r["final_score"] else "failed (ranked last)"
        lines.append(f"| `{r['cell']}` | {format_value(r['search_score'])} | {final} |")
    atomic_write(files["markdown"], "\n".join(lines) + "\n")
    plot_fidelity(table, corr, files["plot"])
    atomic_write(files["summary"], json.dumps({
        "protocol": protocol.to_json(), "correlation": _corr_json(corr),
        "per_task": {t: _corr_json(c) for t, c in per_task.items()}, "warning": warning,
        **({"budgets": curve, "recommended": recommended, "target_tau": target_tau} if curve else {}),
        "cells": json.loads(table.to_json(orient="records"))}, indent=2) + "\n")
    return files


def plot_fidelity(table: Any, corr: RankCorrelation, path: Path) -> Path:
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
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


def plot_curve(curve: list[dict[str, Any]], target_tau: float, path: Path) -> Path:
    """Spearman ρ and Kendall τ against the training budget (log scale), with the target τ."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    steps = [b["steps"] for b in curve]
    for key, label, marker in (("kendall", "Kendall τ", "o"), ("spearman", "Spearman ρ", "s")):
        ax.plot(steps, [math.nan if b[key] is None else b[key] for b in curve], marker=marker, label=label)
    ax.axhline(target_tau, color="gray", linestyle="--", linewidth=1, label=f"τ = {target_tau:g}")
    ax.set_xscale("log")
    ax.minorticks_off()  # only the budgets themselves on the axis
    ax.set_xticks(steps)
    ax.set_xticklabels([str(s) for s in steps])
    ax.set_xlabel("proxy budget (training steps)")
    ax.set_ylabel("rank correlation with the final scores")
    ax.set_ylim(-1.05, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path
