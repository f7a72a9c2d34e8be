"""The final evaluation protocol: retrain cells from scratch, longer and over seeds, and compare
them honestly (``cellsearch evaluate``), and measure how well the search's scores predicted the
result (``cellsearch fidelity``).

Protocol, per cell and task (``Protocol``):

1. **Learning-rate sweep.** Train with seed 0 at each of a few learning rates around the
   search's (× ``lr_factors``, default 0.5, 1, 2) and keep the rate with the best *validation*
   score, so no cell loses to a badly chosen learning rate.
2. **Seeds.** Train with seeds 0 … N−1 at that rate (seed 0 is the sweep's run) and report the
   task's primary metric on the *test* split, which took no part in any choice.

The budget defaults to four times the search's per-trial budget. Every training is one job: a
Ray Tune trial like the search's (``runner.jobs``), recorded in the run's ``results.db`` (table
``retrains``) under a key made of the protocol's fingerprint, the cell, task, learning rate and
seed, so an interrupted evaluation resumes where it stopped and ``fidelity`` reuses what
``evaluate`` already trained (and the other way round).

Reports go to ``runs/NAME/evaluation/`` and ``runs/NAME/fidelity/``: a CSV and a Markdown table,
a PNG plot and ``summary.json``. The statistics are in ``cellsearch.analysis.stats``.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from cellsearch.dsl.graph import CellGraph
from cellsearch.dsl.hashing import canonical_hash
from cellsearch.dsl.io import dumps_cell, loads_cell
from cellsearch.errors import CellWarning, ConfigError
from cellsearch.runner.jobs import JobSettings, run_jobs
from cellsearch.store import Store

DEFAULT_LR_FACTORS = (0.5, 1.0, 2.0)
BUDGET_FACTOR = 4  # default evaluation budget: this many times the search's per-trial budget
MIN_TAU = 0.4  # fidelity: below this Kendall τ the search's ranking is not to be trusted


@dataclass
class Protocol:
    """How cells are retrained: budget, seeds, learning-rate sweep, model and task settings."""

    tasks: list[str]
    steps: int | None = None  # training steps per job
    minutes: float | None = None  # or a time budget per job
    seeds: int = 5
    lr_factors: tuple[float, ...] = DEFAULT_LR_FACTORS  # × the base learning rate (train["lr"])
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides (hidden_size, batch_size, lr)
    task_options: dict[str, dict] = field(default_factory=dict)
    data_dir: str | None = None

    def validate(self) -> None:
        from cellsearch.tasks import TASK_NAMES

        if not self.tasks:
            raise ConfigError("give at least one task")
        for t in self.tasks:
            if t not in TASK_NAMES:
                raise ConfigError(f"unknown task '{t}' (known: {', '.join(TASK_NAMES)})")
        if self.steps is None and self.minutes is None:
            raise ConfigError("give a budget: --budget STEPS or --minutes M")
        if self.steps is not None and self.steps < 1:
            raise ConfigError("--budget must be at least 1 step")
        if self.seeds < 1:
            raise ConfigError("--seeds must be at least 1")
        if not self.lr_factors or any(not (f > 0 and math.isfinite(f)) for f in self.lr_factors):
            raise ConfigError(f"learning-rate factors must be positive numbers, got {list(self.lr_factors)}")

    @property
    def base_lr(self) -> float:
        return float(self.train.get("lr", 2e-3))

    @property
    def learning_rates(self) -> list[float]:
        return sorted({float(f"{self.base_lr * f:.6g}") for f in self.lr_factors})

    @property
    def fingerprint(self) -> str:
        """What makes two trainings comparable: budget, model/optimiser settings, task options."""
        data = {"steps": self.steps, "minutes": self.minutes, "train": {k: v for k, v in self.train.items()
                                                                        if k != "lr"},
                "task_options": {t: self.task_options.get(t, {}) for t in sorted(self.tasks)}}
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(lr_factors=list(self.lr_factors), learning_rates=self.learning_rates, fingerprint=self.fingerprint)
        return d


def run_config(run_dir: str | Path) -> dict[str, Any]:
    """The search settings of a run (its config.json), checked."""
    from cellsearch.runner.search import load_search_config

    return asdict(load_search_config(run_dir))


def protocol_for_run(run_dir: str | Path, *, steps: int | None = None, minutes: float | None = None,
                     seeds: int = 5, lr_factors=DEFAULT_LR_FACTORS, tasks: list[str] | None = None,
                     data_dir: str | None = None) -> Protocol:
    """The protocol for a run: its model and task settings, a budget ``BUDGET_FACTOR`` × its own."""
    cfg = run_config(run_dir)
    if steps is None and minutes is None:
        if cfg.get("steps"):
            steps = BUDGET_FACTOR * int(cfg["steps"])
        else:
            minutes = BUDGET_FACTOR * float(cfg.get("minutes") or 1.0)
    elif steps is not None and cfg.get("steps") and steps <= cfg["steps"]:
        warnings.warn(f"the evaluation budget ({steps} steps) is not longer than the search's ({cfg['steps']}): "
                      f"the retrained scores say little more than the search's", CellWarning, stacklevel=2)
    train = {k: v for k, v in (cfg.get("train") or {}).items() if k != "device"}
    proto = Protocol(tasks=list(tasks or cfg.get("tasks") or ["arith"]), steps=steps, minutes=minutes, seeds=seeds,
                     lr_factors=tuple(float(f) for f in lr_factors), train=train,
                     task_options=dict(cfg.get("task_options") or {}),
                     data_dir=data_dir if data_dir is not None else cfg.get("data_dir"))
    proto.validate()
    return proto


# ---------------------------------------------------------------------- one training
def retrain(job: dict[str, Any]) -> dict[str, Any]:
    """Train one cell on one task (a job of the protocol) and score it on validation and test.

    Returns ``{"status", "valid", "test", "metrics": {"valid", "test"}, "params", "seconds", "error"}``;
    never raises for a failing cell (the status says what happened).
    """
    start = time.perf_counter()
    try:
        import torch

        from cellsearch.tasks import primary_metric
        from cellsearch.train import TrainConfig, Trainer

        if job.get("threads"):
            torch.set_num_threads(int(job["threads"]))
        graph = loads_cell(job["cell"], source="<retrain>", warn=False)
        cfg = TrainConfig.from_dict({**job["train"], "task": job["task"], "task_options": job["task_options"],
                                     "data_dir": job["data_dir"], "steps": job["steps"],
                                     "seconds": job["seconds"], "lr": job["lr"], "seed": job["seed"]})
        trainer = Trainer(cfg, graph=graph)
        result = trainer.run()
        metric = primary_metric(job["task"])
        valid = result.metrics.get(metric)
        test_metrics = trainer.evaluate("test") if result.status == "ok" and valid is not None else {}
        status = result.status if valid is not None or result.status != "ok" else "failed"
        return {"status": status, "valid": valid, "test": test_metrics.get(metric),
                "metrics": {"valid": result.metrics, "test": test_metrics}, "params": result.params,
                "seconds": round(time.perf_counter() - start, 3), "error": None}
    except Exception as exc:  # a cell that breaks training must not stop the evaluation
        return {"status": "failed", "valid": None, "test": None, "metrics": {}, "params": None,
                "seconds": round(time.perf_counter() - start, 3),
                "error": f"{type(exc).__name__}: {exc}\n" + traceback.format_exc(limit=5)}


# ---------------------------------------------------------------------- many trainings
@dataclass
class Cell:
    label: str  # how reports name it (the cell's name, or the built-in name of a baseline)
    graph: CellGraph
    role: str = "candidate"  # candidate | baseline
    search_score: float | None = None

    @property
    def hash(self) -> str:
        return canonical_hash(self.graph)


@dataclass
class CellResult:
    """What the protocol measured for one cell on one task."""

    cell: Cell
    task: str
    lr: float | None  # the learning rate the sweep chose (None: every sweep run failed)
    test: dict[int, float | None]  # seed → test score
    valid: dict[int, float | None]
    status: dict[int, str]
    sweep: dict[float, float | None]  # learning rate → seed-0 validation score


class Retrainer:
    """Runs the protocol's jobs for a set of cells, skipping jobs the database already holds."""

    def __init__(self, run_dir: str | Path, protocol: Protocol, settings: JobSettings, purpose: str,
                 progress: bool = False):
        self.run_dir = Path(run_dir)
        self.protocol = protocol
        self.settings = settings
        self.purpose = purpose
        self.progress = progress

    def key(self, cell_hash: str, task: str, lr: float, seed: int) -> str:
        return f"{self.protocol.fingerprint}:{cell_hash}:{task}:{lr:.6g}:{seed}"

    def _job(self, cell: Cell, task: str, lr: float, seed: int) -> dict[str, Any]:
        p = self.protocol
        device = "cuda" if self.settings.gpus_per_trial else "cpu"
        return {"key": self.key(cell.hash, task, lr, seed), "cell": dumps_cell(cell.graph), "hash": cell.hash,
                "name": cell.graph.name, "task": task, "lr": lr, "seed": seed, "steps": p.steps,
                "seconds": p.minutes * 60 if p.minutes else None, "train": dict(p.train, device=device),
                "task_options": p.task_options.get(task, {}), "data_dir": p.data_dir}

    def _done(self, store: Store) -> dict[str, Any]:
        return {r["key"]: r for r in store.retrains(self.protocol.fingerprint)}

    def _run(self, store: Store, jobs: list[dict], phase: str) -> dict[str, Any]:
        """Run the jobs the database lacks; returns the protocol's finished jobs by key."""
        done = self._done(store)
        todo = [j for j in jobs if j["key"] not in done]
        if not todo:
            return done
        bar = _JobProgress(f"{self.purpose}: {phase}", len(todo)) if self.progress else None

        def on_done(job: dict, outcome: dict, node: str | None) -> None:
            store.add_retrain(key=job["key"], protocol=self.protocol.fingerprint, purpose=self.purpose,
                              hash=job["hash"], cell_name=job["name"], cell_yaml=job["cell"], task=job["task"],
                              lr=job["lr"], seed=job["seed"], status=outcome.get("status", "failed"),
                              valid=outcome.get("valid"), test=outcome.get("test"), metrics=outcome.get("metrics"),
                              params=outcome.get("params"), seconds=outcome.get("seconds"), node=node,
                              error=outcome.get("error"))
            if bar:
                bar.advance(job, outcome)

        try:
            run_jobs(todo, retrain, self.settings, self.run_dir, on_done, name=f"tune-{self.purpose}")
        finally:
            if bar:
                bar.close()
        done = self._done(store)
        missing = [j["key"] for j in todo if j["key"] not in done]
        if missing:
            raise ConfigError(f"{len(missing)} training(s) did not finish; run the command again to resume")
        return done

    def run(self, cells: list[Cell]) -> list[CellResult]:
        p = self.protocol
        lrs = p.learning_rates
        from contextlib import ExitStack

        from cellsearch.writer_lock import WriterLock

        with ExitStack() as stack:
            stack.enter_context(WriterLock(self.run_dir, f"cellsearch {self.purpose}"))
            store = stack.enter_context(Store(self.run_dir / "results.db"))
            if self.settings.backend == "ray":  # one Ray for both phases (sweep, seeds), not one each
                from cellsearch.runner.tune import ray_session

                stack.enter_context(ray_session(self.settings))
            # (with one rate there is nothing to sweep: the seeds below use it)
            done = self._run(store, [self._job(c, t, lr, 0) for c in cells for t in p.tasks for lr in lrs],
                             "learning-rate sweep") if len(lrs) > 1 else {}
            chosen: dict[tuple[str, str], float | None] = {}
            sweeps: dict[tuple[str, str], dict[float, float | None]] = {}
            for c in cells:
                for t in p.tasks:
                    if len(lrs) == 1:
                        chosen[c.hash, t], sweeps[c.hash, t] = lrs[0], {}
                        continue
                    sweep = {lr: _ok_value(done.get(self.key(c.hash, t, lr, 0)), "valid") for lr in lrs}
                    scored = [(v, -abs(math.log(lr / p.base_lr)), lr) for lr, v in sweep.items() if v is not None]
                    # best validation score; on a tie the rate nearest the search's
                    chosen[c.hash, t] = max(scored)[2] if scored else None
                    sweeps[c.hash, t] = sweep
            finals = [self._job(c, t, chosen[c.hash, t], s) for c in cells for t in p.tasks
                      if chosen[c.hash, t] is not None for s in range(p.seeds)]
            done = self._run(store, finals, f"{p.seeds} seed(s)")
        results = []
        for c in cells:
            for t in p.tasks:
                lr = chosen[c.hash, t]
                rows = {s: done.get(self.key(c.hash, t, lr, s)) for s in range(p.seeds)} if lr is not None else {}
                results.append(CellResult(
                    cell=c, task=t, lr=lr, test={s: _ok_value(r, "test") for s, r in rows.items()},
                    valid={s: _ok_value(r, "valid") for s, r in rows.items()},
                    status={s: (r["status"] if r is not None else "missing") for s, r in rows.items()},
                    sweep=sweeps[c.hash, t]))
        return results


