"""How well a one-shot supernet ranks cells: its one-shot scores against the standalone scores of a table.

    python benchmarks/oneshot_ranking.py [--table benchmarks/tables/dag4-arith.parquet] [--space dag4]
                                         [--steps 400 2000] [--seeds 0 1] [--out runs/oneshot-ranking]
                                         [--strategy rsws|enas|darts]

For each supernet budget (``--steps``) and search seed, trains the space's RS-WS (or ENAS) supernet with the
table's training settings (``benchmarks/make_table.py``: hidden 32, lr 0.01, Arithmetic with
``max_digits=2``), scores every cell it can find with the shared weights (``candidates`` = the
table's size), and compares those scores with the table's (each cell trained alone for 400
steps): Kendall's τ and Spearman's ρ over the cells both score, and where the one-shot search's
best cell ranks in the table. Prints one JSON line per run. ENAS scores the cells its trained
controller samples (with its default options), so it may find fewer of them. DARTS scores the
derived cells by decreasing probability under its learned α (default options), every cell of the
table within ``candidates`` distinct ones; its line adds where DARTS's derived cell (the argmax of
every node) ranks in the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import pandas as pd
    from scipy.stats import kendalltau, spearmanr

    from cellsearch.oneshot.search import run_oneshot
    from cellsearch.oneshot.strategies import ONESHOT_STRATEGIES, oneshot_strategy
    from cellsearch.storage.settings import SearchConfig
    from cellsearch.storage.store import Store

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", default="benchmarks/tables/dag4-arith.parquet")
    ap.add_argument("--space", default="dag4")
    ap.add_argument("--steps", type=int, nargs="+", default=[400, 2000])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--out", default="runs/oneshot-ranking")
    ap.add_argument("--strategy", choices=list(ONESHOT_STRATEGIES), default="rsws")
    args = ap.parse_args()
    table = pd.read_parquet(args.table).set_index("hash")["score"]
    for steps in args.steps:
        for seed in args.seeds:
            name = f"{args.strategy}-{args.space}-{steps}-{seed}-{time.strftime('%Y%m%d-%H%M%S')}"
            cfg = SearchConfig(name=name, space=args.space, strategy=args.strategy, tasks=["arith"], steps=steps,
                               trials=len(table), seed=seed, strategy_options={"candidates": len(table)},
                               backend="local", train={"hidden_size": 32, "lr": 0.01},
                               task_options={"arith": {"max_digits": 2}})
            start = time.time()
            run_oneshot(oneshot_strategy(args.strategy), cfg, args.out)
            with Store(Path(args.out) / name / "results.db", readonly=True) as store:
                oneshot = {r["hash"]: r["score"] for r in store.rows() if r["score"] is not None}
            common = [h for h in oneshot if h in table.index]
            a, b = [oneshot[h] for h in common], [table[h] for h in common]
            best = max(common, key=lambda h: oneshot[h])
            extra = {}
            if args.strategy == "darts":  # DARTS's own answer: the derived cell (argmax of every node)
                from cellsearch.dsl.hashing import canonical_hash
                from cellsearch.spaces import load_space
                from cellsearch.training.checkpoint import read_checkpoint_data

                ckpt = read_checkpoint_data(Path(args.out) / name / "oneshot.pt")
                derived = canonical_hash(load_space(args.space).decode(ckpt["extra"]["derived"]))
                extra = {"derived_cell_standalone": round(float(table[derived]), 4),
                         "derived_rank_in_table": int((table > table[derived]).sum()) + 1}
            print(json.dumps({
                "strategy": args.strategy, "steps": steps, "seed": seed, "cells": len(common), "seconds": round(time.time() - start, 1),
                "kendall_tau": round(float(kendalltau(a, b).statistic), 3),
                "kendall_p": float(kendalltau(a, b).pvalue), "spearman": round(float(spearmanr(a, b).statistic), 3),
                "best_oneshot_cell_standalone": round(float(table[best]), 4),
                "its_rank_in_table": int((table > table[best]).sum()) + 1, "table_best": round(float(table.max()), 4),
                "table_mean": round(float(table.mean()), 4), **extra}), flush=True)


if __name__ == "__main__":
    main()
