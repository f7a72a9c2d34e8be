"""``cellsearch bench``: training-step throughput of compiled cells (see cellsearch.bench)."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.table import Table

from cellsearch.cli import cli_errors, console, err_console


def register(app: typer.Typer) -> None:
    """Add the ``bench`` command to ``app``."""
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
                  population: Annotated[Optional[int], typer.Option(
                      min=1, help="Also time a population of K members against K solo trainings (full training "
                                  "steps on Arithmetic) at the search's sizes (hidden 64, batch 32) and at -H/-B "
                                  "(with --device cuda: K = 32 unless given).")] = None,
                  threads: Annotated[Optional[int], typer.Option(min=1, help="torch CPU threads.")] = None,
                  tf32: Annotated[bool, typer.Option(
                      "--tf32/--no-tf32", help="CUDA: TF32 matmuls for cuDNN and the compiled cells alike "
                                               "(default off: both in full fp32).")] = False,
                  ) -> None:
        """Training-step throughput (forward+backward) of compiled cells vs torch.nn and the interpreter."""
        from cellsearch.bench import (BenchConfig, PopulationBenchConfig, bench_cudnn_sizes, bench_population,
                                      run_benchmark)
        from cellsearch.storage.settings import SEARCH_TRAIN

        cfg = BenchConfig(seq_len=seq_len, batch=batch, input_size=input_size, hidden_size=hidden_size,
                          rounds=rounds, with_torch_compile=torch_compile, device=device, threads=threads, tf32=tf32)
        if device == "cuda" and population is None:
            population = 32  # the GPU's population figure: K = 32 members
        names = tuple(c.strip() for c in cells.split(",") if c.strip())
        populations = {}  # (made, so checked, before anything is timed)
        if population is not None:
            sizes = {"population": (SEARCH_TRAIN["hidden_size"], SEARCH_TRAIN["batch_size"]),
                     "population_bench_size": (hidden_size, batch)}
            populations = {key: PopulationBenchConfig(k=population, hidden_size=h, batch=b, rounds=min(rounds, 5),
                                                      threads=threads, device=device)
                           for key, (h, b) in sizes.items()}
        with err_console.status("benchmarking...") as status:
            result = run_benchmark(names, cfg, progress=lambda msg: status.update(msg))
            if device == "cuda":  # the ratio against cuDNN at the sizes the GPU work is measured at
                result["cudnn_sizes"] = bench_cudnn_sizes(tuple(n for n in names if n in ("lstm", "gru")),
                                                          rounds=min(rounds, 5), tf32=tf32,
                                                          progress=lambda msg: status.update(msg))
            for key, population_cfg in populations.items():
                result[key] = bench_population(population_cfg, progress=lambda msg: status.update(msg))
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
                          f"{tps.get('interpreter', float('nan')):,.0f}", f"{r.get('vs_torch', float('nan')):.2f}x",
                          f"{r.get('vs_interpreter', float('nan')):.2f}x")
        console.print(table)
        for size, per_cell in result.get("cudnn_sizes", {}).items():
            for name, r in per_cell.items():
                variants = ", ".join(f"{k} {v:.2f}x" for k, v in r["variants_vs_cudnn"].items())
                console.print(f"{size} {name}: compiled {r['vs_cudnn']:.2f}x cuDNN ({variants})")
        for key in ("population", "population_bench_size"):
            if key in result:
                p = result[key]
                console.print(f"population of {p['k']} ({p['cell']}, {p['task']}, hidden {p['hidden']}, batch "
                              f"{p['batch']}, {p['threads']} threads): {p['population_ms']:.1f} ms per step vs "
                              f"{p['solo_ms']:.1f} ms for one member alone: {p['speedup']:.2f}x the throughput "
                              f"of {p['k']} solo trainings")