def _ok_value(row, column: str) -> float | None:
    if row is None or row["status"] != "ok":
        return None
    v = row[column]
    return float(v) if v is not None and math.isfinite(v) else None


class _JobProgress:
    """Trainings done / total with an ETA on the terminal."""

    def __init__(self, label: str, total: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
            TimeRemainingColumn

        from cellsearch.cli import err_console

        self.p = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("{task.fields[last]}"), TimeElapsedColumn(), TextColumn("eta"),
                          TimeRemainingColumn(), console=err_console)
        self.p.start()
        self.t = self.p.add_task(label, total=total, last="")

    def advance(self, job: dict, outcome: dict) -> None:
        test = outcome.get("test")
        last = f"{job['name']} {job['task']} lr {job['lr']:.3g} seed {job['seed']}: " + (
            f"{test:.4f}" if test is not None else outcome.get("status", "?"))
        self.p.update(self.t, advance=1, last=last)

    def close(self) -> None:
        self.p.stop()


# ---------------------------------------------------------------------- comparing cells
def compare(results: list[CellResult], confidence: float = 0.95):
    """One row per cell and task: mean ± confidence interval of the test scores, and for every
    baseline the win rate (paired by seed) and Welch's p; a candidate whose mean beats the best
    baseline's is a ``winner`` only when the two intervals do not overlap."""
    import pandas as pd

    from cellsearch.analysis.stats import mean_ci, welch, win_rate

    records = []
    for task in dict.fromkeys(r.task for r in results):
        rows = [r for r in results if r.task == task]
        base = [r for r in rows if r.cell.role == "baseline"]
        cis = {id(r): mean_ci(list(r.test.values()), confidence) for r in rows}
        scored_base = [b for b in base if cis[id(b)].n]
        best = max(scored_base, key=lambda b: cis[id(b)].mean) if scored_base else None
        for r in rows:
            ci = cis[id(r)]
            rec = {"task": task, "cell": r.cell.label, "role": r.cell.role, "hash": r.cell.hash,
                   "search_score": r.cell.search_score, "lr": r.lr, "n": ci.n,
                   "failed": sum(1 for s in r.status.values() if s != "ok"), "mean": ci.mean, "std": ci.std,
                   "ci_low": ci.lo, "ci_high": ci.hi}
            for b in base:
                rate, _ = win_rate(r.test, b.test)
                rec[f"win_rate_vs_{b.cell.label}"] = rate
                rec[f"p_vs_{b.cell.label}"] = welch(list(r.test.values()), list(b.test.values()))[1]
            rec["best_baseline"] = best.cell.label if best else None
            rec["overlaps_best_baseline"] = (ci.overlaps(cis[id(best)]) if best and ci.n and r is not best
                                             else None)
            rec["verdict"] = _verdict(r, ci, best, cis[id(best)] if best else None)
            records.append(rec)
    return pd.DataFrame.from_records(records)


