"""The ``cellsearch`` command line (typer): one sub-app per command group.

Library code raises ``CellsearchError`` subclasses; ``cli_errors`` turns them into one line
on stderr and exit status 2 here, and nowhere else, with the flag in place of each field the
error names (``cellsearch.cli.flags``).
"""

from __future__ import annotations

import errno
import functools
import os
import sys
import warnings
from pathlib import Path

import typer
from rich.console import Console
from typer.core import TyperGroup

from cellsearch.errors import CellsearchError, CellWarning

console = Console()
err_console = Console(stderr=True)


def one_line(message: object) -> str:
    """A message as one line: error output is one line per problem, whatever the text holds."""
    return " ".join(str(message).split())


def print_error(message: object) -> None:
    """Print ``error: MESSAGE`` to stderr as one line (the message's line breaks and markup shown as text)."""
    err_console.print(f"error: {one_line(message)}", markup=False, highlight=False, soft_wrap=True)


def check_files(files, load, describe) -> None:
    """``cells check`` / ``spaces check``: ``load(file)`` each file and print one line per file —
    ``ok FILE: describe(loaded)`` or the error (prefixed with the file unless it names it);
    exit status 2 if any failed."""
    failed = 0
    for f in files:
        try:
            loaded = load(f)
        except CellsearchError as exc:
            message = str(exc)
            print_error(message if message.startswith(str(f)) else f"{f}: {message}")
            failed += 1
            continue
        console.print(f"ok {f}: {describe(loaded)}", markup=False, highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(2)


def check_picture(path: Path, option: str) -> None:
    """A picture ``option`` may write: a .png/.pdf/.svg in a folder that exists, a target that can be
    written (one-line ConfigError; ``generate --image``/``--attention-map``, ``analyze hops``)."""
    from cellsearch.errors import ConfigError
    from cellsearch.fileio import check_target

    if path.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise ConfigError(f"{option}: {path} should end in .png, .pdf or .svg")
    if not path.parent.is_dir():
        raise ConfigError(f"{option}: no directory {path.parent}")
    check_target(path, option)  # (not /dev/full, a link, an unwritable folder)


def cli_errors(fn):
    """Run a command; a CellsearchError becomes ``error: <message>`` and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CellWarning)
            failed = False
            try:
                return fn(*args, **kwargs)
            except CellsearchError as exc:
                from cellsearch.cli.flags import cli_message

                failed = True
                print_error(cli_message(exc))  # (the library names the setting's field, the user wrote its flag)
                raise typer.Exit(exc.exit_code) from None
            except OSError as exc:
                # A full or read-only disk under a write that does not go through cellsearch.fileio (a
                # report's plots, say): still one line. Any other OSError is a bug, with its traceback.
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
                    raise
                from cellsearch.fileio import write_error

                failed = True
                print_error(write_error(os.fsdecode(exc.filename), exc) if exc.filename else
                            f"{exc.strerror or 'the disk refused a write'}: free space (or use a writable "
                            "disk) and run the command again")
                raise typer.Exit(2) from None
            finally:
                # a refusal is one line: the warnings of a command that failed on bad input are moot.
                # A copy, and no warnings.showwarning here: inside catch_warnings(record=True) it
                # appends to `caught`, and iterating over `caught` would never end
                for w in [] if failed else list(caught):
                    if issubclass(w.category, CellWarning):
                        err_console.print(f"warning: {one_line(w.message)}", markup=False, highlight=False,
                                          soft_wrap=True)
                    else:
                        sys.stderr.write(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line))

    return wrapper


def _usage_error_types() -> tuple[type, ...]:
    # Newer typer vendors click (typer._click) under a public base class; older typer raises click's own.
    types = [getattr(typer.exceptions, "TyperException", None)]
    try:
        import click

        types.append(click.ClickException)
    except ImportError:  # pragma: no cover - typer without click
        pass
    return tuple(t for t in types if t is not None)


_USAGE_ERRORS = _usage_error_types()


class _OneLineUsageErrors(TyperGroup):
    """The top-level group: a usage error (bad option value, unknown option, missing argument) is
    one line on stderr and exit status 2, like every other bad input, instead of click's
    usage block and rich panel."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        from cellsearch.training.allocator import keep_freed_memory

        # The command's process is cellsearch's own: its C allocator keeps freed memory for the
        # next training step (the library leaves that to the process's owner: see cellsearch.training.allocator)
        keep_freed_memory()
        try:
            rc = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _USAGE_ERRORS as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # a bare group: its help, as click shows it
                exc.show()
            else:
                command = exc.ctx.command_path if getattr(exc, "ctx", None) is not None else "cellsearch"
                print_error(f"{exc.format_message()} (see '{command} --help')")
            rc = exc.exit_code
        except typer.Abort:
            err_console.print("interrupted")
            rc = 130
        if not standalone_mode:
            return rc
        sys.exit(rc if isinstance(rc, int) else 0)


app = typer.Typer(help="cellsearch: describe, compile, search, analyse and export recurrent cells.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  cls=_OneLineUsageErrors)


def _register() -> None:
    from cellsearch.cli import analyze, bench, cells, evaluate, export, reproduce, runs, search, spaces, train

    app.add_typer(cells.app, name="cells")
    search.register(app)
    evaluate.register(app)
    train.register(app)
    export.register(app)
    app.add_typer(reproduce.app, name="reproduce")
    app.add_typer(analyze.app, name="analyze")
    bench.register(app)
    app.add_typer(runs.app, name="runs")
    app.add_typer(spaces.app, name="spaces")


_register()


def main() -> None:  # console script entry point
    """The ``cellsearch`` console script: run the CLI; Ctrl-C ends it with status 130 and no traceback."""
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - interactive
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
