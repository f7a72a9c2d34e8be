"""Train every cell of a small search space and write the results as a benchmark table.

    python benchmarks/make_table.py --space dag4 --task arith --budget 400 --hidden 32 --lr 0.01 \
        -t max_digits=2 -o benchmarks/tables/dag4-arith.parquet

Enumerates every decision tuple of the space, keeps one cell per canonical hash, and evaluates
each cell exactly as a search trial would (``runner.trial.evaluate_candidate``, the search's
default model and task settings unless overridden here), ``--workers`` at a time. The table replays searches
over that space without training (``cellsearch search --space dag4 --benchmark TABLE``, and
``benchmarks/strategies.py``). Rerunning with the same output file continues where it stopped.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path


def enumerate_cells(space):
    """(canonical hash, graph) for every distinct cell of a decision space (the first decision tuple's)."""
    from cellsearch.dsl.hashing import canonical_hash
    from cellsearch.spaces.base import InvalidCandidate

    seen = {}
    for choices in itertools.product(*[range(len(d.choices)) for d in space.decisions()]):
        try:
            g = space.decode(choices)
        except InvalidCandidate:
            continue
        seen.setdefault(canonical_hash(g), g)
    return list(seen.items())


def _evaluate(config: dict) -> dict:
    from cellsearch.runner.trial import evaluate_candidate

    out = evaluate_candidate(config).to_dict()
    out["hash"] = config["hash"]
    return out


def main(argv=None) -> int:
    from cellsearch.dsl.io import dumps_cell
    from cellsearch.strategies.base import default_plan
    from cellsearch.runner.search import SearchConfig
    from cellsearch.spaces import load_space
    from cellsearch.tables import make_frame, read_table, write_table
    from cellsearch.train import map_in_workers

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--space", default="dag4")
    ap.add_argument("--task", default="arith")
    ap.add_argument("--budget", type=int, default=300, help="training steps per cell")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--lr", type=float, default=None, help="learning rate (default: the search's)")
    ap.add_argument("-t", "--task-option", action="append", default=[], help="task option KEY=VALUE")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--limit", type=int, default=None, help="only the first N cells (for a quick look)")
    ap.add_argument("-o", "--output", type=Path, default=Path("benchmarks/tables/dag4-arith.parquet"))
    args = ap.parse_args(argv)

    space = load_space(args.space)
    cells = enumerate_cells(space)[:args.limit]
    defaults = SearchConfig()
    from cellsearch.cli.train import parse_options

    task_options = dict(defaults.task_options)
    task_options[args.task] = {**task_options.get(args.task, {}), **parse_options(args.task_option)}
    train = dict(defaults.train, hidden_size=args.hidden, device="cpu")
    if args.lr is not None:
        train["lr"] = args.lr
    done = {}
    if args.output.exists():
        done = {r["hash"]: r for r in read_table(args.output).to_dict("records")}
    jobs = []
    for h, g in cells:
        if h in done:
            continue
        jobs.append({"hash": h, "cell": dumps_cell(g), "plan": [asdict(s) for s in default_plan([args.task])],
                     "budget": {"steps": args.budget, "seconds": None},
                     "train": train, "task_options": task_options, "reference": None, "is_reference": False,
                     "seed": 0, "threads": max(1, (os.cpu_count() or 1) // args.workers)})
    print(f"{args.space}: {len(cells)} distinct cells, {len(done)} already in {args.output}, "
          f"training {len(jobs)}", file=sys.stderr)
    by_hash = dict(cells)
    rows = list(done.values())
    start = time.perf_counter()

    def on_result(i: int, n: int, out: dict) -> None:
        g = by_hash[out["hash"]]
        rows.append({"hash": out["hash"], "score": out["score"], "status": out["status"], "cell_name": g.name,
                     "cell_yaml": dumps_cell(g), "params": out["params"], "seconds": out["seconds"],
                     "metrics": out["metrics"], "source": f"{args.space}/{args.task}/{args.budget} steps"})
        if i % 25 == 0 or i == n:
            write_table(make_frame(rows), args.output)  # checkpoint: a rerun continues from here
            rate = (time.perf_counter() - start) / i
            print(f"  {i}/{n} cells, {rate:.2f} s each, eta {math.ceil(rate * (n - i) / 60)} min", file=sys.stderr)

    map_in_workers(_evaluate, jobs, workers=args.workers, on_result=on_result)
    write_table(make_frame(rows), args.output)
    print(f"wrote {args.output}: {len(rows)} cells", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