def _verdict(r: CellResult, ci, best: CellResult | None, best_ci) -> str:
    if r.cell.role == "baseline":
        return "best baseline" if r is best else "baseline"
    if ci.n == 0:
        return "failed"
    if best is None or best_ci.n == 0:
        return "no baseline to compare"
    if ci.mean <= best_ci.mean:
        return f"no better than {best.cell.label}"
    if ci.overlaps(best_ci):
        return f"not significant: interval overlaps {best.cell.label}'s"
    return "winner"


# ---------------------------------------------------------------------- `cellsearch evaluate`
@dataclass
class EvaluationReport:
    table: Any  # pandas DataFrame (see compare)
    protocol: Protocol
    out_dir: Path
    files: dict[str, Path]
    notes: list[str]


def top_cells(run_dir: str | Path, top: int) -> list[Cell]:
    """The ``top`` best distinct cells a search scored (its reference cell left out)."""
    from cellsearch.runner.search import leaderboard

    rows = [r for r in leaderboard(run_dir, 10 ** 9) if r["origin"] != "reference" and r["score"] is not None]
    if not rows:
        raise ConfigError(f"{run_dir}: the search scored no cell yet, nothing to evaluate")
    return [Cell(r["cell"], loads_cell(r["cell_yaml"], warn=False), "candidate", r["score"]) for r in rows[:top]]


