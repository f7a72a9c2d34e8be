"""Search strategies compared at equal compute: the same CPU budget per search, the best cells retrained.

    python benchmarks/equal_compute.py [--out runs/equal-compute] [--budget 2.0] [--seeds 5]
        [--methods random,regularized-evolution,tpe,rl,enas,darts,rsws] [--steps 400]
        [--retrain-steps 1500] [--retrain-seeds 2] [--report docs/results/equal-compute]

Every search gets ``--budget`` core-minutes: it runs on one core (torch and its trials single-threaded;
two searches at a time on this 2-core machine) for ``--budget`` minutes of wall time. The space is
``dag`` (the ENAS/DARTS recurrent cell), the task Arithmetic with 2-digit operands at hidden 32 and
lr 0.01 (the settings of the ``dag4`` replay table, ``benchmarks/make_table.py``, on which cells differ
by 0.30–0.49 char-accuracy after 400 steps).

- Sampling strategies (random search, regularized evolution, TPE, the RL controller) run as
  ``SearchRun`` on Ray (one shared local cluster, one trial at a time per search, the default ASHA
  scheduler) with ``--steps`` training steps per trial; at the budget the search gets SIGINT and
  stops as a user's Ctrl-C stops it. Its cells are those finished by then.
- One-shot strategies (ENAS, DARTS, RS-WS) train their supernet for the budget less an allowance for
  scoring (``ONESHOT_SCORING``), then score ``--candidates`` cells with the shared weights and record
  their top 3. They are not stopped (their cells are recorded at the end); the compute each spent is
  reported, and a search more than 10% over the budget is named under the table.
- Each search's top 3 cells (by its own score) are retrained with the final protocol: ``--retrain-steps``
  steps, ``--retrain-seeds`` seeds, score = mean validation char-accuracy. A cell found by several
  searches is retrained once (its cost is charged to each search that found it).

Reported (printed as a Markdown table; ``--report``.json and .png): the best retrained score per search (mean ± 95% CI over search
seeds), Welch's p against random search, the compute spent searching (measured wall × 1 core) and
retraining, the anytime curve (mean over seeds of the best retrained score among the search's top-3
cells found by t core-minutes). Every finished unit (a search, a retraining) is stored under ``--out``
as it ends; a rerun skips what is done, so the benchmark resumes after an interruption (an interrupted
search is rerun from its start). A rerun into the same ``--out`` with another budget, steps, candidates
or retraining steps is refused.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cellsearch.fileio import atomic_write, save_figure  # noqa: E402  (no torch: cheap in the parent)

SAMPLING = ("random", "regularized-evolution", "tpe", "rl")
ONESHOT = ("enas", "darts", "rsws")
TRAIN = {"hidden_size": 32, "lr": 0.01}
TASK_OPTIONS = {"arith": {"max_digits": 2}}
ONESHOT_SCORING = 0.25  # share of a one-shot search's budget kept for scoring cells with the shared weights
GRACE = 90.0  # seconds a sampling search may take to stop after SIGINT before it is killed
TOP = 3


# ---------------------------------------------------------------------------------------------- children
def child_search(args: argparse.Namespace) -> None:
    """One search in this process (run by the parent as a subprocess); writes ``unit.json`` at its end."""
    import torch

    torch.set_num_threads(1)
    from cellsearch import SearchConfig, SearchRun
    from cellsearch.storage.store import read_results

    out = Path(args.run_dir)
    start = time.time()
    budget = args.budget * 60.0
    common = dict(name=out.name, space="dag", tasks=["arith"], seed=args.seed, train=dict(TRAIN),
                  task_options={k: dict(v) for k, v in TASK_OPTIONS.items()})
    if args.method in ONESHOT:
        minutes = args.budget * (1 - ONESHOT_SCORING)
        cfg = SearchConfig(strategy=args.method, trials=TOP, minutes=minutes, backend="local",
                           strategy_options={"candidates": args.candidates}, **common)
        summary = SearchRun(cfg, runs_dir=out.parent).run()
    else:
        cfg = SearchConfig(strategy=args.method, trials=100_000, steps=args.steps, parallel=1, cpus_per_trial=1,
                           address=args.address, **common)
        run = SearchRun(cfg, runs_dir=out.parent)
        summary = run.run()
    end = time.time()
    df = read_results(out)
    df = df[df.origin != "reference"]
    if args.method in SAMPLING:
        df = df[df.created <= start + budget]
    # cells trained (ASHA-stopped ones included), or scored with the supernet's shared weights
    evaluated = len(df) if args.method in SAMPLING else int(summary.get("scored", len(df)))
    found = df[(df.status == "ok") & df.score.notna()]  # the top cells: trained to the end
    top = found.sort_values("score", ascending=False).drop_duplicates("hash").head(TOP)
    unit = {"method": args.method, "seed": args.seed, "seconds": end - start, "budget_seconds": budget,
            "evaluated": int(evaluated), "supernet_steps": summary.get("steps"), "interrupted": bool(summary.get("interrupted")),
            "top": [{"hash": r.hash, "yaml": r.cell_yaml, "search_score": float(r.score),
                     "found_at": float(min(r.created - start, end - start))} for r in top.itertuples()]}
    atomic_write(out / "unit.json", json.dumps(unit, indent=1))


def child_retrain(args: argparse.Namespace) -> None:
    """Retrain one cell with one seed under the final protocol; writes ``--result``."""
    import torch

    torch.set_num_threads(1)
    from cellsearch.dsl.io import loads_cell
    from cellsearch.training.config import TrainConfig
    from cellsearch.training.trainer import train

    graph = loads_cell(Path(args.yaml).read_text())
    start = time.time()
    result = train(TrainConfig(task="arith", steps=args.retrain_steps, seed=args.seed, threads=1,
                               task_options=dict(TASK_OPTIONS["arith"]), **TRAIN), graph=graph)
    score = result.metrics.get("char_accuracy")
    atomic_write(args.result, json.dumps({"score": score, "status": result.status, "seconds": time.time() - start,
                                          "steps": args.retrain_steps}))


# ---------------------------------------------------------------------------------------------- parent
def run_child(argv: list[str], limit: float | None, log: Path) -> float:
    """Run ``argv`` (this script as a child); SIGINT at ``limit`` seconds, SIGKILL ``GRACE`` later.
    Returns the wall seconds it ran."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    start = time.time()
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, __file__, *argv], stdout=f, stderr=subprocess.STDOUT, env=env)
        try:
            proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return time.time() - start


