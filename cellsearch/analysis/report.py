"""Reports on search runs (and the reproduction table): tables as CSV/Markdown, plots as PNG.

A run directory is what ``cellsearch search`` writes (``config.json``, ``results.db``,
``best.yaml``). ``write_search_report(run_dir, out_dir)`` writes everything below at once;
``compare_runs`` puts the best-so-far curves of several runs (evolution vs random, say) on one
plot. The reference cell's evaluation (origin ``reference``) is not a trial of the strategy and
is left out of the curves and distributions; deduplicated trials (``reused_from``) count in the
best-so-far curve, as they count in the search's budget, but not in the distributions.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

from cellsearch.analysis.plots import markdown_table, pyplot
from cellsearch.errors import ConfigError
from cellsearch.storage.results import best_per_cell, run_config, stage_counts
from cellsearch.storage.rundir import require_run
from cellsearch.fileio import atomic_write, save_figure, write_csv


def load_run(run_dir: str | Path, label: str | None = None):
    """All rows of a run (``cellsearch.storage.store.read_results``) with a ``run`` column."""
    from cellsearch.storage.store import read_results

    path = require_run(run_dir)
    df = read_results(path)
    df.insert(0, "run", label or path.name)
    return df


def _is_reused(df):
    return df["reused_from"].notna() if "reused_from" in df else False


def _trials(df):
    """The strategy's trials: every row but the reference cell's evaluation."""
    if "origin" in df:
        df = df[df["origin"].fillna("") != "reference"]
    return df


def best_so_far(df):
    """Best score after each trial, per strategy (and per run when ``df`` has a ``run`` column).

    Columns: [run,] strategy, trial (1, 2, ... within the group, in database order), id, score, best
    (NaN until the first scored trial).
    """
    import pandas as pd

    df = _trials(df).sort_values("id", kind="stable")
    keys = [k for k in ("run", "strategy") if k in df]
    parts = []
    for _, g in df.groupby(keys, sort=False) if keys else [(None, df)]:
        g = g[keys + ["id", "score"]].copy()
        g["score"] = g["score"].astype(float)
        g.insert(len(keys), "trial", range(1, len(g) + 1))
        g["best"] = g["score"].cummax().ffill()
        parts.append(g)
    cols = keys + ["trial", "id", "score", "best"]
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


def score_distribution(df):
    """Per strategy (and run): trial counts by status and the distribution of scores.

    Deduplicated trials are left out (they repeat a stored result). Columns: [run,] strategy, trials,
    scored, one per status (ok, diverged, failed, stopped-early, rejected, missing), mean, std, min, q25,
    median, q75, max.
    """
    from cellsearch.storage.store import FINAL_STATUSES

    import pandas as pd

    df = _trials(df)
    df = df[~_is_reused(df)] if len(df) else df
    keys = [k for k in ("run", "strategy") if k in df]
    records = []
    for key, g in df.groupby(keys, sort=False) if keys else [((), df)]:
        key = key if isinstance(key, tuple) else (key,)
        s = g["score"].astype(float).dropna()
        rec = dict(zip(keys, key))
        rec.update(trials=len(g), scored=len(s))
        for status in FINAL_STATUSES:
            rec[status] = int((g["status"] == status).sum())
        rec.update(mean=s.mean() if len(s) else math.nan, std=s.std() if len(s) > 1 else math.nan,
                   min=s.min() if len(s) else math.nan, q25=s.quantile(0.25) if len(s) else math.nan,
                   median=s.median() if len(s) else math.nan, q75=s.quantile(0.75) if len(s) else math.nan,
                   max=s.max() if len(s) else math.nan)
        records.append(rec)
    cols = keys + ["trials", "scored", *FINAL_STATUSES, "mean", "std", "min", "q25", "median", "q75", "max"]
    return pd.DataFrame(records, columns=cols)


def top_cells_table(run_dir: str | Path, k: int = 5):
    """The report's table of the ``k`` best distinct cells the strategy evaluated (best evaluation per
    cell, ranked by ``results.best_per_cell``; the reference cell's own evaluation left out, as in
    ``op_frequencies``), with their equations joined by ``;``.

    Columns: rank, hash, cell, score, status, params, origin, stage, evaluations (how often the
    strategy evaluated the cell), equations.
    """
    import pandas as pd

    from cellsearch.dsl.equations import format_equation, inlined_nodes
    from cellsearch.dsl.io import loads_cell

    ranked = _distinct_cells(require_run(run_dir))[:k]
    records = []
    for rank, c in enumerate(ranked, 1):
        g = loads_cell(c["yaml"], warn=False)
        inline = inlined_nodes(g)
        eqs = "; ".join(f"{n.name} = {format_equation(g, n.name, inline)}" for n in g.nodes if n.name not in inline)
        r = c["row"]
        records.append({"rank": rank, "hash": c["hash"], "cell": g.name, "score": c["score"], "status": r["status"],
                        "params": r["params"], "origin": r["origin"], "stage": r["stage"],
                        "evaluations": c["evaluations"], "equations": eqs})
    return pd.DataFrame(records, columns=["rank", "hash", "cell", "score", "status", "params", "origin", "stage",
                                          "evaluations", "equations"])


def _distinct_cells(run_dir: Path) -> list[dict]:
    """One entry per cell the strategy evaluated (its best evaluation, ranked as
    ``cellsearch.storage.results.best_per_cell``): hash, score, yaml, id, row, evaluations."""
    df = _trials(load_run(run_dir))
    cells = []
    for r, evaluations in best_per_cell(df.to_dict("records")):
        score = r["score"]
        cells.append({"hash": r["hash"], "score": float(score) if score == score and score is not None else None,
                      "yaml": r["cell_yaml"], "id": r["id"], "row": r, "evaluations": evaluations})
    return cells


def cell_ops(graph) -> dict[str, int]:
    """How often each op (activations included) occurs among the live nodes of a cell."""
    ops: dict[str, int] = {}
    for n in graph.nodes:
        if n.name in graph.live and n.op != "const":
            ops[n.op] = ops.get(n.op, 0) + 1
    return ops


def op_frequencies(run_dir: str | Path, k: int = 5):
    """How often each op/activation appears among the top-``k`` cells vs all evaluated cells.

    Distinct cells (best evaluation per hash; the reference left out); the top ``k`` are the best
    scored ones. Columns: op, kind (linear / elementwise / activation / scale), top_cells and
    all_cells (cells containing the op), top_share and all_share (those as fractions), top_mean and
    all_mean (occurrences per cell), lift (top_share ÷ all_share: above 1, the op is more common
    among the best cells). Sorted by lift, then by all_share.
    """
    import pandas as pd

    from cellsearch.dsl.io import loads_cell
    from cellsearch.dsl.ops import OPS

    cells = _distinct_cells(require_run(run_dir))
    ranked = sorted((c for c in cells if c["score"] is not None), key=lambda c: (-c["score"], c["id"]))
    top = {c["hash"] for c in ranked[:k]}
    counts = {c["hash"]: cell_ops(loads_cell(c["yaml"], warn=False)) for c in cells}
    ops = sorted({op for cnt in counts.values() for op in cnt})
    n_all, n_top = len(cells), len(top)
    records = []
    for op in ops:
        all_c = [cnt.get(op, 0) for cnt in counts.values()]
        top_c = [counts[h].get(op, 0) for h in top]
        all_share = sum(1 for v in all_c if v) / n_all if n_all else math.nan
        top_share = sum(1 for v in top_c if v) / n_top if n_top else math.nan
        records.append({"op": op, "kind": OPS[op].kind, "top_cells": sum(1 for v in top_c if v),
                        "all_cells": sum(1 for v in all_c if v), "top_share": top_share, "all_share": all_share,
                        "top_mean": sum(top_c) / n_top if n_top else math.nan,
                        "all_mean": sum(all_c) / n_all if n_all else math.nan,
                        "lift": top_share / all_share if all_share else math.nan})
    out = pd.DataFrame(records, columns=["op", "kind", "top_cells", "all_cells", "top_share", "all_share", "top_mean",
                                         "all_mean", "lift"])
    return out.sort_values(["lift", "all_share"], ascending=False, kind="stable", na_position="last").reset_index(
        drop=True)


# ---------------------------------------------------------------------------------------- plots
def plot_best_so_far(curves, path: str | Path, title: str | None = None) -> Path:
    """Best-so-far score against trials, one line per (run,) strategy."""
    plt = pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = [k for k in ("run", "strategy") if k in curves]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = 0
    for key, g in curves.groupby(keys, sort=False) if keys and len(curves) else []:
        key = key if isinstance(key, tuple) else (key,)
        label = " / ".join(str(x) for x in key)
        ax.step(g["trial"], g["best"], where="post", label=label)
        ok = g["score"].notna()
        ax.scatter(g.loc[ok, "trial"], g.loc[ok, "score"], s=8, alpha=0.3)
        drawn += 1
    if drawn:
        ax.legend(fontsize=8, loc="lower right")
    else:
        ax.text(0.5, 0.5, "no trials", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("trial")
    ax.set_ylabel("best score so far (dots: each trial)")
    ax.set_title(title or "best score so far")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


def plot_score_histogram(df, path: str | Path, bins: int = 20, title: str | None = None) -> Path:
    """Histogram of the scores of the strategy's trials, one colour per (run,) strategy."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df = _trials(df)
    df = df[~_is_reused(df)] if len(df) else df
    keys = [k for k in ("run", "strategy") if k in df]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    scored = df[df["score"].notna()] if len(df) else df
    if len(scored):
        groups = list(scored.groupby(keys, sort=False)) if keys else [("all", scored)]
        lo, hi = float(scored["score"].min()), float(scored["score"].max())
        edges = bins if hi > lo else 1
        for key, g in groups:
            key = key if isinstance(key, tuple) else (key,)
            ax.hist(g["score"].astype(float), bins=edges, range=(lo, hi) if hi > lo else None, alpha=0.6,
                    label=" / ".join(str(x) for x in key))
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no scored trials", ha="center", va="center", transform=ax.transAxes)
    n_bad = int(df["score"].isna().sum()) if len(df) else 0
    ax.set_xlabel("score" + (f" ({n_bad} trial(s) without a score not shown)" if n_bad else ""))
    ax.set_ylabel("trials")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title or "score distribution")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------- reports