def _distinct_labels(cells: list[Cell]) -> list[Cell]:
    """Two different cells with the same name are told apart by hash (``name@hash8``)."""
    labels = [c.label for c in cells]
    for c in cells:
        if labels.count(c.label) > 1:
            c.label = f"{c.label}@{c.hash[:8]}"
    return cells


def evaluate_run(run_dir: str | Path, protocol: Protocol, settings: JobSettings, *, top: int = 3,
                 baselines: list[str] = ("lstm", "gru"), confidence: float = 0.95,
                 progress: bool = False) -> EvaluationReport:
    """Retrain a run's top cells and the baselines under ``protocol``; write the report."""
    from cellsearch.library import resolve_cell

    if top < 1:
        raise ConfigError("--top must be at least 1")
    if not baselines:
        raise ConfigError("give at least one baseline cell (--baselines lstm,gru)")
    protocol.validate()
    run_dir = Path(run_dir)
    notes: list[str] = []
    base_cells = []
    for name in baselines:
        base_cells.append(Cell(str(name), resolve_cell(name), "baseline"))
    base_hashes = {c.hash: c.label for c in base_cells}
    cells = list(base_cells)
    for c in top_cells(run_dir, top):
        if c.hash in base_hashes:  # the search found a baseline again: it is evaluated once, as the baseline
            notes.append(f"the search's cell '{c.label}' has the structure of baseline '{base_hashes[c.hash]}'")
            continue
        cells.append(c)
    _distinct_labels(cells)
    if not any(c.role == "candidate" for c in cells):
        notes.append("every top cell of the search is one of the baselines")
    results = Retrainer(run_dir, protocol, settings, "evaluate", progress).run(cells)
    table = compare(results, confidence)
    # per task: baselines first, then the candidates from the best mean down
    order = table["role"].map({"baseline": 0, "candidate": 1})
    table = table.assign(_order=order).sort_values(["task", "_order", "mean"], ascending=[True, True, False],
                                                   kind="stable").drop(columns="_order").reset_index(drop=True)
    out = run_dir / "evaluation"
    files = _write_evaluation(table, results, protocol, out, confidence, notes)
    return EvaluationReport(table, protocol, out, files, notes)