def search_unit(args: argparse.Namespace, method: str, seed: int, address: str | None) -> dict[str, Any] | None:
    """One search (run, or read back if done)."""
    run_dir = Path(args.out) / "searches" / f"{method}-{seed}"
    done = run_dir / "unit.json"
    if done.exists():
        return json.loads(done.read_text())
    shutil.rmtree(run_dir, ignore_errors=True)  # an interrupted search starts again
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    argv = ["_search", "--method", method, "--seed", str(seed), "--run-dir", str(run_dir),
            "--budget", str(args.budget), "--steps", str(args.steps), "--candidates", str(args.candidates)]
    if address:
        argv += ["--address", address]
    limit = args.budget * 60.0 if method in SAMPLING else None
    log = run_dir.parent / f"{method}-{seed}.log"
    print(f"search {method} seed {seed} ...", flush=True)
    run_child(argv, limit, log)
    if not done.exists():
        print(f"  {method} seed {seed} wrote no result: see {log}", flush=True)
        return None
    unit = json.loads(done.read_text())
    print(f"  {method} seed {seed}: {unit['evaluated']} cells, {unit['seconds']:.0f} s, best search score "
          f"{unit['top'][0]['search_score'] if unit['top'] else None}", flush=True)
    return unit


def write_cells(args: argparse.Namespace, cells: dict[str, str]) -> None:
    """Each cell to retrain as ``retrain/HASH.yaml``, once (its seeds' retrainings run side by side)."""
    folder = Path(args.out) / "retrain"
    folder.mkdir(parents=True, exist_ok=True)
    for cell_hash, yaml_text in cells.items():
        atomic_write(folder / f"{cell_hash}.yaml", yaml_text)


def retrain_unit(args: argparse.Namespace, cell_hash: str, yaml_text: str, seed: int) -> dict[str, Any] | None:
    """One retraining of one cell with one seed (run, or read back if done)."""
    folder = Path(args.out) / "retrain"
    folder.mkdir(parents=True, exist_ok=True)
    result = folder / f"{cell_hash}-{seed}.json"
    if result.exists():
        return json.loads(result.read_text())
    cell = folder / f"{cell_hash}.yaml"  # (written once, before the retrainings start: write_cells)
    run_child(["_retrain", "--yaml", str(cell), "--seed", str(seed), "--retrain-steps", str(args.retrain_steps),
               "--result", str(result)], None, folder / f"{cell_hash}-{seed}.log")
    return json.loads(result.read_text()) if result.exists() else None


