"""``cellsearch search``, ``resume`` and ``leaderboard``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.table import Table

from cellsearch.cli import cli_errors, console, err_console
from cellsearch.storage.settings import DEFAULT_STEPS, SEARCH_TRAIN, SearchConfig


def _print_leaderboard(run_dir: Path, top: int, equations: int = 3) -> None:
    from cellsearch.storage.results import best_candidate, leaderboard, stage_counts, stage_warnings
    from cellsearch.tasks import primary_metric

    rows = leaderboard(run_dir, top)
    table = Table(title=f"leaderboard: {run_dir}")
    for col in ("rank", "hash", "score", "status", "params", "metric per task", "cell"):
        table.add_column(col, overflow="fold", no_wrap=col in ("hash", "score"))
    for r in rows:
        shown = []  # each task's primary metric (all of them are in --json)
        for task, m in r["metrics"].items():
            value = m.get(primary_metric(task)) if isinstance(m, dict) else None
            if isinstance(value, (int, float)):
                std = m.get("std")  # search --seeds: the mean over seeds ± their standard deviation
                shown.append(f"{task} {value:.4g}" + (f" ± {std:.2g}" if isinstance(std, (int, float)) else ""))
        metrics = "\n".join(shown)
        score = "–" if r["score"] is None else f"{r['score']:.4f}"
        origin = f" ({r['origin']})" if r["origin"] in ("reference", "seed") else ""
        table.add_row(str(r["rank"]), r["hash"], score, r["status"], f"{r['params'] or 0:,}", metrics,
                      r["cell"] + origin)
    console.print(table)
    for r in rows[:equations]:
        console.print(f"#{r['rank']} {r['hash']}:", highlight=False)
        for k, v in r["equations"].items():
            console.print(f"    {k} = {v}", markup=False, highlight=False)
    counts = stage_counts(run_dir)
    if counts:
        console.print("candidates: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    best = best_candidate(run_dir)
    if best is not None:
        name = f"{best['cell']} (hash {best['hash']})"
        if best["score"] is not None:
            line = f"best candidate (the reference cell left out): {name}, score {best['score']:.4f}"
        elif best["value"] is not None:
            line = (f"best candidate (the reference cell left out): none has a score; the closest, {name}, reached {best['value']:.4g} "
                    f"at {best['stage']}, where it was {best['status']}")
        else:
            line = "best candidate (the reference cell left out): none has a score"
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    for message in stage_warnings(run_dir).values():
        console.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)


def _print_front(run_dir: Path, json_out: bool) -> None:
    from cellsearch.storage.results import front_objectives, pareto_front

    names = front_objectives(run_dir)
    front = pareto_front(run_dir, names)
    if json_out:
        print(json.dumps({"objectives": names, "front": front}, indent=2))
        return
    table = Table(title=f"Pareto front over {', '.join(names)}: {run_dir}")
    for col in ("rank", "hash", *names, "cell"):
        table.add_column(col, overflow="fold", no_wrap=col != "cell")
    for r in front:
        shown = [f"{v:.4f}" if n == "score" else f"{v:.3g} ms" if n == "latency" else f"{v:,.0f}"
                 for n, v in r["objectives"].items()]
        table.add_row(str(r["rank"]), r["hash"], *shown, r["cell"])
    console.print(table)
    console.print(f"{len(front)} non-dominated cell(s)")


def _default(name: str):
    """A SearchConfig field's default: the command's defaults are the library's."""
    return SearchConfig.__dataclass_fields__[name].default


