"""The final evaluation's verdicts (``cellsearch evaluate``): a search's top cells retrained
against baselines, compared honestly, reported as CSV, Markdown, a plot and ``summary.json``.

``evaluate_run`` has the runner retrain the cells under the protocol (``runner.retrain``,
``runner.protocol``) and turns what it measured into one row per cell and task (``compare``):
mean ± Student-t confidence interval of the test scores, and per baseline the win rate
(paired by seed) and Welch's p (``analysis.stats``); a candidate ahead of the best baseline is
a *winner* only when the two intervals do not overlap. Reports go to ``runs/NAME/evaluation/``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from cellsearch.analysis.plots import pyplot
from cellsearch.analysis.stats import Interval, mean_ci, welch, win_rate
from cellsearch.errors import ConfigError
from cellsearch.limits import shown
from cellsearch.runner.events import EventHandler
from cellsearch.runner.jobs import JobSettings
from cellsearch.runner.protocol import Protocol
from cellsearch.runner.retrain import Cell, CellResult, Retrainer, distinct_labels, scored_cells
from cellsearch.fileio import atomic_write, save_figure, write_csv


def compare(results: list[CellResult], confidence: float = 0.95) -> Any:
    """One row per cell and task: mean ± confidence interval of the test scores, and for every
    baseline the win rate (paired by seed) and Welch's p; a candidate whose mean beats the best
    baseline's is a ``winner`` only when the two intervals do not overlap."""
    import pandas as pd

    records = []
    for task in dict.fromkeys(r.task for r in results):
        rows = [r for r in results if r.task == task]
        base = [r for r in rows if r.cell.role == "baseline"]
        cis = {id(r): mean_ci(list(r.test.values()), confidence) for r in rows}
        scored_base = [b for b in base if cis[id(b)].n]
        best = max(scored_base, key=lambda b: cis[id(b)].mean) if scored_base else None
        for r in rows:
            ci = cis[id(r)]
            rec = {"task": task, "cell": r.cell.label, "role": r.cell.role, "hash": r.cell.hash,
                   "search_score": r.cell.search_score, "lr": r.lr, "n": ci.n,
                   "failed": sum(1 for s in r.status.values() if s != "ok"), "mean": ci.mean, "std": ci.std,
                   "ci_low": ci.lo, "ci_high": ci.hi}
            for b in base:
                rate, _ = win_rate(r.test, b.test)
                rec[f"win_rate_vs_{b.cell.label}"] = rate
                rec[f"p_vs_{b.cell.label}"] = welch(list(r.test.values()), list(b.test.values()))[1]
            rec["best_baseline"] = best.cell.label if best else None
            rec["overlaps_best_baseline"] = (ci.overlaps(cis[id(best)]) if best and ci.n and r is not best
                                             else None)
            rec["verdict"] = _verdict(r, ci, best, cis[id(best)] if best else None)
            records.append(rec)
    return pd.DataFrame.from_records(records)


def _verdict(r: CellResult, ci: Interval, best: CellResult | None, best_ci: Interval | None) -> str:
    if r.cell.role == "baseline":
        return "best baseline" if r is best else "baseline"
    if ci.n == 0:
        return "failed"
    if best is None or best_ci is None or best_ci.n == 0:  # (best_ci is None exactly when best is)
        return "no baseline to compare"
    if ci.mean <= best_ci.mean:
        return f"no better than {best.cell.label}"
    if ci.overlaps(best_ci):
        return f"not significant: interval overlaps {best.cell.label}'s"
    return "winner"


@dataclass
class EvaluationReport:
    """What ``evaluate_run`` returns: the comparison table, the protocol, and the files it wrote."""

    table: Any  # pandas DataFrame (see compare)
    protocol: Protocol
    out_dir: Path
    files: dict[str, Path]
    notes: list[str]


def check_evaluation_options(top: int, confidence: float) -> None:
    """Check ``evaluate_run``'s own options (before anything is trained; the CLI calls it before it
    prints the protocol)."""
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ConfigError(f"top must be at least 1, not {shown(top)}", field="evaluate_run.top")
    if not 0 < confidence < 1:  # (also refuses NaN)
        raise ConfigError(f"confidence is the level of the intervals, between 0 and 1 (e.g. 0.95), "
                          f"not {shown(confidence)}", field="evaluate_run.confidence")


def evaluate_run(run_dir: str | Path, protocol: Protocol, settings: JobSettings, *, top: int = 3,
                 baselines: Sequence[str] = ("lstm", "gru"), confidence: float = 0.95,
                 on_event: EventHandler | None = None, pareto: bool = False) -> EvaluationReport:
    """Retrain a run's top cells and the baselines under ``protocol``; write the report.
    ``on_event`` hears of the retrainings' progress (``runner.events``); ``pareto``: the cells of the
    run's Pareto front (``results.pareto_front``) instead of the top ones (at most ``top`` of them)."""
    from cellsearch.library import resolve_cell

    check_evaluation_options(top, confidence)
    if not baselines:
        raise ConfigError("baselines is empty: give at least one baseline cell (e.g. lstm, gru)",
                          field="evaluate_run.baselines")
    protocol.validate()
    run_dir = Path(run_dir)
    notes: list[str] = []
    base_cells = []
    for name in baselines:
        base_cells.append(Cell(str(name), resolve_cell(name), "baseline"))
    base_hashes = {c.hash: c.label for c in base_cells}
    cells = list(base_cells)
    for c in scored_cells(run_dir, top, pareto=pareto):
        if c.hash in base_hashes:  # the search found a baseline again: it is evaluated once, as the baseline
            notes.append(f"the search's cell '{c.label}' has the structure of baseline '{base_hashes[c.hash]}'")
            continue
        cells.append(c)
    distinct_labels(cells)
    if not any(c.role == "candidate" for c in cells):
        notes.append("every top cell of the search is one of the baselines")
    results = Retrainer(run_dir, protocol, settings, "evaluate", on_event).run(cells)
    table = compare(results, confidence)
    # per task: baselines first, then the candidates from the best mean down
    order = table["role"].map({"baseline": 0, "candidate": 1})
    table = table.assign(_order=order).sort_values(["task", "_order", "mean"], ascending=[True, True, False],
                                                   kind="stable").drop(columns="_order").reset_index(drop=True)
    out = run_dir / "evaluation"
    files = _write_evaluation(table, results, protocol, out, confidence, notes)
    return EvaluationReport(table, protocol, out, files, notes)