SETTINGS = ("budget", "steps", "candidates", "retrain_steps")  # what a stored unit's result depends on


def check_settings(args: argparse.Namespace, out: Path) -> None:
    """Refuse (one line) to resume into ``out`` with settings its stored units were not measured with."""
    path = out / "settings.json"
    mine = {k: getattr(args, k) for k in SETTINGS}
    if path.exists():
        stored = json.loads(path.read_text())
        changed = [k for k in SETTINGS if stored.get(k) != mine[k]]
        if changed:
            sys.exit(f"{out} holds results measured with --{changed[0].replace('_', '-')} {stored.get(changed[0])}, "
                     f"not {mine[changed[0]]}: use another --out or the same settings")
    else:
        atomic_write(path, json.dumps(mine))


def start_ray(out: Path) -> str:
    """A local Ray cluster of 2 CPUs, this benchmark's own (its temp dir under ``out``); its address."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str((out / "ray").resolve()), log_to_driver=False)
    return ray.get_runtime_context().gcs_address


def summarise(args: argparse.Namespace, units: dict[tuple[str, int], dict[str, Any]],
              retrained: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per method: best retrained score per search, compute, anytime curve; Welch p against random."""
    from cellsearch.analysis.stats import mean_ci, welch

    horizon = max([args.budget] + [u["seconds"] / 60 for u in units.values()])  # (a one-shot search may run over)
    grid = [horizon * k / 20 for k in range(21)]
    methods: dict[str, Any] = {}
    for method in args.methods:
        searches = []
        for seed in range(args.seeds):
            unit = units.get((method, seed))
            if unit is None:
                continue
            cells = [dict(c, retrained=retrained.get(c["hash"], {}).get("score")) for c in unit["top"]]
            scored = [c for c in cells if c["retrained"] is not None]
            best = max((c["retrained"] for c in scored), default=None)
            curve = [max((c["retrained"] for c in scored if c["found_at"] <= minutes * 60), default=None)
                     for minutes in grid]
            searches.append({"seed": seed, "best": best, "evaluated": unit["evaluated"],
                             "search_minutes": unit["seconds"] / 60,
                             "retrain_minutes": sum(retrained.get(c["hash"], {}).get("seconds", 0.0)
                                                    for c in unit["top"]) / 60,
                             "cells": cells, "curve": curve})
        bests = [s["best"] for s in searches if s["best"] is not None]
        ci = mean_ci(bests)
        methods[method] = {"searches": searches, "best": bests, "mean": ci.mean if bests else None,
                           "ci95": ci.half_width, "text": ci.text(),
                           "search_minutes": sum(s["search_minutes"] for s in searches) / max(1, len(searches)),
                           "retrain_minutes": sum(s["retrain_minutes"] for s in searches) / max(1, len(searches)),
                           "evaluated": sum(s["evaluated"] for s in searches) / max(1, len(searches))}
    base = methods.get("random", {}).get("best", [])
    for method, m in methods.items():
        m["p_vs_random"] = (welch(m["best"], base)[1]
                            if method != "random" and len(m["best"]) > 1 and len(base) > 1 else None)
    return {"budget_core_minutes": args.budget, "seeds": args.seeds, "steps": args.steps,
            "retrain_steps": args.retrain_steps, "retrain_seeds": args.retrain_seeds,
            "candidates": args.candidates, "grid_minutes": grid, "methods": methods}


