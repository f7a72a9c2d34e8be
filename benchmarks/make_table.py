"""Train every cell of a small search space and write the results as a benchmark table.

    python benchmarks/make_table.py --space dag4 --task arith --budget 400 --hidden 32 --lr 0.01 \
        -t max_digits=2 -o benchmarks/tables/dag4-arith.parquet
    python benchmarks/make_table.py --space mutation1 --task arith --budget 800 --hidden 32 --lr 0.01 \
        -t max_digits=2 --seeds 3 --curve-every 100 -o benchmarks/tables/mutation1-arith.parquet

With ``--seeds S`` each cell trains S seeds as one population (``train_population``): its score
is the mean of the seeds' final scores, as a search trial with ``--seeds S`` scores it, and the
row's ``curve`` holds the primary metric every ``--curve-every`` steps (each seed's and the mean),
which is what early stopping (``benchmarks/asha_replay.py``) replays. The space's seed cells are
included too.

Enumerates every decision tuple of the space, keeps one cell per canonical hash, and evaluates
each cell exactly as a search trial would (``runner.trial.evaluate_candidate``, the search's
default model and task settings unless overridden here), ``--workers`` at a time. The table replays searches
over that space without training (``cellsearch search --space dag4 --benchmark TABLE``, and
``benchmarks/strategies.py``). Rerunning with the same output file continues where it stopped.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path


def enumerate_cells(space):
    """(canonical hash, graph) for every distinct cell of a decision space (the first decision tuple's)."""
    return [(h, g) for h, (_, g) in space.distinct_cells().items()]


def _evaluate(config: dict) -> dict:
    from cellsearch.dsl.io import loads_cell
    from cellsearch.runner.trial import TrialSpec, evaluate_candidate
    from cellsearch.strategies.base import default_plan

    if config["seeds"] > 1 or config["curve_every"]:
        return _evaluate_with_curve(config)
    # the trial a search would run (a table of our own cells: the hash is the one computed when it was listed)
    spec = TrialSpec(loads_cell(config["cell"], source="<table cell>", warn=False), config["cell"], config["hash"],
                     tuple(default_plan([config["task"]])), steps=config["steps"], train=config["train"],
                     task_options=config["task_options"], seed=0, threads=config["threads"])
    out = asdict(evaluate_candidate(spec))
    out["hash"] = config["hash"]
    return out


def _evaluate_with_curve(config: dict) -> dict:
    """Train ``seeds`` seeds of one cell as a population, with the primary metric every ``curve_every`` steps."""
    import statistics

    from cellsearch.dsl.io import loads_cell
    from cellsearch.training.population import Member, train_population
    from cellsearch.storage.benchmark_tables import finite_or_none
    from cellsearch.tasks import primary_metric
    from cellsearch.training.config import TrainConfig
    from cellsearch.training.parallelism import use_threads

    use_threads(config["threads"])
    start = time.perf_counter()
    graph = loads_cell(config["cell"], source="<table cell>", warn=False)
    task = config["task"]
    metric = primary_metric(task)
    cfg = TrainConfig.from_dict({**config["train"], "cell": graph.name, "task": task, "steps": config["steps"],
                                 "seed": 0, "task_options": config["task_options"].get(task, {}),
                                 "eval_every": config["curve_every"] or 0, "threads": None})
    members = [Member(seed=s) for s in range(config["seeds"])]
    points: dict[int, dict[int, float | None]] = {}

    def on_eval(k: int, step: int, m: dict) -> None:
        points.setdefault(step, {})[k] = finite_or_none(m.get(metric))

    try:
        results = train_population(cfg, members, graph=graph, callback=on_eval)
    except Exception as exc:  # noqa: BLE001 -- a cell that cannot train is a row with status failed
        return {"hash": config["hash"], "score": None, "status": "failed", "params": None,
                "seconds": round(time.perf_counter() - start, 3), "metrics": {}, "error": str(exc)[:200]}
    finals = [r.metrics.get(metric) for r in results if r.status == "ok"]
    finals = [v for v in finals if v is not None and math.isfinite(v)]
    status = "ok" if finals else next((r.status for r in results if r.status != "ok"), "failed")
    steps = sorted(points)
    members_curve = [[points[t].get(k) for t in steps] for k in range(len(members))]
    mean = [statistics.mean(v) if (v := [c[i] for c in members_curve if c[i] is not None]) else None
            for i in range(len(steps))]
    ok_metrics = [r.metrics for r in results if r.status == "ok"]
    metrics = {task: {key: statistics.mean(m[key] for m in ok_metrics) for key in ok_metrics[0]
                      if all(isinstance(m.get(key), (int, float)) for m in ok_metrics)}} if ok_metrics else {}
    return {"hash": config["hash"], "score": statistics.mean(finals) if finals else None, "status": status,
            "params": results[0].params, "seconds": round(time.perf_counter() - start, 3), "metrics": metrics,
            "seeds": len(members),
            "curve": {"steps": steps, "mean": mean, "members": members_curve}}


def main(argv=None) -> int:
    from cellsearch.dsl.io import dumps_cell
    from cellsearch.runner.search import SearchConfig
    from cellsearch.spaces import load_space
    from cellsearch.storage.benchmark_tables import make_frame, read_table, write_table
    from cellsearch.training.parallelism import map_in_workers

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--space", default="dag4")
    ap.add_argument("--task", default="arith")
    ap.add_argument("--budget", type=int, default=300, help="training steps per cell")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--lr", type=float, default=None, help="learning rate (default: the search's)")
    ap.add_argument("-t", "--task-option", action="append", default=[], help="task option KEY=VALUE")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--limit", type=int, default=None, help="only the first N cells (for a quick look)")
    ap.add_argument("--seeds", type=int, default=1, help="seeds per cell, trained as one population")
    ap.add_argument("--curve-every", type=int, default=0, help="record the learning curve every N steps")
    ap.add_argument("-o", "--output", type=Path, default=Path("benchmarks/tables/dag4-arith.parquet"))
    args = ap.parse_args(argv)

    space = load_space(args.space)
    cells = enumerate_cells(space)
    if args.seeds > 1 or args.curve_every:  # (the first table kept only decoded cells)
        from cellsearch.dsl.hashing import canonical_hash

        known = {h for h, _ in cells}
        cells += [(h, g) for g in space.seeds() if (h := canonical_hash(g)) not in known]
    cells = cells[:args.limit]
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
        jobs.append({"hash": h, "cell": dumps_cell(g), "train": train, "task_options": task_options,
                     "threads": max(1, (os.cpu_count() or 1) // args.workers),
                     "task": args.task, "steps": args.budget, "seeds": args.seeds, "curve_every": args.curve_every})
    print(f"{args.space}: {len(cells)} distinct cells, {len(done)} already in {args.output}, "
          f"training {len(jobs)}", file=sys.stderr)
    by_hash = dict(cells)
    rows = list(done.values())
    start = time.perf_counter()

    def on_result(i: int, n: int, out: dict) -> None:
        g = by_hash[out["hash"]]
        rows.append({"hash": out["hash"], "score": out["score"], "status": out["status"], "cell_name": g.name,
                     "cell_yaml": dumps_cell(g), "params": out["params"], "seconds": out["seconds"],
                     "metrics": out["metrics"], "source": f"{args.space}/{args.task}/{args.budget} steps",
                     "seeds": out.get("seeds"), "curve": out.get("curve")})
        if i % 25 == 0 or i == n:
            write_table(make_frame(rows), args.output)  # checkpoint: a rerun continues from here
            rate = (time.perf_counter() - start) / i
            print(f"  {i}/{n} cells, {rate:.2f} s each, eta {math.ceil(rate * (n - i) / 60)} min", file=sys.stderr)

    map_in_workers(_evaluate, jobs, workers=args.workers, on_result=on_result)
    write_table(make_frame(rows), args.output)
    print(f"wrote {args.output}: {len(rows)} cells", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from cellsearch.training.allocator import keep_freed_memory

    keep_freed_memory()  # (a script is its own process: tuned for training steps, as the command line is)
    sys.exit(main())
