"""Every search strategy against random search, replayed on a table of trained cells.

    python benchmarks/strategies.py [--table benchmarks/tables/dag4-arith.parquet] [--space dag4]
                                    [--seeds 24] [--evaluations 60] [--out docs/results/strategies]

Each strategy searches the space ``--seeds`` times (search seeds 0..N-1) with the cells'
scores looked up in the table (``cellsearch search --benchmark``): no model is trained, so a
strategy × seed run takes seconds and the comparison can afford many seeds. The x axis is the
number of *distinct* cells evaluated (a duplicate proposal costs no training in a real search
either); the y axis the best score found so far. Reported per strategy: the mean best-found
curve with its 95% confidence band (plot), and at a few budgets the mean best, the regret
against the table's best cell, how many seeds found the table's top 1%, and Welch's t-test
against random search at the same budget. Writes ``OUT.md``, ``OUT.json`` and ``OUT.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

STRATEGY_OPTIONS = {"evolution": {"settings": 1, "population_size": 10},
                    "regularized-evolution": {"population_size": 10, "sample_size": 3},
                    "rl": {"batch_size": 4}, "tpe": {"n_startup_trials": 10}}


def best_found_curve(run_dir: Path, evaluations: int) -> tuple[list[float], int, int]:
    """Best score after each distinct evaluated cell (padded with the last value when the search
    proposed fewer distinct cells than ``evaluations``); returns (curve, distinct cells, how many of
    those the table lacked: they count as evaluations, as they would cost a training)."""
    from cellsearch.storage.store import read_results

    df = read_results(run_dir)
    df = df[df["reused_from"].isna() & (df["origin"] != "reference")].iloc[:evaluations]
    best, curve = -math.inf, []
    for score in df["score"].tolist()[:evaluations]:
        if score is not None and score == score:
            best = max(best, float(score))
        curve.append(best)
    n = len(curve)
    curve += [curve[-1] if curve else -math.inf] * (evaluations - n)
    return curve, n, int((df["status"] == "missing").sum())


def one_run(job: dict) -> dict:
    import torch

    from cellsearch.runner.search import SearchConfig, SearchRun

    torch.set_num_threads(1)  # (the RL controller's small LSTM; the workers share the cores)
    cfg = SearchConfig(name=f"{job['strategy']}-{job['seed']}", space=job["space"], strategy=job["strategy"],
                       strategy_options=STRATEGY_OPTIONS.get(job["strategy"], {}), seed=job["seed"],
                       trials=job["evaluations"] * 6, benchmark=job["table"], missing="skip")
    start = time.perf_counter()
    run = SearchRun(cfg, job["runs"])
    run.run()
    curve, distinct, missing = best_found_curve(run.run_dir, job["evaluations"])
    shutil.rmtree(run.run_dir, ignore_errors=True)
    return {**job, "curve": curve, "distinct": distinct, "missing": missing, "seconds": time.perf_counter() - start}


def landscape(table, space, children: int = 4, seed: int = 0) -> dict | None:
    """What a strategy could exploit in the table: the share of the score variance each decision
    explains (one-way η²: what TPE models), and the correlation of a cell's score with its
    mutants' (``space.mutate``: what evolution climbs). None when the space is too large to enumerate."""
    import random
    from collections import defaultdict

    import numpy as np

    from cellsearch.spaces.base import Candidate, InvalidCandidate

    dims = space.decisions()
    if math.prod(len(d) for d in dims) > 200_000:
        return None
    cells = {h: (choices, g, entry.score) for h, (choices, g) in space.distinct_cells().items()
             if (entry := table.lookup(h)) is not None and entry.score is not None}
    if len(cells) < 3:
        return None
    y = np.array([v[2] for v in cells.values()])
    total = float(((y - y.mean()) ** 2).sum())
    eta = {}
    for i, d in enumerate(dims):
        groups = defaultdict(list)
        for choices, _, score in cells.values():
            groups[choices[i]].append(score)
        between = sum(len(v) * (np.mean(v) - y.mean()) ** 2 for v in groups.values())
        eta[d.name] = float(between / total) if total else float("nan")
    rng, pairs = random.Random(seed), []
    for choices, g, score in cells.values():
        for _ in range(children):
            try:
                child = space.mutate(Candidate(g, decisions=choices, origin="sample"), rng)
            except InvalidCandidate:
                continue
            entry = table.lookup(child.hash)
            if entry is not None and entry.score is not None:
                pairs.append((score, entry.score))
    r = float(np.corrcoef(np.array(pairs).T)[0, 1]) if len(pairs) > 2 else float("nan")
    return {"cells": len(cells), "eta_squared": eta, "mutant_pairs": len(pairs), "mutant_correlation": r}