def write_report(summary: dict[str, Any], prefix: Path, command: str, wall: float) -> None:
    """The Markdown table, the anytime plot and the JSON."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prefix.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(prefix.with_suffix(".json"), json.dumps(summary, indent=1))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    grid = summary["grid_minutes"]
    for method, m in summary["methods"].items():
        points = []
        for k, t in enumerate(grid):
            values = [s["curve"][k] for s in m["searches"] if s["curve"][k] is not None]
            if len(values) == len(m["searches"]) and values:  # every seed has a cell by then
                points.append((t, sum(values) / len(values)))
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=method,
                    linestyle="--" if method in ONESHOT else "-")
    ax.set_xlabel("search compute (core-minutes)")
    ax.set_ylabel("best retrained char-accuracy (mean over seeds)")
    ax.set_title("equal compute: dag space, Arithmetic (2 digits)")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, prefix.with_suffix(".png"), dpi=110)
    lines = [f"`{command}` ({wall / 60:.0f} min wall for the part run last; results resume from `--out`).", "",
             f"Budget per search: {summary['budget_core_minutes']} core-minutes; {summary['seeds']} search seeds; "
             f"sampling strategies train {summary['steps']} steps per trial; top {TOP} cells of each search "
             f"retrained {summary['retrain_steps']} steps × {summary['retrain_seeds']} seeds.", "",
             "| method | searches | best retrained (mean ± 95% CI) | p vs random (Welch) | cells evaluated | "
             "search core-min | retrain core-min |", "|---|---|---|---|---|---|---|"]
    for method, m in summary["methods"].items():
        mean = m["text"]
        p = "–" if m["p_vs_random"] is None else f"{m['p_vs_random']:.2g}"
        lines.append(f"| {method} | {len(m['best'])} | {mean} | {p} | {m['evaluated']:.0f} | "
                     f"{m['search_minutes']:.2f} | {m['retrain_minutes']:.2f} |")
    over = [f"{m} seed {s['seed']}" for m, v in summary["methods"].items() for s in v["searches"]
            if s["search_minutes"] > 1.1 * summary["budget_core_minutes"]]
    if over:
        lines += ["", f"Over the budget by more than 10%: {', '.join(over)}."]
    print("\n".join(lines))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("_search", "_retrain"):
        ap = argparse.ArgumentParser()
        ap.add_argument("mode")
        for flag in ("--method", "--run-dir", "--address", "--yaml", "--result"):
            ap.add_argument(flag)
        for flag in ("--seed", "--steps", "--candidates", "--retrain-steps"):
            ap.add_argument(flag, type=int)
        ap.add_argument("--budget", type=float)
        args = ap.parse_args()
        (child_search if args.mode == "_search" else child_retrain)(args)
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/equal-compute")
    ap.add_argument("--budget", type=float, default=2.0, help="core-minutes per search")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--methods", default=",".join(SAMPLING + ONESHOT))
    ap.add_argument("--steps", type=int, default=400, help="training steps per trial (sampling strategies)")
    ap.add_argument("--candidates", type=int, default=100, help="cells a one-shot search scores")
    ap.add_argument("--retrain-steps", type=int, default=1500)
    ap.add_argument("--retrain-seeds", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=2, help="units run at a time (one core each)")
    ap.add_argument("--report", default="docs/results/equal-compute")
    args = ap.parse_args()
    args.methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in args.methods if m not in SAMPLING + ONESHOT]
    if unknown:
        sys.exit(f"unknown method {unknown[0]} (known: {', '.join(SAMPLING + ONESHOT)})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    check_settings(args, out)
    begin = time.time()
    address = start_ray(out) if any(m in SAMPLING for m in args.methods) else None
    jobs = [(m, s) for s in range(args.seeds) for m in args.methods]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda job: search_unit(args, job[0], job[1], address), jobs))
        units = {job: unit for job, unit in zip(jobs, results) if unit is not None}
        cells = {c["hash"]: c["yaml"] for unit in units.values() for c in unit["top"]}
        write_cells(args, cells)
        work = [(h, y, s) for h, y in cells.items() for s in range(args.retrain_seeds)]
        print(f"retraining {len(cells)} distinct cells × {args.retrain_seeds} seeds", flush=True)
        runs = list(pool.map(lambda w: retrain_unit(args, *w), work))
    retrained: dict[str, dict[str, Any]] = {}
    for (h, _, _), r in zip(work, runs):
        if r is not None and r["score"] is not None:
            entry = retrained.setdefault(h, {"scores": [], "seconds": 0.0})
            entry["scores"].append(r["score"])
            entry["seconds"] += r["seconds"]
    for entry in retrained.values():
        entry["score"] = sum(entry["scores"]) / len(entry["scores"])
    summary = summarise(args, units, retrained)
    command = "python " + " ".join(["benchmarks/equal_compute.py", *sys.argv[1:]])
    write_report(summary, Path(args.report), command, time.time() - begin)


if __name__ == "__main__":
    main()
