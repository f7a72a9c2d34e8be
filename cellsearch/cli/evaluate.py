"""``cellsearch evaluate`` and ``cellsearch fidelity``: the final evaluation protocol of a search run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from cellsearch.cli import cli_errors, console, err_console
from cellsearch.errors import ConfigError


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise ConfigError(f"{what} is empty")
    return values


def _budgets(text: str | None) -> list[int] | None:
    """``--budgets 100,200,400``: distinct step counts, checked before anything else happens."""
    from cellsearch.analysis.fidelity import check_budgets
    from cellsearch.limits import shown

    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--budgets must be comma-separated step counts, got {shown(text)}") from None
    if not values:
        raise ConfigError("--budgets is empty")
    return check_budgets(values)


def _names(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def _baselines(text: str | None) -> list[str]:
    """The ``--baselines`` names, each checked to name a cell (built-in or a readable cell file)."""
    from cellsearch.library import resolve_cell

    names = _names(text) or []
    if not names:
        raise ConfigError("give at least one baseline cell (--baselines lstm,gru)")
    for name in names:
        resolve_cell(name)
    return names


def _setup(purpose: str, run_dir: Path, seeds: int, budget: int | None, minutes: float | None, tasks: str | None,
           lrs: str, parallel: int, backend: str, address: str | None, cpus_per_trial: int | None,
           gpus_per_trial: float, data_dir: Path | None, population: bool = True, recipe: str | None = None):
    """The protocol, the job settings and the run's writer lock (the caller releases it), taken after
    checking the run: a refusal comes before anything is printed or trained. ``recipe`` (a training
    recipe) replaces the run's training settings, all but the budget."""
    from cellsearch.storage.rundir import RESULTS, require_run
    from cellsearch.runner.jobs import JobSettings
    from cellsearch.runner.protocol import protocol_for_run
    from cellsearch.storage.store import Store
    from cellsearch.storage.writer_lock import WriterLock

    if recipe is not None:  # (a bad recipe is refused before the run is locked)
        from cellsearch.training.recipes import load_recipe

        load_recipe(recipe)
    Store(require_run(run_dir) / RESULTS, readonly=True).close()
    lock = WriterLock(run_dir, f"cellsearch {purpose}").acquire()
    try:
        protocol = protocol_for_run(run_dir, steps=budget, minutes=minutes, seeds=seeds,
                                    lr_factors=_floats(lrs, "--lrs"), tasks=_names(tasks),
                                    data_dir=str(data_dir.resolve()) if data_dir else None, recipe=recipe)
        settings = JobSettings(parallel=parallel, backend=backend, address=address, cpus_per_trial=cpus_per_trial,
                               gpus_per_trial=gpus_per_trial, population=population)
        settings.validate()
    except BaseException:
        lock.release()
        raise
    budget_text = f"{protocol.steps} steps" if protocol.steps else f"{protocol.minutes:g} min"
    err_console.print(f"protocol {protocol.fingerprint}: {budget_text} per training, learning rates "
                      f"{', '.join(f'{lr:g}' for lr in protocol.learning_rates)}, {protocol.seeds} seed(s), "
                      f"tasks {', '.join(protocol.tasks)}", highlight=False)
    return protocol, settings, lock


# The options evaluate and fidelity share (the same protocol and the same cluster settings)
RunDir = Annotated[Path, typer.Argument(help="runs/NAME of a search.")]
Budget = Annotated[Optional[int], typer.Option(help="Training steps per training (default: 4 × the search's budget).")]
Minutes = Annotated[Optional[float], typer.Option(help="Or minutes per training.")]
Tasks = Annotated[Optional[str], typer.Option(help="Comma-separated tasks (default: the search's).")]
Lrs = Annotated[str, typer.Option(help="Learning-rate sweep: factors of the search's learning rate, chosen on seed "
                                       "0's validation score.")]
