"""Search quality and parallel speed-up on Arithmetic.

    python benchmarks/bench_search.py [--trials 16] [--seeds 3] [--steps 300] [--space mutation]
                                      [--strategies random,evolution,regularized-evolution,rl,tpe]
                                      [--out runs/bench-search]

1. Quality: every strategy runs the same number of trials on the same space with 3 search
   seeds (in-process, sequential, so runs do not disturb each other's timing); reported is
   the best validation char-accuracy on Arithmetic found after N trials (mean ± std over
   seeds), beside random search. The evolution's own fitness is relative to the GRU, so the
   comparison uses the raw metric every strategy records.
2. Speed: the same random search (same seed, same trials) on Ray Tune with --parallel 1 and
   --parallel 2; reported is the wall time of each and their ratio.
Prints a JSON summary and writes it (and a Markdown table) under --out.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

from cellsearch.runner.search import SearchConfig, SearchRun
from cellsearch.storage.store import read_results


def best_char_accuracy(run_dir: Path) -> list[float]:
    """Best arith char-accuracy after each candidate (the reference cell excluded)."""
    df = read_results(run_dir)
    df = df[df.origin != "reference"]
    best, curve = 0.0, []
    for _, row in df.iterrows():
        value = (row.metrics.get("arith") or {}).get("char_accuracy")
        if value is not None:
            best = max(best, value)
        curve.append(best)
    return curve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--space", default="mutation")
    ap.add_argument("--strategies", default="random,evolution,regularized-evolution,rl,tpe")
    ap.add_argument("--parallel-trials", type=int, default=8)
    ap.add_argument("--out", default="runs/bench-search")
    args = ap.parse_args()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    options = {"evolution": {"settings": 1, "population_size": 8},
               "regularized-evolution": {"population_size": 8, "sample_size": 3},
               "rl": {"batch_size": 4}, "tpe": {"n_startup_trials": 6}}
    quality: dict[str, dict] = {}
    for strategy in args.strategies.split(","):
        finals, seconds = [], []
        for seed in range(args.seeds):
            cfg = SearchConfig(name=f"{strategy}-s{seed}", space=args.space, strategy=strategy, trials=args.trials,
                               steps=args.steps, seed=seed, backend="local",
                               strategy_options=options.get(strategy, {}))
            t0 = time.perf_counter()
            SearchRun(cfg, out / "quality").run()
            seconds.append(time.perf_counter() - t0)
            finals.append(best_char_accuracy(out / "quality" / cfg.name)[-1])
            print(f"{strategy} seed {seed}: best char_accuracy {finals[-1]:.4f} ({seconds[-1]:.0f}s)", flush=True)
        quality[strategy] = {"best_after_trials": finals, "mean": statistics.mean(finals),
                             "std": statistics.stdev(finals) if len(finals) > 1 else 0.0,
                             "seconds": statistics.mean(seconds)}
    if "random" in quality:
        for strategy, q in quality.items():
            q["vs_random"] = q["mean"] - quality["random"]["mean"]
    speed = {}
    for parallel in (1, 2):
        cfg = SearchConfig(name=f"parallel-{parallel}", space=args.space, strategy="random",
                           trials=args.parallel_trials, steps=args.steps, seed=0, parallel=parallel, backend="ray",
                           scheduler="fifo")
        t0 = time.perf_counter()
        SearchRun(cfg, out / "speed").run()
        speed[f"parallel_{parallel}_seconds"] = time.perf_counter() - t0
        print(f"--parallel {parallel}: {speed[f'parallel_{parallel}_seconds']:.0f}s", flush=True)
    speed["speedup"] = speed["parallel_1_seconds"] / speed["parallel_2_seconds"]
    result = {"space": args.space, "trials": args.trials, "seeds": args.seeds, "steps": args.steps,
              "quality": quality, "speed": speed}
    (out / "result.json").write_text(json.dumps(result, indent=2))
    lines = [f"Best Arithmetic char-accuracy after {args.trials} trials ({args.space} space, {args.steps} steps per "
             f"trial, mean ± std over {args.seeds} seeds)", "", "| strategy | best | vs random | s per search |",
             "|---|---|---|---|"]
    for s, q in quality.items():
        lines.append(f"| {s} | {q['mean']:.4f} ± {q['std']:.4f} | {q.get('vs_random', 0):+.4f} | {q['seconds']:.0f} |")
    lines += ["", f"Ray Tune, {args.parallel_trials} random-search trials: --parallel 1 "
                  f"{speed['parallel_1_seconds']:.0f}s, --parallel 2 {speed['parallel_2_seconds']:.0f}s "
                  f"(speed-up {speed['speedup']:.2f}×)"]
    (out / "result.md").write_text("\n".join(lines) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
