"""Multi-objective strategies on a replay table (score vs params): hypervolume of each search's front against random search's.

Replays ``--seeds`` searches of ``--trials`` cells per strategy with ``--objectives score,params``
on a shipped table (no training), takes each search's Pareto front over the cells it evaluated
and its 2-D hypervolume (``cellsearch.pareto.hypervolume_2d``; reference point: the table's
worst score and largest parameter count), as a fraction of the table's own front's, and prints
a markdown table: mean ± 95% CI per strategy and Welch's p against random search::

    python benchmarks/pareto_replay.py --table benchmarks/tables/mutation1-arith.parquet \\
        --space mutation1 --trials 40 --seeds 24
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from cellsearch.analysis.stats import mean_ci, welch
from cellsearch.pareto import hypervolume_2d
from cellsearch.runner.search import SearchRun
from cellsearch.storage.benchmark_tables import read_table
from cellsearch.storage.results import pareto_front
from cellsearch.storage.settings import SearchConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", default="benchmarks/tables/mutation1-arith.parquet")
    ap.add_argument("--space", default="mutation1")
    ap.add_argument("--strategies", default="random,regularized-evolution,tpe,nsga2")
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--seeds", type=int, default=24)
    ap.add_argument("--json", type=Path, default=None, help="Also write every search's hypervolume here.")
    args = ap.parse_args()
    df = read_table(args.table)
    df = df[df["score"].notna()]
    if df["params"].nunique() < 2:  # e.g. the dag tables: every cell of a dag space has the same maps
        raise SystemExit(f"{args.table}: every cell has {int(df['params'].iloc[0])} parameters, so score vs params "
                         "has a one-cell front and no hypervolume to compare; use a table whose cells differ in size")
    ref = (float(df["score"].min()), -float(df["params"].max()))
    best = hypervolume_2d([(float(s), -float(p)) for s, p in zip(df["score"], df["params"])], ref)
    hv: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for strategy in args.strategies.split(","):
            for seed in range(args.seeds):
                name = f"{strategy}-{seed}"
                SearchRun(SearchConfig(name=name, space=args.space, strategy=strategy, trials=args.trials, seed=seed,
                                       benchmark=args.table, objectives=["score", "params"]), tmp).run()
                front = [(e["score"], -float(e["params"])) for e in pareto_front(Path(tmp) / name)]
                hv.setdefault(strategy, []).append(hypervolume_2d(front, ref) / best)
    print(f"{args.table}, {args.trials} cells per search, {args.seeds} seeds; hypervolume / the table front's\n")
    print("| strategy | hypervolume (mean ± 95% CI) | Welch p vs random |")
    print("|---|---|---|")
    for strategy, values in hv.items():
        ci = mean_ci(values)
        p = "–" if strategy == "random" else f"{welch(values, hv['random'])[1]:.3g}"
        print(f"| {strategy} | {ci.mean:.3f} ± {ci.mean - ci.lo:.3f} | {p} |")
    if args.json:
        args.json.write_text(json.dumps(hv, indent=2))


if __name__ == "__main__":
    main()
