"""The ``cellsearch`` command line (typer): one sub-app per command group.

Library code raises ``CellsearchError`` subclasses; ``cli_errors`` turns them into one line
on stderr and exit status 2 here, and nowhere else.
"""

from __future__ import annotations

import functools
import sys
import warnings

import typer
from rich.console import Console

from cellsearch.errors import CellsearchError, CellWarning

console = Console()
err_console = Console(stderr=True)


def cli_errors(fn):
    """Run a command; a CellsearchError becomes ``error: <message>`` and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CellWarning)
            try:
                return fn(*args, **kwargs)
            except CellsearchError as exc:
                err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
                raise typer.Exit(exc.exit_code) from None
            finally:
                # a copy, and no warnings.showwarning here: inside catch_warnings(record=True) it
                # appends to `caught`, and iterating over `caught` would never end
                for w in list(caught):
                    if issubclass(w.category, CellWarning):
                        err_console.print(f"warning: {w.message}", markup=False, highlight=False, soft_wrap=True)
                    else:
                        sys.stderr.write(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line))

    return wrapper


app = typer.Typer(help="cellsearch: describe, compile, search, analyse and export recurrent cells.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


def _register() -> None:
    from cellsearch.cli import analyze, bench, cells, evaluate, export, reproduce, runs, search, train

    app.add_typer(cells.app, name="cells")
    search.register(app)
    evaluate.register(app)
    train.register(app)
    export.register(app)
    app.add_typer(reproduce.app, name="reproduce")
    app.add_typer(analyze.app, name="analyze")
    bench.register(app)
    app.add_typer(runs.app, name="runs")


_register()


def main() -> None:  # console script entry point
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - interactive
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
