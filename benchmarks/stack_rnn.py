"""The stack-RNN length-generalisation table: stack-rnn vs LSTM vs GRU on Joulin & Mikolov's patterns.

Trains every (task, cell, seed) of the grid as a language model on the task's sequences (one
training each, in this process, one after another), appends each result to a JSON-lines file
(a rerun skips the rows already there, so the script resumes) and prints the markdown table of
docs/results/stack-rnn.md: mean ± std over the seeds of the deterministic-part accuracy and the
fraction of sequences with every deterministic prediction right, at training lengths (n ≤ max_n)
and beyond them (max_n < n ≤ long_factor × max_n):

    nice -n 5 python benchmarks/stack_rnn.py --tasks anbn,anbncn --cells stack-rnn,lstm,gru --seeds 0,1,2 \
        --steps 1000 --hidden 32 --memory-rows 64 --long-factor 3 [--ar 0 --tar 0] --out docs/results/stack-rnn.jsonl

(``--ar``/``--tar`` other than the trainer's defaults label the rows, e.g. "stack-rnn (AR 0, TAR 0)";
docs/results/stack-rnn.md has the exact commands of its tables.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

METRICS = ("accuracy", "sequence_accuracy", "accuracy_long", "sequence_accuracy_long")


def run(task: str, cell: str, seed: int, args: argparse.Namespace) -> dict:
    from cellsearch.training.config import TrainConfig
    from cellsearch.training.trainer import train

    options = {"max_n": args.max_n, "long_factor": args.long_factor, "eval_examples": args.eval_examples}
    cfg = TrainConfig(cell=cell, task=task, hidden_size=args.hidden, steps=args.steps, lr=args.lr, seed=seed,
                      batch_size=args.batch_size, memory_rows=args.memory_rows, task_options=options,
                      threads=args.threads, ar=args.ar, tar=args.tar)
    start = time.perf_counter()
    result = train(cfg)
    return {"task": task, "cell": label(cell, args), "seed": seed, "status": result.status,
            "seconds": round(time.perf_counter() - start, 1), **{k: result.metrics.get(k) for k in METRICS}}


def label(cell: str, args: argparse.Namespace) -> str:
    """The cell's name in the table, with the activation penalties where they are not the defaults."""
    return cell if (args.ar, args.tar) == (2.0, 1.0) else f"{cell} (AR {args.ar:g}, TAR {args.tar:g})"


def _stat(rows: list[dict], key: str) -> str:
    values = [r[key] for r in rows if r.get(key) is not None]
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def table(rows: list[dict]) -> str:
    """Mean ± std over the seeds of every (task, cell), in the order the rows came."""
    lines = ["| task | cell | seeds | accuracy, n ≤ max_n | all right, n ≤ max_n | accuracy, longer | "
             "all right, longer | seconds (each) |", "|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["cell"]), []).append(r)
    for (task, cell), g in groups.items():
        secs = statistics.mean(r["seconds"] for r in g)
        lines.append(f"| {task} | {cell} | {len(g)} | {_stat(g, 'accuracy')} | {_stat(g, 'sequence_accuracy')} | "
                     f"{_stat(g, 'accuracy_long')} | **{_stat(g, 'sequence_accuracy_long')}** | {secs:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="anbn,anbncn")
    ap.add_argument("--cells", default="stack-rnn,lstm,gru")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--memory-rows", type=int, default=32)
    ap.add_argument("--max-n", type=int, default=10)
    ap.add_argument("--long-factor", type=float, default=2.0)
    ap.add_argument("--eval-examples", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ar", type=float, default=2.0, help="activation penalty (the trainer's default 2)")
    ap.add_argument("--tar", type=float, default=1.0, help="temporal activation penalty (default 1)")
    ap.add_argument("--out", type=Path, default=Path("docs/results/stack-rnn.jsonl"))
    ap.add_argument("--table-only", action="store_true", help="print the table of the rows in --out")
    args = ap.parse_args()
    done = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out.exists() else []
    if not args.table_only:
        have = {(r["task"], r["cell"], r["seed"]) for r in done}
        for task in args.tasks.split(","):
            for cell in args.cells.split(","):
                for seed in (int(s) for s in args.seeds.split(",")):
                    if (task, label(cell, args), seed) in have:
                        continue
                    row = run(task, cell, seed, args)
                    print(json.dumps(row), flush=True)
                    done.append(row)
                    with args.out.open("a") as f:  # (a benchmark's own log, appended row by row)
                        f.write(json.dumps(row) + "\n")
    print(table(done))


if __name__ == "__main__":
    main()
