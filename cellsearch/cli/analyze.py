"""``cellsearch analyze ...``: the gate-importance study and search reports."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from cellsearch.cli import check_picture, cli_errors, console, err_console
from cellsearch.fileio import atomic_write, write_csv

app = typer.Typer(help="Analyse cells and searches: gate importance (Greff et al.), search reports.",
                  no_args_is_help=True)


def _files(files: dict[str, Path]) -> None:
    folders = sorted({str(p.parent) for p in files.values()})
    console.print(f"wrote {len(files)} file(s) to {', '.join(folders)}", markup=False, highlight=False,
                  soft_wrap=True)


@app.command("gates")
@cli_errors
def gates_cmd(
    run_dir: Annotated[Optional[Path], typer.Argument(
        help="A search run whose trials include Greff et al. variants (or use --fresh).")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Train the nine variants now with random hyperparameters.")
                     ] = False,
    task: Annotated[Optional[str], typer.Option(help="Task of a fresh study (default arith, with 2-digit numbers); "
                                                     "for a run: whose metric to use (default: the run's first).")
                    ] = None,
    trials: Annotated[int, typer.Option("--trials", min=1, help="Random hyperparameter settings per variant.")] = 3,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Training steps per run.")] = 150,
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Seeds per hyperparameter setting.")] = 1,
    hidden_min: Annotated[int, typer.Option(min=1, help="Smallest hidden size (log-uniform).")] = 16,
    hidden_max: Annotated[int, typer.Option(min=1, help="Largest hidden size.")] = 48,
    lr_min: Annotated[float, typer.Option(help="Smallest learning rate (log-uniform, Adam).")] = 1e-3,
    lr_max: Annotated[float, typer.Option(help="Largest learning rate.")] = 3e-2,
    variants: Annotated[Optional[str], typer.Option(help="Comma-separated subset of the nine variants.")] = None,
    top_fraction: Annotated[float, typer.Option(help="Fraction of each variant's best trials in the Welch test.")
                            ] = 0.1,
    workers: Annotated[Optional[int], typer.Option(min=1, help="Parallel training processes (default: CPUs).")
                       ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the hyperparameter draws.")] = 0,
    out: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output directory (default: RUN_DIR/gates, "
                                                                       "or runs/gates with --fresh).")] = None,
) -> None:
    """Which gates matter: Welch tests vs vanilla and fANOVA importance, beside Greff et al. and Jozefowicz et al."""
    _gates(run_dir, fresh, task, trials, steps, seeds, hidden_min, hidden_max, lr_min, lr_max, variants,
           top_fraction, workers, seed, out)


def _gates(run_dir, fresh, task, trials, steps, seeds, hidden_min, hidden_max, lr_min, lr_max, variants, top_fraction,
           workers, seed, out) -> None:
    from cellsearch.analysis.gates import load_gate_study, write_gate_report
    from cellsearch.errors import ConfigError
    from cellsearch.runner.gate_study import VARIANTS, run_gate_study

    if (run_dir is None) == (not fresh):
        raise ConfigError("give either a RUN_DIR or --fresh (not both)")
    if hidden_min > hidden_max or not 0 < lr_min <= lr_max:
        raise ConfigError("need --hidden-min <= --hidden-max and 0 < --lr-min <= --lr-max")
    if not 0 < top_fraction <= 1:
        raise ConfigError("--top-fraction must be in (0, 1]")
    if fresh:
        chosen = tuple(v.strip() for v in variants.split(",")) if variants else VARIANTS
        n = len(chosen) * trials * seeds
        from rich.progress import Progress

        with Progress(console=err_console, transient=True) as bar:
            t = bar.add_task("training", total=n)

            def progress(i: int, total: int, row: dict) -> None:
                bar.update(t, completed=i, description=f"{row['variant']} (trial {row['trial']}, seed {row['seed']})")

            df = run_gate_study(task or "arith", trials, seeds, steps, (hidden_min, hidden_max), (lr_min, lr_max),
                                variants=chosen, workers=workers or os.cpu_count() or 1, progress=progress,
                                seed=seed)
        out_dir = out or Path("runs/gates")
    else:
        df = load_gate_study(run_dir, task=task)
        out_dir = out or Path(run_dir) / "gates"
    files = write_gate_report(df, out_dir, top_fraction=top_fraction, seed=seed)
    ranking = (out_dir / "ranking.md").read_text()
    console.print(ranking, markup=False, highlight=False, soft_wrap=True)
    bad = int((df["status"] != "ok").sum())
    console.print(f"{len(df)} run(s), {bad} without a score", markup=False, highlight=False, soft_wrap=True)
    _files(files)


@app.command("report")
@cli_errors
def report_cmd(
    run_dirs: Annotated[List[Path], typer.Argument(help="One or more search run directories.")],
    out: Annotated[Path, typer.Option("--output", "-o", help="Output directory.")],
    top: Annotated[int, typer.Option(min=1, help="How many of the best cells to show and draw.")] = 5,
) -> None:
    """Best-so-far curves, score distributions, top cells (drawn) and op frequencies of search runs."""
    _report(run_dirs, out, top)


def _report(run_dirs: list[Path], out: Path, top: int) -> None:
    from cellsearch.analysis.plots import markdown_table
    from cellsearch.analysis.report import compare_distributions, compare_runs, top_cells_table, write_search_report

    names = [p.name for p in run_dirs]
    written: dict[str, Path] = {}
    for run in run_dirs:
        sub = out if len(run_dirs) == 1 else out / (run.name if names.count(run.name) == 1 else
                                                    str(run).strip("/").replace("/", "_"))
        files = write_search_report(run, sub, top)
        written.update({f"{run}:{k}": v for k, v in files.items()})
        console.print(f"[bold]{run}[/bold]: top {top} cells")
        tops = top_cells_table(run, top)[["rank", "hash", "cell", "score", "status", "params", "origin"]]
        console.print(markdown_table(tops), markup=False, highlight=False, soft_wrap=True)
    if len(run_dirs) > 1:
        curves = compare_runs(run_dirs, out / "compare_best_so_far.png")
        write_csv(out / "compare_best_so_far.csv", curves, index=False)
        dist = compare_distributions(run_dirs)
        write_csv(out / "compare_scores.csv", dist, index=False)
        atomic_write(out / "compare_scores.md", markdown_table(dist))
        console.print(markdown_table(dist), markup=False, highlight=False, soft_wrap=True)
        for name in ("compare_best_so_far.png", "compare_best_so_far.csv", "compare_scores.csv", "compare_scores.md"):
            written[name] = out / name
    _files(written)


@app.command("hops")
@cli_errors
def hops_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint.pt (or its directory) of a memory network "
                                                    "trained on babi (`cellsearch train memn2n --task babi`).")],
    out: Annotated[Path, typer.Option("--output", "-o", help="The picture to write (.png, .pdf or .svg).")],
    question: Annotated[int, typer.Option(help="Which question of the split (0: the first).")] = 0,
    split: Annotated[str, typer.Option(help="valid or test.")] = "test",
    as_json: Annotated[bool, typer.Option("--json", help="Print the weights as JSON.")] = False,
) -> None:
    """A memory network's attention over one story, hop by hop (rows: the sentences; columns: the hops)."""
    import json

    from cellsearch.analysis.hops import plot_hops
    from cellsearch.errors import ConfigError
    from cellsearch.limits import check_new_path, check_number
    from cellsearch.nn.memory_qa import MemoryQAModel
    from cellsearch.training.trainer import Trainer

    if split not in ("valid", "test"):
        raise ConfigError(f"--split must be valid or test, not {split!r:.40}")
    check_number("--question", question, 0)
    check_new_path("--output", out)
    check_picture(out, "--output")
    # one story needs no GPU: the model on the CPU, where the batch is made ("auto" would put it on
    # CUDA where available); the batch follows the model's device all the same
    trainer = Trainer.from_checkpoint(checkpoint, device="cpu")
    model, task = trainer.model, trainer.task
    if not isinstance(model, MemoryQAModel):
        raise ConfigError(f"{checkpoint}: not a memory network on babi (train e.g. memn2n --task babi)")
    questions = task.split(split)  # type: ignore[attr-defined]  # (a memory network trains on babi only)
    if question >= len(questions):
        raise ConfigError(f"--question {question} is out of range: the {split} split has {len(questions)} questions")
    q = questions[question]
    batch = task.encode([q]).to(trainer.device)  # type: ignore[attr-defined]
    model.eval()
    weights = model.hop_weights(batch)[:, 0]  # (hops, N)
    logits, _ = model(batch.inputs, model.start(batch))
    predicted = task.vocab.itos[int(logits[0, 0].argmax())]
    sentences = [" ".join(s) for s in q.story]
    path = plot_hops(weights, sentences, " ".join(q.question), q.answer, predicted, out, q.supports)
    if as_json:
        print(json.dumps({"question": " ".join(q.question), "answer": q.answer, "predicted": predicted,
                          "story": sentences, "supports": list(q.supports),
                          "weights": [[round(float(w), 4) for w in hop] for hop in weights], "output": str(path)}))
    else:
        console.print(f"{' '.join(q.question)}? {q.answer} (model: {predicted}); wrote {path}", markup=False)
