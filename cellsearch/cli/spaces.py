"""``cellsearch spaces ...``: list the shipped search spaces, show one, check space files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, List

import typer
from rich.table import Table

from cellsearch.cli import check_files, cli_errors, console

app = typer.Typer(help="Search spaces: list the shipped ones, show one, check space files.", no_args_is_help=True)

SpaceArg = Annotated[str, typer.Argument(help="A shipped space name (see `cellsearch spaces list`) or a YAML file.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _count(decisions: int) -> str:
    return f"{decisions} decision{'' if decisions == 1 else 's'}"


@app.command("list")
@cli_errors
def list_cmd(json_out: JsonOut = False) -> None:
    """Show the shipped search spaces with their kind and a one-line description."""
    from cellsearch.dsl.io import load_yaml
    from cellsearch.spaces.registry import list_spaces, shipped_text

    rows = []
    for name, description in list_spaces().items():
        data, _ = load_yaml(shipped_text(name), f"{name}.yaml")
        rows.append({"name": name, "kind": str(data.get("kind", "")), "description": description})
    if json_out:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="shipped search spaces (cellsearch spaces show NAME)")
    for col in ("name", "kind", "description"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["name"], r["kind"], r["description"])
    console.print(table)


@app.command("show")
@cli_errors
def show_cmd(space: SpaceArg, json_out: JsonOut = False) -> None:
    """Print a space's YAML text (a shipped name or a file), after a comment with its kind and decision count.

    The space is validated first: an invalid file is an error (see `cellsearch spaces check`)."""
    from cellsearch.spaces.registry import load_space, space_text

    text, source = space_text(space)
    loaded = load_space(space)
    decisions = len(loaded.decisions())
    if json_out:
        print(json.dumps({"name": loaded.name, "source": source, "kind": loaded.kind, "decisions": decisions,
                          "description": loaded.description, "text": text}, indent=2))
        return
    print(f"# {source}: space '{loaded.name}', kind {loaded.kind}, {_count(decisions)}")
    print(text, end="" if text.endswith("\n") else "\n")


@app.command("check")
@cli_errors
def check_cmd(files: Annotated[List[Path], typer.Argument(help="YAML search-space files to validate.")]) -> None:
    """Validate search-space files: one line per file; exit status 2 if any is invalid."""
    from cellsearch.spaces.registry import load_space

    check_files(files, lambda f: load_space(str(f)),
                lambda space: f"{space.name} (kind {space.kind}, {_count(len(space.decisions()))})")