def plot_pareto_front(run_dir: str | Path, path: str | Path, title: str | None = None) -> tuple[Path, list[str]]:
    """Scatter the run's cells over the first two of its front's objectives
    (``results.front_objectives``: score vs params for a single-objective run), the Pareto front
    (over all of them) drawn as a step line; returns the PNG's path and the objectives."""
    from cellsearch.storage.objectives import DIRECTIONS
    from cellsearch.storage.results import front_objectives, objective_values

    plt = pyplot()
    names = front_objectives(run_dir)
    cells = objective_values(run_dir, names)
    x_name, y_name = (names[1], names[0]) if names[0] == "score" else (names[0], names[1])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    rest = [c for c in cells if c["front"] > 0]
    front = sorted((c for c in cells if c["front"] == 0), key=lambda c: c["objectives"][x_name])
    if cells:
        ax.scatter([c["objectives"][x_name] for c in rest], [c["objectives"][y_name] for c in rest], s=14,
                   alpha=0.5, color="grey", label=f"dominated ({len(rest)})")
        ax.step([c["objectives"][x_name] for c in front], [c["objectives"][y_name] for c in front], where="post",
                color="tab:red", alpha=0.6)
        ax.scatter([c["objectives"][x_name] for c in front], [c["objectives"][y_name] for c in front], s=30,
                   color="tab:red", label=f"Pareto front ({len(front)})", zorder=3)
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no scored cells", ha="center", va="center", transform=ax.transAxes)

    def label(n: str) -> str:
        return f"{n} ({'higher' if DIRECTIONS[n] > 0 else 'lower'} is better)"

    ax.set_xlabel(label(x_name))
    ax.set_ylabel(label(y_name))
    ax.set_title(title or f"Pareto front over {', '.join(names)}", fontsize=10)
    fig.tight_layout()
    saved = save_figure(fig, path, dpi=110)
    plt.close(fig)
    return saved, names


