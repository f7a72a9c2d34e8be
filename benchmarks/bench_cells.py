"""Compiled cells vs torch.nn.LSTM/GRU and the reference interpreter (training-step throughput).

    python benchmarks/bench_cells.py [--rounds 9] [--torch-compile]

Same measurement as `cellsearch bench`; prints the JSON result.
"""

from __future__ import annotations

import argparse
import json

from cellsearch.bench import BenchConfig, run_benchmark


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--cells", default="lstm,gru")
    ap.add_argument("--torch-compile", action="store_true")
    args = ap.parse_args()
    cfg = BenchConfig(rounds=args.rounds, with_torch_compile=args.torch_compile)
    print(json.dumps(run_benchmark(tuple(args.cells.split(",")), cfg, progress=print), indent=2))


if __name__ == "__main__":
    from cellsearch.training.allocator import keep_freed_memory

    keep_freed_memory()  # (a script is its own process: tuned for training steps, as the command line is)
    main()
