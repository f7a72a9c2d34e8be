"""Early stopping replayed on a table's learning curves: where ranks settle, and what ASHA saves against FIFO.

    python benchmarks/asha_replay.py [--table benchmarks/tables/mutation1-arith.parquet]
                                     [--repeats 400] [--out docs/results/asha-mutation1]

The table (``benchmarks/make_table.py --seeds S --curve-every N``) holds every cell's learning
curve: the mean over S seeds of the task's primary metric every N steps, up to the full budget R.
Because the trainer's learning rate is constant (the default schedule), the curve at step s *is*
what an s-step training scores, so a search can be replayed at any rung without training.

1. **Where ranks settle**: Kendall's τ and Spearman's ρ between every cell's score at step s
   and its final score (at R), for each recorded s.
2. **Early stopping**: random search over the table's cells (drawn without replacement, the
   search seed decides the order) run ``--repeats`` times with FIFO (every trial trains R
   steps) and with ASHA as our search runs it (Ray Tune's asynchronous successive halving: at
   each rung a trial whose running-best score is below the (1 − 1/η) quantile of the scores
   already recorded at that rung stops; ``asha_stops`` is that rule, checked against Ray's
   own ``_Bracket`` by the tests). The search's answer is the best final score among trials
   that trained all R steps. **Compute saved at equal best final score**: for ASHA with N trials,
   the compute FIFO needs to reach the same mean best final score (interpolated on FIFO's curve
   over 1..table-size trials) divided by ASHA's compute.

Writes ``OUT.md``, ``OUT.json`` and ``OUT.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

WORST = -math.inf  # a diverged or failed training: ranks below every score (Tune sees FAILED_SCORE)


def load_curves(path: str | Path) -> tuple[list[int], np.ndarray, np.ndarray, list[str]]:
    """(steps, mean-curve matrix [cells, steps], final scores [cells], cell names) from a table with curves;
    a missing value (a training that diverged) is ``WORST``."""
    from cellsearch.errors import ConfigError
    from cellsearch.storage.benchmark_tables import read_table

    df = read_table(path)
    rows = [r for r in df.to_dict("records") if isinstance(r.get("curve"), str) and r["curve"]]
    if not rows:
        raise ConfigError(f"{path}: no learning curves (make the table with make_table.py --curve-every N)")
    parsed = [json.loads(r["curve"]) for r in rows]
    steps = max((c["steps"] for c in parsed), key=len)
    curves = np.full((len(rows), len(steps)), WORST)
    for i, c in enumerate(parsed):
        for j, v in enumerate(c["mean"][:len(steps)]):
            if v is not None and math.isfinite(v):
                curves[i, j] = v
    finals = np.array([r["score"] if r["status"] == "ok" and r["score"] == r["score"] else WORST for r in rows])
    return list(steps), curves, finals, [str(r.get("cell_name")) for r in rows]


def seed_spread(path: str | Path) -> dict:
    """How much the cells differ against how much seeds do: the final scores' spread over cells, the
    mean standard deviation over one cell's seeds, and the share of the variance that lies between
    cells (one-way ANOVA's intraclass correlation; 1 = seeds agree perfectly)."""
    from cellsearch.storage.benchmark_tables import read_table

    finals = []
    for r in read_table(path).to_dict("records"):
        if r["status"] != "ok" or not isinstance(r.get("curve"), str):
            continue
        members = [m[-1] for m in json.loads(r["curve"])["members"] if m and m[-1] is not None]
        if len(members) > 1:
            finals.append(members)
    if not finals:
        return {}
    k = min(len(m) for m in finals)
    x = np.array([m[:k] for m in finals])
    means = x.mean(axis=1)
    within = x.var(axis=1, ddof=1).mean()
    between = means.var(ddof=1) - within / k
    return {"cells": len(x), "seeds": k, "mean_min": float(means.min()), "mean_max": float(means.max()),
            "mean_std": float(means.std(ddof=1)), "seed_std": float(np.sqrt(within)),
            "icc": float(between / (between + within)) if between + within > 0 else float("nan")}


def rank_fidelity(steps: list[int], curves: np.ndarray, finals: np.ndarray) -> list[dict]:
    """Kendall τ and Spearman ρ between the scores at each step and the final scores (cells with both)."""
    from scipy.stats import kendalltau, spearmanr

    out = []
    for j, s in enumerate(steps):
        ok = np.isfinite(curves[:, j]) & np.isfinite(finals)
        tau = kendalltau(curves[ok, j], finals[ok]).statistic if ok.sum() > 2 else float("nan")
        rho = spearmanr(curves[ok, j], finals[ok]).statistic if ok.sum() > 2 else float("nan")
        out.append({"steps": s, "kendall": float(tau), "spearman": float(rho), "cells": int(ok.sum())})
    return out


def asha_stops(recorded: list[float], score: float, rf: float) -> bool:
    """Ray Tune's ASHA rule at one rung: stop when ``score`` is below the (1 − 1/rf) quantile of the
    scores already recorded there (none recorded: continue)."""
    if not recorded:
        return False
    return bool(score < np.nanpercentile(recorded, (1 - 1 / rf) * 100))


def run_search(order: np.ndarray, curves: np.ndarray, finals: np.ndarray, steps: list[int],
               rungs: tuple[int, ...] | None, rf: float) -> tuple[list[float], list[float]]:
    """Random search over ``order`` (cell indices) with FIFO (``rungs`` None) or ASHA at ``rungs`` (steps);
    returns (compute after each trial in steps, best final score after each trial)."""
    recorded: dict[int, list[float]] = {r: [] for r in rungs or ()}
    spent, best, compute, found = 0, WORST, [], []
    for cell in order:
        stopped_at = None
        running = WORST
        for j, s in enumerate(steps):
            running = max(running, curves[cell, j])  # a trial reports its best score so far
            if s in recorded:
                if asha_stops(recorded[s], running, rf):
                    stopped_at = s
                recorded[s].append(running)
                if stopped_at is not None:
                    break
        spent += stopped_at if stopped_at is not None else steps[-1]
        if stopped_at is None:
            best = max(best, finals[cell])
        compute.append(spent)
        found.append(best)
    return compute, found


def simulate(curves: np.ndarray, finals: np.ndarray, steps: list[int], schedules: dict[str, tuple],
             repeats: int, seed: int = 0) -> dict[str, dict]:
    """Mean compute and mean best final score after n trials (n = 1..cells), per schedule, over ``repeats`` orders."""
    rng = np.random.default_rng(seed)
    n = len(finals)
    floor = float(np.min(finals[np.isfinite(finals)]))  # a search with no finished trial yet: the worst score
    acc = {name: (np.zeros(n), np.zeros(n)) for name in schedules}
    for _ in range(repeats):
        order = rng.permutation(n)
        for name, (rungs, rf) in schedules.items():
            compute, found = run_search(order, curves, finals, steps, rungs, rf)
            acc[name][0][:] += compute
            acc[name][1][:] += np.maximum(found, floor)
    return {name: {"compute": (c / repeats).tolist(), "best": (b / repeats).tolist()} for name, (c, b) in acc.items()}


def fifo_compute_for(best: float, fifo: dict) -> float | None:
    """Compute FIFO needs for a mean best final score of ``best`` (linear interpolation on its curve)."""
    comp, found = np.array(fifo["compute"]), np.array(fifo["best"])
    if not np.isfinite(found).any() or best > np.nanmax(found):
        return None
    k = int(np.argmax(found >= best))
    if k == 0:
        return float(comp[0])
    lo, hi = found[k - 1], found[k]
    t = 0.0 if hi == lo else (best - lo) / (hi - lo)
    return float(comp[k - 1] + t * (comp[k] - comp[k - 1]))


def schedules_for(steps: list[int]) -> dict[str, tuple]:
    """The ASHA rung sets our search can run: reports every ``steps[0]`` steps, grace g reports, η = rf:
    rungs at g·η^k reports below the last one (Ray's geometric milestones)."""
    out: dict[str, tuple] = {"fifo": (None, 1.0)}
    every, last = steps[0], steps[-1]
    for rf in (2, 3, 4):
        for grace in (1, 2):
            rungs, m = [], grace
            while m * every < last:
                rungs.append(m * every)
                m *= rf
            if rungs:
                out[f"asha η={rf} rungs {','.join(map(str, rungs))}"] = (tuple(rungs), float(rf))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", default="benchmarks/tables/mutation1-arith.parquet")
    ap.add_argument("--repeats", type=int, default=400, help="search seeds (random orders) per schedule")
    ap.add_argument("--trials", default="16,32,64", help="search sizes at which compute saved is reported")
    ap.add_argument("--out", default="docs/results/asha-mutation1")
    args = ap.parse_args(argv)

    start = time.perf_counter()
    steps, curves, finals, _ = load_curves(args.table)
    fidelity = rank_fidelity(steps, curves, finals)
    spread = seed_spread(args.table)
    schedules = schedules_for(steps)
    sims = simulate(curves, finals, steps, schedules, args.repeats)
    sizes = [int(n) for n in args.trials.split(",") if 0 < int(n) <= len(finals)]
    rows = []
    for name, sim in sims.items():
        row = {"schedule": name, "rungs": list(schedules[name][0] or []), "rf": schedules[name][1], "at": {}}
        for n in sizes:
            comp, best = sim["compute"][n - 1], sim["best"][n - 1]
            need = comp if name == "fifo" else fifo_compute_for(best, sims["fifo"])  # (the baseline itself)
            row["at"][str(n)] = {"compute_runs": comp / steps[-1], "best": best,
                                 "fifo_compute_runs": None if need is None else need / steps[-1],
                                 "saved": None if need is None else need / comp}
        rows.append(row)
    table_best = float(np.max(finals[np.isfinite(finals)]))
    summary = {"table": str(args.table), "cells": len(finals), "steps": steps, "repeats": args.repeats,
               "table_best": table_best, "spread": spread, "fidelity": fidelity, "schedules": rows, "simulations": sims,
               "seconds": round(time.perf_counter() - start, 1)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    _write_markdown(out.with_suffix(".md"), summary, sizes, argv)
    _plot(out.with_suffix(".png"), summary)
    print(f"wrote {out.with_suffix('.md')} ({summary['seconds']} s)", file=sys.stderr)
    return 0


def _fmt(v, spec=".2f") -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def _write_markdown(path: Path, s: dict, sizes: list[int], argv) -> None:
    lines = [f"# Early stopping replayed on `{s['table']}`", "",
             f"`python benchmarks/asha_replay.py --table {s['table']} --repeats {s['repeats']}` "
             f"({s['seconds']} s, no model trained). {s['cells']} cells, learning curves every "
             f"{s['steps'][0]} steps up to {s['steps'][-1]}; table best {s['table_best']:.4f}.", "",
             *(["## How much the cells differ", "",
                f"Over the {sp['cells']} cells that trained, the mean of {sp['seeds']} seeds' final scores ranges "
                f"{sp['mean_min']:.4f}–{sp['mean_max']:.4f} (standard deviation {sp['mean_std']:.4f} over cells) "
                f"while one cell's seeds differ by {sp['seed_std']:.4f} (standard deviation, mean over cells): "
                f"{100 * sp['icc']:.0f}% of a single training's variance lies between cells (intraclass "
                f"correlation).", ""] if (sp := s.get("spread")) else []),
             "## Where ranks settle", "",
             "Rank correlation between each cell's score after s steps and its final score:", "",
             "| steps | Kendall τ | Spearman ρ | cells |", "|---|---|---|---|"]
    lines += [f"| {f['steps']} | {_fmt(f['kendall'])} | {_fmt(f['spearman'])} | {f['cells']} |" for f in s["fidelity"]]
    lines += ["", "## ASHA against FIFO (random search)", "",
              "Per search size N (trials): compute in full trainings, mean best final score over "
              f"{s['repeats']} search seeds, the compute FIFO needs for the same mean best final score, "
              "and the ratio (compute saved at equal best final score).", "",
              "| schedule | " + " | ".join(f"N={n}: compute, best, FIFO compute, saved" for n in sizes) + " |",
              "|---|" + "---|" * len(sizes)]
    for r in s["schedules"]:
        cells = [f"{_fmt(a['compute_runs'], '.1f')}, {_fmt(a['best'], '.4f')}, {_fmt(a['fifo_compute_runs'], '.1f')}, "
                 f"**{_fmt(a['saved'])}×**" for a in (r["at"][str(n)] for n in sizes)]
        lines.append(f"| {r['schedule']} | " + " | ".join(cells) + " |")
    lines += ["", f"![best final score vs compute]({path.with_suffix('.png').name})", ""]
    path.write_text("\n".join(lines))


def _plot(path: Path, s: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot([f["steps"] for f in s["fidelity"]], [f["kendall"] for f in s["fidelity"]], "o-", label="Kendall τ")
    ax1.plot([f["steps"] for f in s["fidelity"]], [f["spearman"] for f in s["fidelity"]], "s-", label="Spearman ρ")
    ax1.set_xlabel("steps"), ax1.set_ylabel("rank correlation with the final score"), ax1.legend()
    for name, sim in s["simulations"].items():
        ax2.plot(np.array(sim["compute"]) / s["steps"][-1], sim["best"], label=name, lw=2 if name == "fifo" else 1)
    ax2.set_xscale("log"), ax2.set_xlabel("compute (full trainings)"), ax2.set_ylabel("mean best final score")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