def register(app: typer.Typer) -> None:
    """Add the ``search`` command to ``app``."""
    @app.command("search")
    @cli_errors
    def search_cmd(
        ctx: typer.Context,
        space: Annotated[str, typer.Option(help="Shipped space (nas_rl, mutation, mutation1, dag, dag4, attention, "
                                                "nasbench_nlp, greff) "
                                                "or a YAML file.")] = _default("space"),
        strategy: Annotated[str, typer.Option(help="random | evolution | regularized-evolution | rl | tpe | nsga2 | rsws "
                                                   "(random search with weight sharing) | enas (the RL controller "
                                                   "picks the cells: -o controller_every=10, controller_steps=1, "
                                                   "controller_batch=4, controller_lr=3.5e-4, entropy_weight=1e-4, "
                                                   "baseline_decay=0.95) | darts (softmax-relaxed choices "
                                                   "learned by gradient: -o arch_lr=3e-3, arch_weight_decay=1e-3); "
                                                   "one-shot (rsws, enas, darts): dag spaces, "
                                                   "one task, --budget trains the supernet, -o candidates=N cells "
                                                   "scored (default 10 x --trials), the best --trials recorded")]
        = _default("strategy"),
        tasks: Annotated[str, typer.Option(help="Comma-separated tasks: arith, xml, ptb (memorize), copy, repeat-copy, reverse, sort, addition, "
                                                       "recall, anbn, anbncn, anbmcnm, string-memorization, binary-addition, "
                                                       "babi, digits, digits-caption.")] = "arith",
        trials: Annotated[int, typer.Option(min=1, help="Candidates to evaluate.")] = _default("trials"),
        parallel: Annotated[int, typer.Option(min=1, help="Concurrent trials.")] = _default("parallel"),
        budget: Annotated[Optional[int], typer.Option(
            help=f"Training steps per trial and task (default {DEFAULT_STEPS} unless --minutes is given).")] = None,
        minutes: Annotated[Optional[float], typer.Option(help="Or minutes per trial and task.")] = None,
        name: Annotated[Optional[str], typer.Option(help="Run name: results go to runs/NAME.")] = None,
        address: Annotated[Optional[str], typer.Option(help="Join a Ray cluster at HOST:PORT.")] = None,
        seed: Annotated[int, typer.Option(help="Search seed.")] = _default("seed"),
        seeds: Annotated[int, typer.Option(help="Trainings (seeds) per candidate, as one population; the score is "
                                                "their mean, the leaderboard shows mean ± std. One-shot "
                                                "strategies: N supernets (search seeds seed..seed+N-1), trained "
                                                "in parallel as N Ray trials (--parallel at once), each seed's "
                                                "best --trials cells recorded.")] = _default("seeds"),
        scheduler: Annotated[str, typer.Option(help="asha (early stopping) | fifo")] = _default("scheduler"),
        gpus_per_trial: Annotated[float, typer.Option(help="GPUs per trial.")] = _default("gpus_per_trial"),
        cpus_per_trial: Annotated[Optional[int], typer.Option(help="CPUs (= torch threads) per trial.")] = None,
        hidden: Annotated[Optional[int], typer.Option(
            help=f"Hidden size of trial models (default {SEARCH_TRAIN['hidden_size']}, or the recipe's).")] = None,
        recipe: Annotated[Optional[str], typer.Option(
            help="Training recipe of the trials (default, nasbench-nlp or a YAML file), all but its budget "
                 "(--budget/--minutes set that); --hidden overrides its hidden size.")] = None,
        reference: Annotated[str, typer.Option(help="Cell that relative scores compare against.")]
        = _default("reference"),
        option: Annotated[Optional[List[str]], typer.Option(
            "--option", "-o", help="Strategy option KEY=VALUE (repeatable), e.g. -o population_size=20.")] = None,
        data_dir: Annotated[Optional[Path], typer.Option(help="Data root for PTB.")] = None,
        runs: Annotated[Path, typer.Option(help="Directory of runs.")] = Path("runs"),
        backend: Annotated[str, typer.Option(help="ray | local (in-process, sequential)")] = _default("backend"),
        top: Annotated[int, typer.Option(help="Leaderboard rows to print.")] = 5,
        progress: Annotated[bool, typer.Option(help="Live progress on the terminal.")] = True,
        benchmark: Annotated[Optional[Path], typer.Option(
            help="Replay: look candidates up (by canonical hash) in this table of trained cells "
                 "(.parquet/.csv/.json, see `cellsearch runs`) instead of training them.")] = None,
        missing: Annotated[str, typer.Option(help="Replay, a candidate the table lacks: skip (record it as "
                                                  "missing and go on) | fail (stop with an error).")]
        = _default("missing"),
        encoder: Annotated[Optional[str], typer.Option(
            help="Train every candidate (and the reference) as the decoder of an encoder-decoder model with this "
                 "encoder cell, on seq2seq tasks (copy, reverse, ...); default: gru for a space whose cells may "
                 "attend (attention), none otherwise.")] = None,
        objectives: Annotated[str, typer.Option(
            help="Comma-separated objectives: score (maximised), params, macs, latency (minimised; measured, "
                 "machine-dependent); several give a "
                 "Pareto front (random, regularized-evolution, tpe, nsga2), e.g. score,params.")] = "score",
        dry_run: Annotated[bool, typer.Option(
            help="Print the resolved settings (what config.json would record) as JSON and exit: nothing is "
                 "written or trained.")] = False,
    ) -> None:
        """Search a space for cells: trials on Ray Tune, results in runs/NAME/results.db, best cell in best.yaml."""
        import time
        from dataclasses import asdict

        from cellsearch.cli.train import parse_options
        from cellsearch.runner.search import SearchRun

        # flags to fields, and nothing more: the defaults, the recipe's overlay and the encoder are
        # SearchConfig's (resolved by SearchRun), so a Python caller gets the same search
        train = {k: v for k, v in (("hidden_size", hidden), ("encoder", encoder)) if v is not None}
        cfg = SearchConfig(name=name or f"{strategy}-{Path(space).stem}-{time.strftime('%Y%m%d-%H%M%S')}",
                           space=space, strategy=strategy, strategy_options=parse_options(option),
                           tasks=[t.strip() for t in tasks.split(",") if t.strip()], trials=trials,
                           parallel=parallel, steps=budget, minutes=minutes, scheduler=scheduler, seed=seed,
                           seeds=seeds, address=address, cpus_per_trial=cpus_per_trial,
                           gpus_per_trial=gpus_per_trial, reference=reference, train=train, recipe=recipe,
                           data_dir=str(data_dir.resolve()) if data_dir else None, backend=backend,
                           benchmark=str(benchmark) if benchmark else None, missing=missing,
                           objectives=[o.strip() for o in objectives.split(",") if o.strip()])
        if dry_run:
            print(json.dumps(asdict(SearchRun.resolve(cfg)), indent=2))
            return
        run = SearchRun(cfg, runs)
        summary = _run(run, progress)
        _finish(run.run_dir, summary, top)

    @app.command("resume")
    @cli_errors
    def resume_cmd(run_dir: Annotated[Path, typer.Argument(help="runs/NAME of an interrupted search.")],
                   trials: Annotated[Optional[int], typer.Option(help="Raise the number of trials.")] = None,
                   address: Annotated[Optional[str], typer.Option(help="Ray cluster address.")] = None,
                   top: Annotated[int, typer.Option(help="Leaderboard rows to print.")] = 5,
                   progress: Annotated[bool, typer.Option(help="Live progress.")] = True) -> None:
        """Continue an interrupted search: finished cells are not trained again, the strategy state is restored."""
        from cellsearch.runner.search import SearchRun

        run = SearchRun.resume(run_dir, trials=trials, address=address)
        summary = _run(run, progress)
        _finish(run.run_dir, summary, top)

    @app.command("leaderboard")
    @cli_errors
    def leaderboard_cmd(run_dir: Annotated[Path, typer.Argument(help="runs/NAME")],
                        top: Annotated[int, typer.Option(help="How many cells.")] = 10,
                        json_out: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
                        pareto: Annotated[bool, typer.Option(
                            help="The Pareto front instead: the non-dominated cells over the search's objectives "
                                 "(score and params for a single-objective search).")] = False) -> None:
        """Rank the cells of a search: rank, hash, score, per-task metrics, parameters, equations."""
        from cellsearch.storage.results import leaderboard

        if pareto:
            _print_front(run_dir, json_out)
        elif json_out:
            print(json.dumps(leaderboard(run_dir, top), indent=2))
        else:
            _print_leaderboard(run_dir, top)


