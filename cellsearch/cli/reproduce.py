"""``cellsearch reproduce jozefowicz``: the ten architectures × three tasks table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cellsearch.cli import cli_errors, console, err_console

app = typer.Typer(help="Reproduce the papers' tables.", no_args_is_help=True)


@app.command("jozefowicz")
@cli_errors
def jozefowicz_cmd(
    budget: Annotated[str, typer.Option(help="small (about an hour on 2 CPU cores) | paper (days)")] = "small",
    seeds: Annotated[int, typer.Option(min=1, help="Seeds per (cell, task).")] = 2,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("runs/jozefowicz"),
    data_dir: Annotated[Optional[Path], typer.Option(help="Data root for PTB.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Parallel training processes (default: CPU count).")] = None,
    cells: Annotated[Optional[str], typer.Option(help="Comma-separated subset of the ten cells.")] = None,
    tasks: Annotated[Optional[str], typer.Option(help="Comma-separated subset of arith,xml,ptb.")] = None,
) -> None:
    """Train tanh, lstm, lstm-f/-i/-o/-b, gru, mut1-3 on Arithmetic, XML and PTB; write CSV and Markdown tables."""
    from rich.progress import Progress

    from cellsearch.errors import ConfigError
    from cellsearch.reproduce import ARCHITECTURES, TASKS, jobs, reproduce_jozefowicz

    cell_list = tuple(c.strip() for c in cells.split(",")) if cells else ARCHITECTURES
    task_list = tuple(t.strip() for t in tasks.split(",")) if tasks else TASKS
    for c in cell_list:
        if c not in ARCHITECTURES:
            raise ConfigError(f"unknown cell '{c}' (the table has {', '.join(ARCHITECTURES)})")
    for t in task_list:
        if t not in TASKS:
            raise ConfigError(f"unknown task '{t}' (arith, xml, ptb)")
    total = len(jobs(budget, seeds, None, cell_list, task_list))
    with Progress(console=err_console) as bar:
        task_id = bar.add_task("training", total=total)

        def progress(i: int, n: int, row: dict) -> None:
            bar.update(task_id, completed=i, description=f"{row['cell']} on {row['task']} (seed {row['seed']})")

        runs, table = reproduce_jozefowicz(budget, seeds, out, str(data_dir.resolve()) if data_dir else None, workers,
                                           cell_list, task_list, progress)
    console.print((out / "table.md").read_text(), markup=False, highlight=False)
    console.print(f"wrote {out / 'results.csv'}, {out / 'table.csv'}, {out / 'table.md'}", markup=False, highlight=False,
                  soft_wrap=True)