def write_search_report(run_dir: str | Path, out_dir: str | Path, top: int = 5) -> dict[str, Path]:
    """Write a run's report into ``out_dir`` and return the files by name.

    ``trials.csv`` (every row), ``best_so_far.csv``/``.png``, ``score_distribution.csv``/``.md``,
    ``score_histogram.png``, ``top_cells.csv``/``.md``, ``op_frequencies.csv``/``.md``, one drawing per top
    cell in ``cells/`` (``cell_1`` … in the returned dict), ``pareto_front.png``/``.csv`` (the cells over
    the first two objectives, the front marked: ``plot_pareto_front``) and ``report.md`` linking it all.
    """
    from cellsearch.dsl.io import loads_cell
    from cellsearch.dsl.tools import draw
    from cellsearch.storage.store import Store

    run = require_run(run_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df = load_run(run)
    cfg = run_config(run)
    files: dict[str, Path] = {}

    def csv(name: str, frame) -> None:
        write_csv(out / f"{name}.csv", frame, index=False)
        files[f"{name}_csv"] = out / f"{name}.csv"

    def md(name: str, text: str) -> None:
        atomic_write(out / f"{name}.md", text)
        files[f"{name}_md"] = out / f"{name}.md"

    trials = df.copy()
    for col in ("metrics", "decisions"):
        trials[col] = trials[col].map(lambda v: json.dumps(v) if v is not None else "")
    csv("trials", trials)
    curves = best_so_far(df)
    csv("best_so_far", curves)
    files["best_so_far_png"] = plot_best_so_far(curves, out / "best_so_far.png", f"{run.name}: best score so far")
    dist = score_distribution(df)
    csv("score_distribution", dist)
    md("score_distribution", markdown_table(dist))
    files["score_histogram_png"] = plot_score_histogram(df, out / "score_histogram.png",
                                                        title=f"{run.name}: score distribution")
    tops = top_cells_table(run, top)
    csv("top_cells", tops)
    md("top_cells", markdown_table(tops))
    freq = op_frequencies(run, top)
    csv("op_frequencies", freq)
    md("op_frequencies", markdown_table(freq, ".3g"))
    drawings = []
    with Store(run / "results.db", readonly=True) as store:
        for r in tops.itertuples(index=False):
            row = store.lookup(r.hash)
            if row is None:
                continue
            path = draw(loads_cell(row["cell_yaml"], warn=False), out / "cells" / f"rank{r.rank}_{r.hash}.png")
            files[f"cell_{r.rank}"] = path
            drawings.append((r.rank, r.hash, r.score, path))
    stages = stage_counts(run)
    settings = ", ".join(f"{k} {cfg[k]}" for k in ("strategy", "space", "tasks", "trials", "steps", "reference")
                         if k in cfg)
    lines = [f"# Search report: {run.name}", "", f"Run directory `{run}`" + (f"; {settings}" if settings else ""), "",
             f"{len(_trials(df))} trial(s); outcomes: " + (", ".join(f"{k} {v}" for k, v in stages.items()) or "none"),
             "", "## Best score so far", "", "![best so far](best_so_far.png)", "", "## Scores", "",
             markdown_table(dist), "![score histogram](score_histogram.png)", "", f"## Top {top} cells", "",
             markdown_table(tops), ""]
    for rank, h, score, path in drawings:
        score_txt = "–" if score is None or score != score else f"{score:.4f}"
        lines += [f"### {rank}. `{h}` (score {score_txt})", "", f"![cell {h}]({path.relative_to(out).as_posix()})", ""]
    lines += [f"## Ops among the top {top} cells vs all evaluated cells", "", markdown_table(freq, ".3g"), ""]
    from cellsearch.storage.results import pareto_front

    files["pareto_front_png"], names = plot_pareto_front(run, out / "pareto_front.png", f"{run.name}: Pareto front")
    import pandas as pd

    front = pd.DataFrame([{"rank": e["rank"], "hash": e["hash"], **e["objectives"], "cell": e["cell"]}
                          for e in pareto_front(run, names)], columns=["rank", "hash", *names, "cell"])
    csv("pareto_front", front)
    lines += [f"## Pareto front over {', '.join(names)}", "", "![Pareto front](pareto_front.png)", "",
              markdown_table(front), ""]
    md("report", "\n".join(lines))
    return files


def _labels(run_dirs: Sequence[Path], labels: Sequence[str] | None) -> list[str]:
    if labels is not None:
        if len(labels) != len(run_dirs):
            raise ConfigError("give one label per run directory")
        return list(labels)
    names = [p.name for p in run_dirs]
    return [str(p) if names.count(p.name) > 1 else p.name for p in run_dirs]


def compare_runs(run_dirs: Sequence[str | Path], path: str | Path | None = None,
                 labels: Sequence[str] | None = None, title: str | None = None):
    """The best-so-far curves of several runs in one DataFrame (``run`` column = label, default the
    directory name) and, when ``path`` is given, on one plot."""
    import pandas as pd

    dirs = [require_run(d) for d in run_dirs]
    if not dirs:
        raise ConfigError("give at least one run directory")
    frames = [load_run(d, lab) for d, lab in zip(dirs, _labels(dirs, labels))]
    curves = best_so_far(pd.concat(frames, ignore_index=True))
    if path is not None:
        plot_best_so_far(curves, path, title or "best score so far: " + " vs ".join(_labels(dirs, labels)))
    return curves


def compare_distributions(run_dirs: Sequence[str | Path], labels: Sequence[str] | None = None):
    """``score_distribution`` of several runs side by side."""
    import pandas as pd

    dirs = [require_run(d) for d in run_dirs]
    frames = [load_run(d, lab) for d, lab in zip(dirs, _labels(dirs, labels))]
    return score_distribution(pd.concat(frames, ignore_index=True))


# ---------------------------------------------------------------------------------------- reproduction table
def jozefowicz_agreement(table):
    """How well our Jozefowicz table orders the cells like the paper, per task.

    ``table`` is ``cellsearch.reproduce.summarise(runs)``. Columns: task, cells, spearman (rank
    correlation of our means with the paper's numbers over the cells we ran; NaN under 3 cells or
    without spread), ours_best, paper_best.
    """
    import warnings

    import pandas as pd
    from scipy import stats

    records = []
    for task in ("arith", "xml", "ptb"):
        if task not in table:
            continue
        sel = table[[task, f"{task}_paper"]].dropna()
        rho = math.nan
        if len(sel) >= 3 and sel[task].nunique() > 1 and sel[f"{task}_paper"].nunique() > 1:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rho = float(stats.spearmanr(sel[task], sel[f"{task}_paper"]).statistic)
        records.append({"task": task, "cells": len(sel), "spearman": rho,
                        "ours_best": sel[task].idxmax() if len(sel) else None,
                        "paper_best": sel[f"{task}_paper"].idxmax() if len(sel) else None})
    return pd.DataFrame(records, columns=["task", "cells", "spearman", "ours_best", "paper_best"])


def plot_jozefowicz(table, path: str | Path) -> Path:
    """Bars of our mean (± std over seeds) beside the paper's number, one panel per task."""
    plt = pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tasks = [t for t in ("arith", "xml", "ptb") if t in table]
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(5 * max(1, len(tasks)), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        sel = table[table[task].notna()] if task in table else table.iloc[:0]
        x = list(range(len(sel)))
        ax.bar([i - 0.2 for i in x], sel[task], width=0.4, yerr=sel.get(f"{task}_std"), label="ours", capsize=2)
        ax.bar([i + 0.2 for i in x], sel[f"{task}_paper"], width=0.4, label="paper", alpha=0.7)
        ax.set_xticks(x)
        ax.set_xticklabels(list(sel.index), rotation=45, ha="right", fontsize=8)
        ax.set_title({"arith": "Arithmetic (char accuracy)", "xml": "XML (accuracy)",
                      "ptb": "PTB (per-word probability)"}[task], fontsize=9)
        ax.legend(fontsize=8)
    if not tasks:
        axes[0][0].text(0.5, 0.5, "no results", ha="center", va="center")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path
