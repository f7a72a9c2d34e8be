"""``cellsearch runs``: tables of trained cells for replaying searches (export ours, import NAS-Bench-NLP)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cellsearch.cli import cli_errors, console, err_console

app = typer.Typer(help="Tables of trained cells (for `cellsearch search --benchmark FILE`).", no_args_is_help=True)


def _summarise(df, out: Path) -> None:
    ok = df[(df["status"] == "ok") & df["score"].notna()]
    best = ok.loc[ok["score"].idxmax()] if len(ok) else None
    line = f"wrote {out}: {len(df)} rows, {df['hash'].nunique()} distinct cells, {len(ok)} with a score"
    if best is not None:
        line += f"; best {best['hash']} ({best['cell_name']}) score {best['score']:.4g}"
    console.print(line, markup=False, highlight=False, soft_wrap=True)  # (a path is never wrapped)


@app.command("export")
@cli_errors
def export_cmd(run_dir: Annotated[Path, typer.Argument(help="runs/NAME of a search.")],
               output: Annotated[Path, typer.Option("--output", "-o", help="Table file: .parquet, .csv or .json.")]
               = Path("table.parquet")) -> None:
    """Every cell a search trained, with its score, as a benchmark table."""
    from cellsearch.storage.benchmark_tables import export_run, write_table

    df = export_run(run_dir)
    _summarise(df, write_table(df, output))


@app.command("import-nasbench")
@cli_errors
def import_nasbench_cmd(
        log_dir: Annotated[Path, typer.Argument(help="A directory of NAS-Bench-NLP training logs (JSON), "
                                                     "searched recursively, or one log file.")],
        output: Annotated[Path, typer.Option("--output", "-o", help="Table file: .parquet, .csv or .json.")]
        = Path("nasbench_nlp.parquet"),
        skip_bad: Annotated[bool, typer.Option(help="Leave out logs that cannot be read (listed on stderr) "
                                                    "instead of stopping at the first.")] = False) -> None:
    """NAS-Bench-NLP training logs as a benchmark table (score: best validation word probability, 1/perplexity)."""
    from cellsearch.storage.benchmark_tables import import_nasbench_logs, write_table

    df, skipped = import_nasbench_logs(log_dir, on_error="skip" if skip_bad else "fail")
    for f, why in skipped:
        err_console.print(f"skipped {f}: {why}", markup=False, highlight=False)
    _summarise(df, write_table(df, output))