Parallel = Annotated[int, typer.Option(min=1, help="Concurrent trainings.")]
Backend = Annotated[str, typer.Option(help="ray | local (in-process, sequential)")]
Address = Annotated[Optional[str], typer.Option(help="Join a Ray cluster at HOST:PORT.")]
CpusPerTrial = Annotated[Optional[int], typer.Option(help="CPUs (= torch threads) per training.")]
GpusPerTrial = Annotated[float, typer.Option(help="GPUs per training.")]
DataDir = Annotated[Optional[Path], typer.Option(help="Data root for PTB.")]
Progress = Annotated[bool, typer.Option(help="Live progress on the terminal.")]
Recipe = Annotated[Optional[str], typer.Option(
    help="Training recipe for the retrainings (default, nasbench-nlp, darts-search, darts-final or a YAML file), all but its budget; "
         "without it, the search's own settings.")]
Population = Annotated[bool, typer.Option(help="Train a cell's learning rates and seeds as one population "
                                               "(batched; each member equals its solo training).")]


def register(app: typer.Typer) -> None:
    """Add the ``evaluate`` command to ``app``."""
    @app.command("evaluate")
    @cli_errors
    def evaluate_cmd(
        run_dir: RunDir,
        top: Annotated[int, typer.Option(min=1, help="How many of the search's best cells to retrain.")] = 3,
        baselines: Annotated[str, typer.Option(help="Comma-separated baseline cells.")] = "lstm,gru",
        seeds: Annotated[int, typer.Option(min=1, help="Seeds per cell and task.")] = 5,
        budget: Budget = None, minutes: Minutes = None, tasks: Tasks = None, lrs: Lrs = "0.5,1,2",
        confidence: Annotated[float, typer.Option(help="Confidence level of the intervals.")] = 0.95,
        parallel: Parallel = 2, backend: Backend = "ray", address: Address = None,
        cpus_per_trial: CpusPerTrial = None, gpus_per_trial: GpusPerTrial = 0.0, data_dir: DataDir = None,
        json_out: Annotated[bool, typer.Option("--json", help="Print the result rows as JSON.")] = False,
        progress: Progress = True, population: Population = True, recipe: Recipe = None,
        pareto: Annotated[bool, typer.Option(
            help="Retrain the cells of the search's Pareto front (leaderboard --pareto) instead of its best "
                 "scores (at most --top of them, best score first).")] = False,
    ) -> None:
        """Retrain the search's top cells and baselines from scratch (longer, N seeds, learning-rate sweep);
        report mean ± CI, win rates and Welch tests in runs/NAME/evaluation/."""
        from cellsearch.analysis.evaluation import check_evaluation_options, ci_text, evaluate_run, format_value
        from cellsearch.cli.progress import progress_bars

        check_evaluation_options(top, confidence)  # (before the protocol's line: a refusal is one line)
        names = _baselines(baselines)  # before _setup prints the protocol: a refusal is the only line
        protocol, settings, lock = _setup("evaluate", run_dir, seeds, budget, minutes, tasks, lrs, parallel, backend,
                                          address, cpus_per_trial, gpus_per_trial, data_dir, population, recipe)
        try:
            with progress_bars(progress, err_console) as bars:
                report = evaluate_run(run_dir, protocol, settings, top=top, baselines=names, confidence=confidence,
                                      on_event=bars, pareto=pareto)
        finally:
            lock.release()
        if json_out:
            print(json.dumps(json.loads(report.table.to_json(orient="records")), indent=2))
            return
        for task in dict.fromkeys(report.table["task"]):
            rows = report.table[report.table["task"] == task]
            table = Table(title=f"{task}: test score, mean ± {confidence:.0%} CI")
            for col in ("cell", "role", "lr", "n", "mean ± CI", *[f"wins vs {b}" for b in names], "verdict"):
                table.add_column(col, overflow="fold")
            for r in rows.to_dict("records"):
                wins = [format_value(r[f"win_rate_vs_{b}"], ".0%") if r["role"] == "candidate" else ""
                        for b in names]
                table.add_row(r["cell"], r["role"], format_value(r["lr"], ".3g"), str(r["n"]), ci_text(r), *wins,
                              r["verdict"])
            console.print(table)
        for note in report.notes:
            console.print(f"note: {note}", highlight=False)
        console.print(f"report: {report.files['markdown']} (CSV {report.files['csv'].name}, plot "
                      f"{report.files['plot'].name})", highlight=False)

    @app.command("fidelity")
    @cli_errors
    def fidelity_cmd(
        run_dir: RunDir,
        sample: Annotated[int, typer.Option(min=3, help="Cells to retrain, spread over the score range.")] = 8,
        seeds: Annotated[int, typer.Option(min=1, help="Seeds per cell (their mean is the final score).")] = 1,
        budget: Budget = None, minutes: Minutes = None, tasks: Tasks = None, lrs: Lrs = "0.5,1,2",
        min_tau: Annotated[float, typer.Option(help="Warn when Kendall's τ is below this.")] = 0.4,
        parallel: Parallel = 2, backend: Backend = "ray", address: Address = None,
        cpus_per_trial: CpusPerTrial = None, gpus_per_trial: GpusPerTrial = 0.0, data_dir: DataDir = None,
        json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
        progress: Progress = True, population: Population = True, recipe: Recipe = None,
        budgets: Annotated[Optional[str], typer.Option(
            help="Fidelity curve: comma-separated proxy budgets in steps (e.g. 100,200,400,800); the sample also "
                 "trains at each as a search would score it, and each budget's ranking is compared with the final "
                 "one.")] = None,
        target_tau: Annotated[float, typer.Option(
            help="The curve recommends the cheapest budget whose Kendall τ reaches this.")] = 0.6,
    ) -> None:
        """How well the search's scores predict retrained scores: Spearman and Kendall τ over a sample of cells,
        with a scatter plot, in runs/NAME/fidelity/; with --budgets, the same at each proxy budget (a curve)."""
        from cellsearch.analysis.fidelity import check_fidelity_options, fidelity_run
        from cellsearch.cli.progress import progress_bars

        curve_budgets = check_fidelity_options(sample, _budgets(budgets), min_tau, target_tau)
        protocol, settings, lock = _setup("fidelity", run_dir, seeds, budget, minutes, tasks, lrs, parallel, backend,
                                          address, cpus_per_trial, gpus_per_trial, data_dir, population, recipe)
        try:
            with progress_bars(progress, err_console) as bars:
                report = fidelity_run(run_dir, protocol, settings, sample=sample, min_tau=min_tau, on_event=bars,
                                      budgets=curve_budgets, target_tau=target_tau)
        finally:
            lock.release()
        if json_out:
            print(report.files["summary"].read_text())
            return
        table = Table(title="search score vs final score")
        for col in ("cell", "search score", "final score"):
            table.add_column(col)
        for r in report.table.sort_values("search_score", ascending=False).to_dict("records"):
            final = r["final_score"]
            table.add_row(r["cell"], f"{r['search_score']:.4f}", "–" if final != final else f"{final:.4f}")
        console.print(table)
        c = report.correlation
        console.print(f"Spearman ρ = {c.spearman:.3f} (p = {c.spearman_p:.3g}), Kendall τ = {c.kendall:.3f} "
                      f"(p = {c.kendall_p:.3g}) over {c.n} cells", highlight=False)
        if report.curve:
            curve = Table(title="fidelity curve: each proxy budget's ranking vs the final one")
            for col in ("budget (steps)", "Spearman ρ", "Kendall τ", "cells", "failed"):
                curve.add_column(col, justify="right")
            for b in report.curve:
                curve.add_row(str(b["steps"]), "–" if b["spearman"] is None else f"{b['spearman']:.3f}",
                              "–" if b["kendall"] is None else f"{b['kendall']:.3f}", str(b["cells"]), str(b["failed"]))
            console.print(curve)
            console.print(f"recommended budget (cheapest with τ ≥ {target_tau:g}): "
                          + (f"{report.recommended} steps" if report.recommended else "none of these"), highlight=False)
        console.print(f"report: {report.files['markdown']} (plot {report.files['plot'].name})", highlight=False)