def format_value(v: Any, spec: str = ".4f") -> str:
    """A report cell: '–' for a missing number, yes/no for a flag."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


def ci_text(row: dict[str, Any]) -> str:
    """'mean ± half-width' of a compare() row (as ``Interval.text``)."""
    return Interval(row["n"], row["mean"], row["std"], row["ci_low"], row["ci_high"]).text()


def evaluation_markdown(table: Any, protocol: Protocol, confidence: float = 0.95, notes: Sequence[str] = ()) -> str:
    """The evaluation report as Markdown: the protocol, one table per task (``table``: ``compare``'s
    DataFrame) and the notes."""
    budget = f"{protocol.steps} steps" if protocol.steps else f"{protocol.minutes} min"
    lines = ["# Final evaluation", "",
             f"Protocol `{protocol.fingerprint}`: {budget} per training, learning rate chosen on seed 0's "
             f"validation score among {', '.join(f'{lr:g}' for lr in protocol.learning_rates)}, then "
             f"{protocol.seeds} seed(s); test-split {', '.join(protocol.tasks)} scores, mean ± "
             f"{confidence:.0%} confidence interval (Student t). Win rate: share of seeds where the cell beats "
             f"the baseline (same seed). p: Welch's t-test. A candidate ahead of the best baseline is a "
             f"*winner* only if the two intervals do not overlap.", ""]
    win_cols = [c for c in table.columns if c.startswith("win_rate_vs_")]
    p_cols = [c for c in table.columns if c.startswith("p_vs_")]
    for task in dict.fromkeys(table["task"]):
        rows = table[table["task"] == task]
        header = ["cell", "role", "lr", "n", f"mean ± {confidence:.0%} CI"]
        header += [f"wins vs {c[len('win_rate_vs_'):]}" for c in win_cols] + [f"p vs {c[len('p_vs_'):]}"
                                                                               for c in p_cols] + ["verdict"]
        lines += [f"## {task}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for r in rows.to_dict("records"):
            cells = [f"`{r['cell']}`", r["role"], format_value(r["lr"], ".3g"), f"{r['n']}" + (
                f" ({r['failed']} failed)" if r["failed"] else ""), ci_text(r)]
            cells += [format_value(r[c], ".0%") if r["role"] == "candidate" else "" for c in win_cols]
            cells += [format_value(r[c], ".3g") if r["role"] == "candidate" else "" for c in p_cols]
            cells.append(r["verdict"])
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    for n in notes:
        lines.append(f"- {n}")
    return "\n".join(lines).rstrip() + "\n"


def _write_evaluation(table: Any, results: list[CellResult], protocol: Protocol, out: Path, confidence: float,
                      notes: list[str]) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {"csv": out / "results.csv", "markdown": out / "results.md", "plot": out / "evaluation.png",
             "runs": out / "runs.csv", "summary": out / "summary.json"}
    write_csv(files["csv"], table, index=False)
    atomic_write(files["markdown"], evaluation_markdown(table, protocol, confidence, notes))
    import pandas as pd

    runs = pd.DataFrame.from_records([{"task": r.task, "cell": r.cell.label, "role": r.cell.role, "hash": r.cell.hash,
                                       "lr": r.lr, "seed": s, "status": r.status[s], "valid": r.valid[s],
                                       "test": r.test[s]} for r in results for s in r.test])
    write_csv(files["runs"], runs, index=False)
    plot_evaluation(table, files["plot"], confidence)
    summary = {"protocol": protocol.to_json(), "confidence": confidence, "notes": notes,
               "rows": json.loads(table.to_json(orient="records")),
               "winners": table[table["verdict"] == "winner"][["task", "cell", "hash"]].to_dict("records")}
    atomic_write(files["summary"], json.dumps(summary, indent=2) + "\n")
    return files


def plot_evaluation(table: Any, path: Path, confidence: float = 0.95) -> Path:
    """Per task: each cell's mean test score with its confidence interval (baselines in grey)."""
    plt = pyplot()
    tasks = list(dict.fromkeys(table["task"]))
    height = max(2.5, 0.45 * table.groupby("task").size().max() + 1.5)
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), height), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        rows = table[table["task"] == task].reset_index(drop=True)
        for i, r in rows.iterrows():
            color = "tab:grey" if r["role"] == "baseline" else ("tab:green" if r["verdict"] == "winner"
                                                                else "tab:blue")
            if r["n"]:
                err = [[r["mean"] - r["ci_low"]], [r["ci_high"] - r["mean"]]] if r["n"] > 1 else None
                ax.errorbar([r["mean"]], [i], xerr=err, fmt="o", color=color, capsize=4)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([f"{c} ({role[0]})" for c, role in zip(rows["cell"], rows["role"])])
        ax.invert_yaxis()
        ax.set_xlabel(f"test score, mean ± {confidence:.0%} CI")
        ax.set_title(task)
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path
