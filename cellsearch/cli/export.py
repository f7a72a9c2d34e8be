"""``cellsearch export``: a cell (built-in, YAML file, or rank K of a search run) as py, TorchScript, ONNX or YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cellsearch.cli import cli_errors, console


def register(app: typer.Typer) -> None:
    """Add the ``export`` command to ``app``."""
    @app.command("export")
    @cli_errors
    def export_cmd(
        source: Annotated[str, typer.Argument(
            metavar="CELL|RUN", help="A built-in cell name, a YAML file, or a search run directory (runs/NAME).")],
        fmt: Annotated[str, typer.Option("--format", "-f", help="py | torchscript | onnx | yaml")],
        output: Annotated[Path, typer.Option("--output", "-o", help="File to write (a .py file for --format py); "
                                                                      "the model card and drawing go beside it.")],
        rank: Annotated[Optional[int], typer.Option(help="With a run: the leaderboard rank to export "
                                                         "(1 = best).")] = None,
        input_size: Annotated[int, typer.Option("--input-size", "-I", min=1, help="Input size I.")] = 128,
        hidden_size: Annotated[int, typer.Option("--hidden-size", "-H", min=1, help="Hidden size H.")] = 128,
        seq_len: Annotated[int, typer.Option("--seq-len", "-T", min=1,
                                             help="ONNX only: the fixed sequence length T.")] = 16,
        seed: Annotated[int, typer.Option(help="Seed of the (untrained) initial weights.")] = 0,
    ) -> None:
        """Export a cell as a standalone torch module (py), TorchScript, ONNX or cellsearch YAML, with a model card."""
        from cellsearch.errors import ConfigError
        from cellsearch.export import FORMATS, export_cell, export_from_run
        from cellsearch.library import resolve_cell

        if fmt not in FORMATS:
            raise ConfigError(f"unknown export format '{fmt}' (known: {', '.join(FORMATS)})")
        kw: dict[str, Any] = {"input_size": input_size, "hidden_size": hidden_size, "seq_len": seq_len, "seed": seed}
        path = Path(source)
        if path.is_dir() or rank is not None:
            files = export_from_run(path, 1 if rank is None else rank, fmt, output, **kw)
        else:
            if not path.exists() and path.suffix not in (".yaml", ".yml") and ("/" in source or "\\" in source):
                raise ConfigError(f"'{source}' is neither a built-in cell, a YAML file nor a search run directory")
            files = export_cell(resolve_cell(source), fmt, output, **kw)
        for f in files:
            console.print(f"wrote {f}", markup=False, highlight=False, soft_wrap=True)
