"""``cellsearch bench``: training-step throughput of compiled cells (see cellsearch.bench)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from cellsearch.cli import cli_errors, console, err_console


def register(app: typer.Typer) -> None:
    @app.command("bench")
    @cli_errors
    def bench_cmd(json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
                  cells: Annotated[str, typer.Option(help="Comma-separated built-in cells.")] = "lstm,gru",
                  rounds: Annotated[int, typer.Option(min=1, help="Interleaved rounds (median reported).")] = 7,
                  seq_len: Annotated[int, typer.Option("--seq-len", "-T", min=1)] = 64,
                  batch: Annotated[int, typer.Option("--batch", "-B", min=1)] = 32,
                  input_size: Annotated[int, typer.Option("--input-size", "-I", min=1)] = 128,
                  hidden_size: Annotated[int, typer.Option("--hidden-size", "-H", min=1)] = 256,
                  torch_compile: Annotated[bool, typer.Option("--torch-compile",
                                                              help="Also time torch.compile'd steps.")] = False,
                  device: Annotated[str, typer.Option(help="cpu | cuda (torch.nn then runs cuDNN)")] = "cpu",
                  ) -> None:
        """Training-step throughput (forward+backward) of compiled cells vs torch.nn and the interpreter."""
        from cellsearch.bench import BenchConfig, run_benchmark

        cfg = BenchConfig(seq_len=seq_len, batch=batch, input_size=input_size, hidden_size=hidden_size,
                          rounds=rounds, with_torch_compile=torch_compile, device=device)
        names = tuple(c.strip() for c in cells.split(",") if c.strip())
        with err_console.status("benchmarking...") as status:
            result = run_benchmark(names, cfg, progress=lambda msg: status.update(msg))
        if json_out:
            print(json.dumps(result, indent=2))
            return
        table = Table(title=f"training step on {result['config']['device']}, T={seq_len} B={batch} I={input_size} "
                            f"H={hidden_size} "
                            f"(median of {rounds} interleaved rounds)")
        for col in ("cell", "compiled tok/s", "torch tok/s", "interpreter tok/s", "vs torch", "vs interpreter"):
            table.add_column(col, justify="right")
        for name in names:
            r = result[name]
            tps = r["tokens_per_s"]
            table.add_row(name, f"{tps['compiled']:,.0f}", f"{tps.get('torch', float('nan')):,.0f}",
                          f"{tps['interpreter']:,.0f}", f"{r.get('vs_torch', float('nan')):.2f}x",
                          f"{r['vs_interpreter']:.2f}x")
        console.print(table)
