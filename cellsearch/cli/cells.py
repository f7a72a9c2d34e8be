"""``cellsearch cells ...``: list, inspect, check, draw, show generated code, import."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, List

import typer
from rich.table import Table

from cellsearch.cli import check_files, cli_errors, console

app = typer.Typer(help="Built-in and user cells: list, inspect, check, draw, generated code, import.",
                  no_args_is_help=True)

CellArg = Annotated[str, typer.Argument(help="A built-in cell name (see `cellsearch cells list`) or a YAML file.")]
InputSize = Annotated[int, typer.Option("--input-size", "-I", min=1, help="Input size I.")]
HiddenSize = Annotated[int, typer.Option("--hidden-size", "-H", min=1, help="Hidden size H.")]


@app.command("list")
@cli_errors
def list_cmd(json_out: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False) -> None:
    """Show the built-in cells with a one-line description and their source paper."""
    from cellsearch.dsl.tools import summary
    from cellsearch.library import list_cells

    rows = [summary(g) for g in list_cells()]
    if json_out:
        print(json.dumps([{k: r[k] for k in ("name", "hash", "states", "params", "description", "source")}
                          for r in rows], indent=2))
        return
    table = Table(title="built-in cells (params at I=H=128)")
    for col in ("name", "states", "params", "description", "source"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["name"], ", ".join(r["states"]), f"{r['params']:,}", r["description"], r["source"])
    console.print(table)


@app.command("info")
@cli_errors
def info_cmd(cell: CellArg, input_size: InputSize = 128, hidden_size: HiddenSize = 128,
             json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False) -> None:
    """Equations, hash, node and parameter counts of a cell at the given sizes."""
    from cellsearch.dsl.equations import format_equation, inlined_nodes
    from cellsearch.dsl.tools import summary
    from cellsearch.library import resolve_cell

    g = resolve_cell(cell)
    g.check_sizes(input_size, hidden_size)
    info = summary(g, input_size, hidden_size)
    inline = inlined_nodes(g)
    info["equations"] = {n.name: format_equation(g, n.name, inline) for n in g.nodes if n.name not in inline}
    if json_out:
        print(json.dumps(info, indent=2))
        return
    console.print(f"[bold]{info['name']}[/bold]  hash {info['hash']}")
    if info["description"]:
        console.print(info["description"])
    if info["source"]:
        console.print(f"source: {info['source']}")
    memory = f"   memory: {', '.join(info['memory'])}" if info.get("memory") else ""
    console.print(f"inputs: {', '.join(info['inputs'])}{memory}   states: {', '.join(info['states'])}   "
                  f"output: {info['output']}")
    for name, eq in info["equations"].items():
        console.print(f"  {name} = {eq}", markup=False, highlight=False)
    console.print(f"nodes: {info['nodes']} ({', '.join(f'{k} {v}' for k, v in info['ops'].items())})")
    console.print(f"parameters at I={input_size}, H={hidden_size}: {info['params']:,}   "
                  f"multiply-adds per step: {info['multiply_adds_per_step']:,}")


@app.command("check")
@cli_errors
def check_cmd(files: Annotated[List[Path], typer.Argument(help="YAML cell files to validate.")]) -> None:
    """Validate cell files: one line per file; exit status 2 if any is invalid."""
    from cellsearch.dsl.hashing import canonical_hash
    from cellsearch.dsl.io import load_cell

    check_files(files, load_cell, lambda g: f"{g.name} (hash {canonical_hash(g)}, {len(g.nodes)} nodes)")


@app.command("draw")
@cli_errors
def draw_cmd(cell: CellArg,
             output: Annotated[Path, typer.Option("--output", "-o", help="File to write: .png, .svg, .pdf or .dot.")]
             ) -> None:
    """Draw a cell's graph."""
    from cellsearch.dsl.tools import draw
    from cellsearch.library import resolve_cell

    path = draw(resolve_cell(cell), output)
    console.print(f"wrote {path}", markup=False, highlight=False, soft_wrap=True)


@app.command("code")
@cli_errors
def code_cmd(cell: CellArg, input_size: InputSize = 128, hidden_size: HiddenSize = 128) -> None:
    """Print the Python code the compiler generates for a cell (what will run)."""
    from cellsearch.compile.codegen import CellProgram
    from cellsearch.library import resolve_cell

    print(CellProgram(resolve_cell(cell), input_size, hidden_size).source, end="")


@app.command("import")
@cli_errors
def import_cmd(file: Annotated[Path, typer.Argument(help="A NAS-Bench-NLP recipe JSON file.")],
               out_dir: Annotated[Path, typer.Option("--output", "-o", help="Directory for the YAML cells.")],
               force: Annotated[bool, typer.Option("--force", help="Overwrite cell files that exist with other "
                                                   "contents (a file that already holds the cell is left as it is, "
                                                   "with or without --force).")] = False,
               ) -> None:
    """Convert NAS-Bench-NLP recipes into one YAML cell per recipe (<output>/<file stem>_<index>.yaml).

    Refuses, writing nothing, if a cell file exists with other contents, unless --force is given."""
    from cellsearch.dsl.nasbench import import_recipes

    paths = import_recipes(file, out_dir, force=force)
    console.print(f"wrote {len(paths)} cell(s) to {out_dir}", markup=False, highlight=False, soft_wrap=True)
