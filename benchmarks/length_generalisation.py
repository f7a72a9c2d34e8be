"""Length generalisation on the algorithmic tasks: exact match at training lengths and beyond.

Trains every (cell, task) of the grid for several seeds (one population per pair: members run
one by one for encoder-decoder models, batched for language models) and prints a markdown table
of mean ± std over the seeds, plus JSON with every member's metrics:

    python benchmarks/length_generalisation.py --cells attn-gru,attn-lstm,gru+gru --tasks copy,reverse \
        --steps 1500 --hidden 64 --seeds 0,1,2 --workers 2 --out docs/results/length-generalisation-attention.json

A cell ``A+E`` is cell A decoding from encoder E; an attention cell alone (``attn-gru``) gets the
default encoder (gru); any other cell alone is a language model reading ``prompt answer``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def run_pair(job: dict) -> dict:
    from cellsearch.training.population import Member, PopulationTrainer
    from cellsearch.training.config import TrainConfig
    from cellsearch.training.parallelism import use_threads

    use_threads(job["threads"])
    cell, _, encoder = job["cell"].partition("+")
    cfg = TrainConfig(cell=cell, encoder=encoder or None, task=job["task"], hidden_size=job["hidden"],
                      steps=job["steps"], lr=job["lr"], task_options=job["task_options"], seed=job["seeds"][0],
                      **job.get("train", {}))
    start = time.perf_counter()
    results = PopulationTrainer(cfg, [Member(seed=s) for s in job["seeds"]]).run()
    return {"cell": job["cell"], "task": job["task"], "label": job.get("label", job["cell"]),
            "seconds": round(time.perf_counter() - start, 1),
            "members": [{"seed": s, "status": r.status, **r.metrics} for s, r in zip(job["seeds"], results)]}


def _stat(rows: list[dict], key: str) -> str:
    values = [r[key] for r in rows if r.get(key) is not None]
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def table(results: list[dict]) -> str:
    lines = ["| task | cell | accuracy (teacher-forced) | exact match, training lengths | exact match, 2× lengths "
             "| seconds |", "|---|---|---|---|---|---|"]
    for r in sorted(results, key=lambda r: (r["task"], r["cell"])):
        m = r["members"]
        lines.append(f"| {r['task']} | {r['cell']} | {_stat(m, 'accuracy')} | {_stat(m, 'exact_match')} | "
                     f"**{_stat(m, 'exact_match_long')}** | {r['seconds']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", default="attn-gru,gru+gru")
    ap.add_argument("--tasks", default="copy,reverse")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--max-length", type=int, default=8)
    ap.add_argument("--symbols", type=int, default=8)
    ap.add_argument("--eval-examples", type=int, default=256)
    ap.add_argument("--memory-rows", type=int, default=None, help="rows of an NTM cell's memory (default: 16)")
    ap.add_argument("--repeats", type=int, default=None, help="repeat-copy's largest number of repeats")
    ap.add_argument("--workers", type=int, default=1, help="pairs trained side by side (1 torch thread each)")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    from cellsearch.training.parallelism import map_in_workers

    options = {"max_length": args.max_length, "symbols": args.symbols, "eval_examples": args.eval_examples}
    train = {"memory_rows": args.memory_rows} if args.memory_rows is not None else {}
    jobs = [{"cell": c, "task": t, "hidden": args.hidden, "steps": args.steps, "lr": args.lr,
             "seeds": [int(s) for s in args.seeds.split(",")], "threads": 1, "train": train,
             "task_options": options | ({"max_repeats": args.repeats} if args.repeats and t == "repeat-copy" else {})}
            for t in args.tasks.split(",") for c in args.cells.split(",")]

    def done(i: int, n: int, result: dict) -> None:
        print(f"[{i}/{n}] {result['cell']} on {result['task']}: {result['seconds']:.0f}s", flush=True)

    results = map_in_workers(run_pair, jobs, args.workers, done)
    if args.out:
        args.out.write_text(json.dumps({"settings": vars(args) | {"out": str(args.out)}, "results": results},
                                       indent=1) + "\n")
    print(table(results))


if __name__ == "__main__":
    from cellsearch.training.allocator import keep_freed_memory

    keep_freed_memory()  # (a script is its own process: tuned for training steps, as the command line is)
    main()