def format_value(v, spec: str = ".4f") -> str:
    """A report cell: '–' for a missing number, yes/no for a flag."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


def ci_text(row: dict) -> str:
    """'mean ± half-width' of a compare() row (as ``Interval.text``)."""
    from cellsearch.analysis.stats import Interval

    return Interval(row["n"], row["mean"], row["std"], row["ci_low"], row["ci_high"]).text()


def evaluation_markdown(table, protocol: Protocol, confidence: float = 0.95, notes: list[str] = ()) -> str:
    budget = f"{protocol.steps} steps" if protocol.steps else f"{protocol.minutes} min"
    lines = ["# Final evaluation", "",
             f"Protocol `{protocol.fingerprint}`: {budget} per training, learning rate chosen on seed 0's "
             f"validation score among {', '.join(f'{lr:g}' for lr in protocol.learning_rates)}, then "
             f"{protocol.seeds} seed(s); test-split {', '.join(protocol.tasks)} scores, mean ± "
             f"{confidence:.0%} confidence interval (Student t). Win rate: share of seeds where the cell beats "
             f"the baseline (same seed). p: Welch's t-test. A candidate ahead of the best baseline is a "
             f"*winner* only if the two intervals do not overlap.", ""]
    win_cols = [c for c in table.columns if c.startswith("win_rate_vs_")]
    p_cols = [c for c in table.columns if c.startswith("p_vs_")]
    for task in dict.fromkeys(table["task"]):
        rows = table[table["task"] == task]
        header = ["cell", "role", "lr", "n", f"mean ± {confidence:.0%} CI"]
        header += [f"wins vs {c[len('win_rate_vs_'):]}" for c in win_cols] + [f"p vs {c[len('p_vs_'):]}"
                                                                               for c in p_cols] + ["verdict"]
        lines += [f"## {task}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for r in rows.to_dict("records"):
            cells = [f"`{r['cell']}`", r["role"], format_value(r["lr"], ".3g"), f"{r['n']}" + (
                f" ({r['failed']} failed)" if r["failed"] else ""), ci_text(r)]
            cells += [format_value(r[c], ".0%") if r["role"] == "candidate" else "" for c in win_cols]
            cells += [format_value(r[c], ".3g") if r["role"] == "candidate" else "" for c in p_cols]
            cells.append(r["verdict"])
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    for n in notes:
        lines.append(f"- {n}")
    return "\n".join(lines).rstrip() + "\n"


def _write_evaluation(table, results: list[CellResult], protocol: Protocol, out: Path, confidence: float,
                      notes: list[str]) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {"csv": out / "results.csv", "markdown": out / "results.md", "plot": out / "evaluation.png",
             "runs": out / "runs.csv", "summary": out / "summary.json"}
    table.to_csv(files["csv"], index=False)
    files["markdown"].write_text(evaluation_markdown(table, protocol, confidence, notes))
    import pandas as pd

    pd.DataFrame.from_records([{"task": r.task, "cell": r.cell.label, "role": r.cell.role, "hash": r.cell.hash,
                                "lr": r.lr, "seed": s, "status": r.status[s], "valid": r.valid[s],
                                "test": r.test[s]} for r in results for s in r.test]).to_csv(files["runs"],
                                                                                            index=False)
    plot_evaluation(table, files["plot"], confidence)
    summary = {"protocol": protocol.to_json(), "confidence": confidence, "notes": notes,
               "rows": json.loads(table.to_json(orient="records")),
               "winners": table[table["verdict"] == "winner"][["task", "cell", "hash"]].to_dict("records")}
    files["summary"].write_text(json.dumps(summary, indent=2) + "\n")
    return files


def plot_evaluation(table, path: Path, confidence: float = 0.95) -> Path:
    """Per task: each cell's mean test score with its confidence interval (baselines in grey)."""
    from cellsearch.analysis.gates import pyplot

    plt = pyplot()
    tasks = list(dict.fromkeys(table["task"]))
    height = max(2.5, 0.45 * table.groupby("task").size().max() + 1.5)
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), height), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        rows = table[table["task"] == task].reset_index(drop=True)
        for i, r in rows.iterrows():
            color = "tab:grey" if r["role"] == "baseline" else ("tab:green" if r["verdict"] == "winner"
                                                                else "tab:blue")
            if r["n"]:
                err = [[r["mean"] - r["ci_low"]], [r["ci_high"] - r["mean"]]] if r["n"] > 1 else None
                ax.errorbar([r["mean"]], [i], xerr=err, fmt="o", color=color, capsize=4)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([f"{c} ({role[0]})" for c, role in zip(rows["cell"], rows["role"])])
        ax.invert_yaxis()
        ax.set_xlabel(f"test score, mean ± {confidence:.0%} CI")
        ax.set_title(task)
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------- `cellsearch fidelity`
@dataclass
class FidelityReport:
    table: Any  # one row per sampled cell: search score, final score (and per task)
    correlation: Any  # stats.RankCorrelation, search score vs final score
    per_task: dict[str, Any]
    warning: str | None
    out_dir: Path
    files: dict[str, Path]