def rundir_checked(run_dir: Path) -> Path:
    """``run_dir`` if it holds a search run (ConfigError otherwise)."""
    from cellsearch.storage.rundir import require_run

    return require_run(run_dir)


def _oneshot_lines(name: str, progress: bool):
    """A one-shot search's progress (``OneShotProgress``) as lines on stderr, per search seed (none with
    ``--no-progress``)."""
    def on_event(event: object) -> None:
        from cellsearch.runner.events import OneShotProgress, scoring_shown

        if not progress or not isinstance(event, OneShotProgress):
            return
        done, total = event.done, event.total
        of = f"/{total}" if total else ""
        if event.phase == "train":
            loss = "–" if event.value is None else f"{event.value:.4f}"
            err_console.print(f"{name} seed {event.seed}: supernet step {done}{of}, loss {loss}", highlight=False)
        elif scoring_shown(done, total):
            score = "–" if event.value is None else f"{event.value:.4f}"
            err_console.print(f"{name} seed {event.seed}: scored cell {done}{of}, score {score}", highlight=False)

    return on_event


def _run(run, progress: bool) -> dict:
    """Run a search, drawing its progress on stderr unless ``--no-progress``."""
    from cellsearch.cli.progress import progress_bars
    from cellsearch.runner.events import StageRejectedAll

    if run.oneshot is not None:
        return run.run(on_event=_oneshot_lines(run.cfg.strategy, progress))

    def quiet(event: object) -> None:  # --no-progress: no bars, but a warning still gets its line
        if isinstance(event, StageRejectedAll):
            err_console.print(f"warning: {event.message}", markup=False, highlight=False, soft_wrap=True)

    with progress_bars(progress, err_console) as bars:
        return run.run(on_event=bars or quiet)


def _finish(run_dir: Path, summary: dict, top: int) -> None:
    _print_leaderboard(run_dir, top)
    if summary.get("best_hash"):
        console.print(f"best cell: {run_dir / 'best.yaml'} (hash {summary['best_hash']}, "
                      f"score {summary['best_score']:.4f})")
    if summary.get("benchmark"):
        console.print(f"replayed on {summary['benchmark']}: no model was trained; "
                      f"{summary['missing']} candidate(s) were not in the table")
    if summary.get("interrupted"):
        console.print(f"the search stopped early; continue it with: cellsearch resume {run_dir}")
