"""Reproduce Table 1 of Jozefowicz, Zaremba & Sutskever 2015 on our tasks.

Ten architectures × Arithmetic, XML and PTB, equal budgets, several seeds, one fixed
hyperparameter setting per task (the paper took the best of many random settings, so our
absolute numbers are lower; the comparison between cells is what this measures). Runs in
parallel worker processes (one torch thread each) and writes ``results.csv`` (one row per
run), ``table.csv`` and ``table.md`` (mean ± std over seeds, beside the paper's numbers).
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from cellsearch.errors import ConfigError
from cellsearch.training.population import shape_groups
from cellsearch.tasks import primary_metric
from cellsearch.training.config import TrainConfig
from cellsearch.training.parallelism import map_in_workers
from cellsearch.fileio import atomic_write, write_csv

ARCHITECTURES = ("tanh", "lstm", "lstm-f", "lstm-i", "lstm-o", "lstm-b", "gru", "mut1", "mut2", "mut3")
TASKS = ("arith", "xml", "ptb")
# Table 1 of the paper: Arithmetic accuracy, XML accuracy, PTB per-word probability (see PAPERS.md).
PAPER = {
    "tanh": (0.295, 0.321, 0.0878), "lstm": (0.892, 0.425, 0.0891), "lstm-f": (0.293, 0.234, 0.0881),
    "lstm-i": (0.751, 0.414, 0.0866), "lstm-o": (0.867, 0.421, 0.0893), "lstm-b": (0.902, 0.444, 0.0895),
    "gru": (0.896, 0.460, 0.0907), "mut1": (0.921, 0.475, 0.0897), "mut2": (0.897, 0.473, 0.0904),
    "mut3": (0.907, 0.465, 0.0916),
}

# Per task: training settings shared by every architecture. "small" fits the whole table
# (10 cells × 3 tasks × 2 seeds) in about an hour on 2 CPU cores; "paper" is closer to the
# paper's scale (8-digit arithmetic, larger models, much longer) and takes days on a CPU.
BUDGETS: dict[str, dict[str, dict[str, Any]]] = {
    "small": {
        # 3-digit operands but up to 5 distractors between characters: ~30-step dependencies
        "arith": dict(steps=3000, hidden_size=128, batch_size=32, lr=5e-3,
                      task_options={"max_digits": 3, "max_distractors": 5, "eval_examples": 1000}),
        "xml": dict(steps=1500, hidden_size=128, batch_size=32, lr=3e-3, task_options={"eval_chars": 20000}),
        "ptb": dict(steps=400, hidden_size=128, batch_size=32, lr=3e-3,
                    task_options={"bptt": 35, "eval_tokens": 20000}),
    },
    # a few steps of everything: for tests of the pipeline, not a result
    "smoke": {
        "arith": dict(steps=5, hidden_size=16, batch_size=8, task_options={"max_digits": 2, "eval_examples": 32}),
        "xml": dict(steps=5, hidden_size=16, batch_size=8, task_options={"eval_chars": 600}),
        "ptb": dict(steps=3, hidden_size=16, batch_size=4, task_options={"bptt": 10, "eval_tokens": 600}),
    },
    "paper": {
        "arith": dict(steps=50000, hidden_size=256, batch_size=20, lr=1e-3, lr_schedule="cosine",
                      task_options={"max_digits": 8}),
        "xml": dict(steps=30000, hidden_size=256, batch_size=20, lr=1e-3, lr_schedule="cosine"),
        "ptb": dict(steps=40000, hidden_size=256, batch_size=20, lr=1e-3, lr_schedule="cosine",
                    task_options={"bptt": 35}),
    },
}


def _run(group: list[dict]) -> list[dict]:
    """Train a group of jobs that differ only in seed, as one population (one row per job)."""
    from cellsearch.runner.worker import train_population_job

    outcomes = train_population_job([job["config"] for job in group], threads=1)
    rows = []
    for job, out in zip(group, outcomes):
        cfg = job["config"]
        rows.append({"cell": cfg["cell"], "task": cfg["task"], "seed": cfg["seed"], "status": out.status,
                     "steps": out.steps, "seconds": out.seconds, "params": out.params,
                     **out.metrics.get("valid", {}), **({"error": out.error} if out.error else {})})
    return rows


def jobs(budget: str, seeds: int, data_dir: str | None, cells=ARCHITECTURES, tasks=TASKS) -> list[dict]:
    """The training jobs of the reproduction: one per (seed, task, cell), each a ``TrainConfig`` (as a
    dict) with the budget's settings for its task. ConfigError for an unknown budget, LimitError for
    too many seeds."""
    if budget not in BUDGETS:
        raise ConfigError(f"budget must be one of {', '.join(BUDGETS)}, not {budget!r}")
    from cellsearch.limits import MAX_POPULATION, check_limit

    check_limit("reproduce_jozefowicz.seeds", "population size", seeds, MAX_POPULATION)  # (before the list of runs is made)
    out = []
    for seed in range(seeds):
        for task in tasks:
            for cell in cells:
                settings = dict(BUDGETS[budget][task])
                out.append({"config": asdict(TrainConfig(cell=cell, task=task, seed=seed, data_dir=data_dir,
                                                         threads=1, **settings))})
    return out


def reproduce_jozefowicz(budget: str = "small", seeds: int = 2, out_dir: str | Path = "runs/jozefowicz",
                         data_dir: str | None = None, workers: int | None = None,
                         cells=ARCHITECTURES, tasks=TASKS,
                         progress: Callable[[int, int, dict], None] | None = None):
    """Train every (cell, task, seed), write the tables, return (per-run DataFrame, table DataFrame)."""
    import pandas as pd

    if "ptb" in tasks:
        from cellsearch.tasks.data import verify

        verify("ptb", data_dir)  # fail before starting an hour of work
    if workers is not None:
        from cellsearch.limits import MAX_PARALLEL, check_limit

        check_limit("reproduce_jozefowicz.workers", "parallel", workers, MAX_PARALLEL)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    todo = jobs(budget, seeds, data_dir, cells, tasks)
    done: list[dict] = []

    def on_result(i: int, n: int, row: dict) -> None:
        done.append(row)
        write_csv(out / "results.csv", pd.DataFrame(done), index=False)  # partial results survive a crash
        if progress:
            progress(i, n, row)

    # the seeds of a (cell, task) train as one population
    groups = [[todo[i] for i in idx] for idx in shape_groups([job["config"] for job in todo])]

    def on_group(i: int, n: int, rows: list[dict]) -> None:
        for row in rows:
            on_result(len(done) + 1, len(todo), row)

    rows = [row for group in map_in_workers(_run, groups, workers or (os.cpu_count() or 1), on_group)
            for row in group]
    runs = pd.DataFrame(rows).sort_values(["task", "cell", "seed"])
    write_csv(out / "results.csv", runs, index=False)
    table = summarise(runs)
    write_csv(out / "table.csv", table)
    atomic_write(out / "table.md", to_markdown(table, budget, seeds))
    atomic_write(out / "settings.json", json.dumps(BUDGETS[budget], indent=2))
    return runs, table


def summarise(runs):
    """Mean and std over seeds per (cell, task), with the paper's numbers beside them."""
    import pandas as pd

    records = []
    for cell in [c for c in ARCHITECTURES if c in set(runs["cell"])]:
        rec: dict[str, Any] = {"cell": cell}
        for t_i, task in enumerate(TASKS):
            sel = runs[(runs.cell == cell) & (runs.task == task)]
            if sel.empty:
                continue
            vals = [v for v in sel[primary_metric(task)].tolist() if v == v and v is not None]
            rec[f"{task}"] = statistics.mean(vals) if vals else float("nan")
            rec[f"{task}_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
            if task == "ptb":
                ppl = [v for v in sel["perplexity"].tolist() if v == v and v is not None]
                rec["ptb_perplexity"] = statistics.mean(ppl) if ppl else float("nan")
            rec[f"{task}_paper"] = PAPER[cell][t_i]
        records.append(rec)
    return pd.DataFrame(records).set_index("cell")


def to_markdown(table, budget: str, seeds: int) -> str:
    """The reproduced table (mean ± std per cell and task) beside the paper's numbers, as Markdown."""
    lines = [f"Jozefowicz et al. 2015, Table 1 — ours ({budget} budget, mean ± std over {seeds} seed(s)) "
             "vs paper", "",
             "| cell | Arith ours | Arith paper | XML ours | XML paper | PTB ppl ours | PTB word-prob ours | "
             "PTB word-prob paper |",
             "|---|---|---|---|---|---|---|---|"]
    for cell, r in table.iterrows():
        def fmt(task: str) -> str:
            if task not in r or r[task] != r[task]:
                return "–"
            return f"{r[task]:.3f} ± {r[task + '_std']:.3f}"

        ppl = f"{r['ptb_perplexity']:.1f}" if "ptb_perplexity" in r and r["ptb_perplexity"] == r["ptb_perplexity"] \
            else "–"
        wp = f"{r['ptb']:.4f}" if "ptb" in r and r["ptb"] == r["ptb"] else "–"
        lines.append(f"| {cell} | {fmt('arith')} | {PAPER[cell][0]:.3f} | {fmt('xml')} | {PAPER[cell][1]:.3f} | "
                     f"{ppl} | {wp} | {PAPER[cell][2]:.4f} |")
    return "\n".join(lines) + "\n"