def main(argv=None) -> int:
    from cellsearch.analysis.stats import mean_ci, welch
    from cellsearch.strategies import STRATEGY_NAMES
    from cellsearch.storage.benchmark_tables import BenchmarkTable
    from cellsearch.training.parallelism import map_in_workers

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", default="benchmarks/tables/dag4-arith.parquet")
    ap.add_argument("--space", default="dag4")
    ap.add_argument("--seeds", type=int, default=24)
    ap.add_argument("--evaluations", type=int, default=60)
    ap.add_argument("--strategies", default=",".join(STRATEGY_NAMES))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default="docs/results/strategies")
    args = ap.parse_args(argv)
    from cellsearch.spaces import load_space

    table = BenchmarkTable(args.table)
    scores = sorted((e.score for e in table.entries() if e.score is not None), reverse=True)
    top1 = scores[max(0, math.ceil(0.01 * len(scores)) - 1)]
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    runs = Path(tempfile.mkdtemp(prefix="bench-strategies-"))
    jobs = [{"strategy": s, "seed": seed, "space": args.space, "table": args.table, "evaluations": args.evaluations,
             "runs": str(runs)} for s in strategies for seed in range(args.seeds)]
    start = time.perf_counter()

    def progress(i, n, r):
        print(f"\r{i}/{n} runs", end="", file=sys.stderr, flush=True)

    results = map_in_workers(one_run, jobs, workers=args.workers, on_result=progress)
    print(file=sys.stderr)
    shutil.rmtree(runs, ignore_errors=True)
    curves = {s: [r["curve"] for r in sorted(results, key=lambda r: r["seed"]) if r["strategy"] == s]
              for s in strategies}
    budgets = sorted({b for b in (10, 20, 40, args.evaluations) if b <= args.evaluations})
    summary = {"table": args.table, "space": args.space, "cells": len(table), "table_best": scores[0],
               "top_1_percent": top1, "seeds": args.seeds, "evaluations": args.evaluations,
               "seconds": round(time.perf_counter() - start, 1), "strategies": {},
               "landscape": landscape(table, load_space(args.space))}
    for s in strategies:
        mean_curve = [mean_ci([c[i] for c in curves[s]]) for i in range(args.evaluations)]
        at = {}
        for b in budgets:
            values = [c[b - 1] for c in curves[s]]
            ci = mean_ci(values)
            _, p = welch(values, [c[b - 1] for c in curves["random"]]) if "random" in curves and s != "random" \
                else (None, None)
            at[b] = {"mean": ci.mean, "ci": ci.half_width, "regret": scores[0] - ci.mean,
                     "found_top_1_percent": sum(v >= top1 for v in values), "p_vs_random": p}
        summary["strategies"][s] = {
            "curve_mean": [c.mean for c in mean_curve], "curve_ci": [c.half_width for c in mean_curve],
            "at": at, "distinct_min": min(r["distinct"] for r in results if r["strategy"] == s),
            "missing_mean": sum(r["missing"] for r in results if r["strategy"] == s) / args.seeds,
            "seconds_per_run": sum(r["seconds"] for r in results if r["strategy"] == s) / args.seeds}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    _plot(summary, out.with_suffix(".png"))
    out.with_suffix(".md").write_text(_markdown(summary, budgets, args))
    print(out.with_suffix(".md").read_text())
    return 0


def _plot(summary: dict, path: Path) -> None:
    from cellsearch.analysis.gates import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for s, d in summary["strategies"].items():
        xs = list(range(1, len(d["curve_mean"]) + 1))
        lo = [m - (c if c == c else 0) for m, c in zip(d["curve_mean"], d["curve_ci"])]
        hi = [m + (c if c == c else 0) for m, c in zip(d["curve_mean"], d["curve_ci"])]
        ax.plot(xs, d["curve_mean"], label=s, lw=2 if s == "random" else 1.4, ls="--" if s == "random" else "-")
        ax.fill_between(xs, lo, hi, alpha=0.15)
    ax.axhline(summary["table_best"], color="black", lw=0.8, ls=":", label="table's best")
    ax.set_xlabel("distinct cells evaluated")
    ax.set_ylabel("best score found (mean ± 95% CI over seeds)")
    ax.set_title(f"{summary['space']}: {summary['cells']} cells, {summary['seeds']} seeds per strategy")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _markdown(summary: dict, budgets: list[int], args) -> str:
    lines = [f"# Search strategies vs random search (replay on `{summary['table']}`)", "",
             f"`python benchmarks/strategies.py --table {args.table} --space {args.space} --seeds {args.seeds} "
             f"--evaluations {args.evaluations}` ({summary['seconds']:.0f} s, no model trained).", "",
             f"Table: {summary['cells']} distinct cells, best score {summary['table_best']:.4f}, top-1% threshold "
             f"{summary['top_1_percent']:.4f}. Per budget (distinct cells evaluated): mean best score found ± 95% CI "
             f"over {summary['seeds']} search seeds, seeds that found a top-1% cell, Welch p against random search "
             f"at the same budget.", "",
             "| strategy | " + " | ".join(f"after {b}" for b in budgets) + " |",
             "|---|" + "---|" * len(budgets)]
    for s, d in summary["strategies"].items():
        cells = []
        for b in budgets:
            a = d["at"][b]
            p = "" if a["p_vs_random"] is None else f", p={a['p_vs_random']:.2g}"
            cells.append(f"{a['mean']:.4f} ± {a['ci']:.4f} ({a['found_top_1_percent']}/{summary['seeds']}{p})")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    notes = [f"{s} proposed only {d['distinct_min']} distinct cells in some seed (curve carried flat)"
             for s, d in summary["strategies"].items() if d["distinct_min"] < summary["evaluations"]]
    notes += [f"{s}: on average {d['missing_mean']:.1f} of its evaluations were cells outside the table "
              f"(e.g. seed cells not in the space), counted as spent" for s, d in summary["strategies"].items()
              if d["missing_mean"]]
    lines += [""] + [f"- {n}" for n in notes]
    land = summary.get("landscape")
    if land:
        eta = ", ".join(f"{k} {v:.2f}" for k, v in land["eta_squared"].items())
        lines += ["", "## What a strategy can exploit", "",
                  f"Over the {land['cells']} cells the space's decisions decode to: the share of the score variance "
                  f"each decision explains on its own (η², what TPE models): {eta}. Correlation of a cell's score "
                  f"with its mutants' (`space.mutate`, what evolution climbs; {land['mutant_pairs']} pairs): "
                  f"r = {land['mutant_correlation']:.2f}."]
    lines += ["", f"![best found vs evaluations]({Path(args.out).with_suffix('.png').name})", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    from cellsearch.training.allocator import keep_freed_memory

    keep_freed_memory()  # (a script is its own process: tuned for training steps, as the command line is)
    sys.exit(main())