def spread_sample(items: list, k: int, key: Callable[[Any], float]) -> list:
    """``k`` items spread evenly over the range of ``key`` (by rank: lowest, highest and evenly
    spaced ranks between), in ascending order of ``key``."""
    ordered = sorted(items, key=key)
    n = len(ordered)
    if k >= n:
        return ordered
    if k == 1:
        return [ordered[-1]]
    picks = sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})
    return [ordered[i] for i in picks]


def fidelity_run(run_dir: str | Path, protocol: Protocol, settings: JobSettings, *, sample: int = 8,
                 min_tau: float = MIN_TAU, progress: bool = False) -> FidelityReport:
    """Retrain a spread sample of a run's scored cells; correlate search scores with final scores."""
    import pandas as pd

    from cellsearch.analysis.stats import mean_ci, rank_correlation

    if sample < 3:
        raise ConfigError("--sample must be at least 3 (a rank correlation needs three cells)")
    protocol.validate()
    run_dir = Path(run_dir)
    scored = top_cells(run_dir, 10 ** 9)
    if len(scored) < 3:
        raise ConfigError(f"{run_dir}: the search scored {len(scored)} distinct cell(s); "
                          f"a rank correlation needs at least 3")
    cells = _distinct_labels(spread_sample(scored, sample, key=lambda c: c.search_score))
    results = Retrainer(run_dir, protocol, settings, "fidelity", progress).run(cells)
    by_cell: dict[str, dict[str, float]] = {c.hash: {} for c in cells}
    for r in results:
        by_cell[r.cell.hash][r.task] = mean_ci(list(r.test.values())).mean
    # one final score per cell: the test score itself for one task; for several, the mean over
    # tasks of the score relative to the sample's best on that task (so no task dominates by scale)
    best_per_task = {t: max((v[t] for v in by_cell.values() if not math.isnan(v[t])), default=math.nan)
                     for t in protocol.tasks}
    records = []
    for c in cells:
        per = by_cell[c.hash]
        if len(protocol.tasks) == 1:
            final = per[protocol.tasks[0]]
        else:
            rel = [per[t] / best_per_task[t] for t in protocol.tasks if best_per_task[t] and not math.isnan(per[t])]
            final = sum(rel) / len(rel) if len(rel) == len(protocol.tasks) else math.nan
        records.append({"cell": c.label, "hash": c.hash, "search_score": c.search_score, "final_score": final,
                        **{f"final_{t}": per[t] for t in protocol.tasks}})
    table = pd.DataFrame.from_records(records)
    corr = rank_correlation(table["search_score"], _failed_last(table["final_score"]))
    per_task = {t: rank_correlation(table["search_score"], _failed_last(table[f"final_{t}"]))
                for t in protocol.tasks} if len(protocol.tasks) > 1 else {}
    warning = None
    if math.isnan(corr.kendall):
        warning = ("no rank correlation: the final scores are all equal (or every retraining failed); the "
                   "search's ranking cannot be checked")
    elif corr.kendall < min_tau:
        warning = (f"Kendall τ = {corr.kendall:.2f} < {min_tau:g}: the search's scores rank cells differently "
                   f"from the evaluation budget's; the proxy budget is too small to trust the search's ranking "
                   f"(search with a larger --budget, or compare finalists with `cellsearch evaluate`)")
    out = run_dir / "fidelity"
    files = _write_fidelity(table, corr, per_task, warning, protocol, out)
    if warning:
        warnings.warn(warning, CellWarning, stacklevel=2)
    return FidelityReport(table, corr, per_task, warning, out, files)


def _failed_last(final):
    """Final scores for ranking: a cell whose every retraining failed (diverged) is the worst
    outcome, so it ranks last (all such cells tied) instead of dropping out of the correlation."""
    finite = final.dropna()
    return final.fillna(float(finite.min()) - 1.0 if len(finite) else 0.0)


def _corr_json(c) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(c).items()}


def _write_fidelity(table, corr, per_task: dict, warning: str | None, protocol: Protocol,
                    out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {"csv": out / "fidelity.csv", "markdown": out / "fidelity.md", "plot": out / "fidelity.png",
             "summary": out / "summary.json"}
    table.to_csv(files["csv"], index=False)
    budget = f"{protocol.steps} steps" if protocol.steps else f"{protocol.minutes} min"
    lines = ["# Search fidelity", "",
             f"{len(table)} cells sampled over the search's score range, retrained with the evaluation protocol "
             f"`{protocol.fingerprint}` ({budget}, {protocol.seeds} seed(s), learning rate chosen among "
             f"{', '.join(f'{lr:g}' for lr in protocol.learning_rates)}). A cell whose every retraining "
             f"failed ranks last.", "",
             f"- Spearman ρ = {format_value(corr.spearman, '.3f')} (p = {format_value(corr.spearman_p, '.3g')})",
             f"- Kendall τ = {format_value(corr.kendall, '.3f')} (p = {format_value(corr.kendall_p, '.3g')})"]
    for t, c in per_task.items():
        lines.append(f"- {t}: Spearman ρ = {format_value(c.spearman, '.3f')}, "
                     f"Kendall τ = {format_value(c.kendall, '.3f')}")
    if warning:
        lines += ["", f"**Warning:** {warning}"]
    lines += ["", "| cell | search score | final score |", "|---|---|---|"]
    for r in table.sort_values("search_score", ascending=False).to_dict("records"):
        final = format_value(r["final_score"]) if r["final_score"] == r["final_score"] else "failed (ranked last)"
        lines.append(f"| `{r['cell']}` | {format_value(r['search_score'])} | {final} |")
    files["markdown"].write_text("\n".join(lines) + "\n")
    plot_fidelity(table, corr, files["plot"])
    files["summary"].write_text(json.dumps({
        "protocol": protocol.to_json(), "correlation": _corr_json(corr),
        "per_task": {t: _corr_json(c) for t, c in per_task.items()}, "warning": warning,
        "cells": json.loads(table.to_json(orient="records"))}, indent=2) + "\n")
    return files


def plot_fidelity(table, corr, path: Path) -> Path:
    """Search score against final score, one dot per sampled cell."""
    from cellsearch.analysis.gates import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ok = table[table["final_score"].notna()]
    ax.scatter(ok["search_score"], ok["final_score"], color="tab:blue", zorder=3)
    for r in ok.to_dict("records"):
        ax.annotate(r["cell"], (r["search_score"], r["final_score"]), fontsize=7, alpha=0.7,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("search score (proxy budget)")
    ax.set_ylabel("final score (evaluation protocol)")
    ax.set_title(f"Spearman ρ = {format_value(corr.spearman, '.2f')}, "
                 f"Kendall τ = {format_value(corr.kendall, '.2f')}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
