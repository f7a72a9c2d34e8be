"""Running a search: strategy ↔ trials ↔ results database, on Ray Tune or in-process.

``SearchRun`` owns the run directory ``runs/NAME/``: ``config.json`` (the search settings),
``results.db`` (every evaluated cell, written here by the driver only, one commit per trial),
``state.json`` (the strategy's state and the driver's bookkeeping, written atomically after
every result) and ``best.yaml``. The ``Controller`` is the one place that decides what runs
next: it first evaluates the reference cell when scores are relative to it, then asks the
strategy, skipping (and still reporting) cells this run has already evaluated. The Ray Tune
``Searcher`` below and the in-process loop both drive it through ``next_trial``/``complete``.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from cellsearch.dsl.io import dumps_cell, loads_cell, save_cell
from cellsearch.errors import ConfigError
from cellsearch.runner.evaluate import default_plan, evaluate_candidate, reference_scores
from cellsearch.spaces.base import Candidate
from cellsearch.store import Store
from cellsearch.strategies.base import Result, save_state

FINISHED = "FINISHED"
STATE_VERSION = 1


@dataclass
class SearchConfig:
    name: str = "search"
    space: str = "mutation"  # shipped space name or YAML path
    strategy: str = "evolution"  # random | evolution | regularized-evolution | rl | tpe
    strategy_options: dict = field(default_factory=dict)
    tasks: list = field(default_factory=lambda: ["arith"])
    trials: int = 20  # candidates to evaluate (deduplicated ones count, the reference does not)
    parallel: int = 1  # concurrent trials
    steps: int | None = 200  # training budget per trial and task (stage)
    minutes: float | None = None  # or a time budget per stage
    scheduler: str = "asha"  # asha | fifo
    seed: int = 0
    address: str | None = None  # Ray cluster address; None starts Ray locally
    cpus_per_trial: int | None = None  # default: the machine's CPUs / parallel
    gpus_per_trial: float = 0.0
    backend: str = "ray"  # ray | local (in-process, sequential; for debugging)
    reference: str = "gru"  # cell that relative scores and filters compare against
    train: dict = field(default_factory=lambda: {"hidden_size": 64, "batch_size": 32, "lr": 5e-3})
    task_options: dict = field(default_factory=lambda: {"arith": {"max_digits": 3, "eval_examples": 500},
                                                        "xml": {"eval_chars": 10000},
                                                        "memorize": {"eval_examples": 500},
                                                        "ptb": {"eval_tokens": 20000}})
    data_dir: str | None = None
    max_failures: int = 2  # Tune retries of a trial whose worker died
    benchmark: str | None = None  # replay: look candidates up in this table instead of training them
    missing: str = "skip"  # replay, a candidate not in the table: skip (record it as missing) | fail

    def validate(self) -> None:
        from cellsearch.strategies import STRATEGY_NAMES
        from cellsearch.tasks import TASK_NAMES

        if self.strategy not in STRATEGY_NAMES:
            raise ConfigError(f"unknown strategy '{self.strategy}' (known: {', '.join(STRATEGY_NAMES)})")
        for t in self.tasks:
            if t not in TASK_NAMES:
                raise ConfigError(f"unknown task '{t}' (known: {', '.join(TASK_NAMES)})")
        if not self.tasks:
            raise ConfigError("give at least one task")
        if self.trials < 1 or self.parallel < 1:
            raise ConfigError("--trials and --parallel must be at least 1")
        if self.steps is None and self.minutes is None:
            raise ConfigError("give a budget: --budget STEPS or --minutes M")
        if self.scheduler not in ("asha", "fifo"):
            raise ConfigError(f"--scheduler must be asha or fifo, not {self.scheduler!r}")
        if self.backend not in ("ray", "local"):
            raise ConfigError(f"backend must be ray or local, not {self.backend!r}")
        if self.missing not in ("skip", "fail"):
            raise ConfigError(f"--missing must be skip or fail, not {self.missing!r}")
        if not self.name or "/" in self.name:
            raise ConfigError(f"bad run name {self.name!r}")

    @classmethod
    def from_dict(cls, d: dict) -> "SearchConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown search option(s): {', '.join(sorted(unknown))}")
        return cls(**d)


def threads_per_trial(cpus_per_trial: int | None, parallel: int) -> int:
    """Torch threads (and Ray CPUs) per trial: as asked, or the machine's CPUs shared by the trials."""
    return cpus_per_trial or max(1, (os.cpu_count() or 1) // parallel)


class Controller:
    """Decides the next trial and records finished ones (see module docstring)."""

    def __init__(self, cfg: SearchConfig, run_dir: Path, resume: bool = False):
        from cellsearch.spaces import load_space
        from cellsearch.strategies import make_strategy

        self.cfg = cfg
        self.run_dir = run_dir
        self.store = Store(run_dir / "results.db")
        self.space = load_space(cfg.space)
        self.strategy = make_strategy(cfg.strategy, self.space, seed=cfg.seed, **cfg.strategy_options)
        plan_fn = getattr(self.strategy, "plan", None)
        self.plan = [asdict(s) for s in (plan_fn(list(cfg.tasks)) if plan_fn else default_plan(list(cfg.tasks)))]
        # (a replay takes its scores from the table as they are: nothing to normalise)
        self.needs_reference = not cfg.benchmark and (len([s for s in self.plan if s["scoring"]]) > 1 or any(
            s["relative"] is not None for s in self.plan))
        self.reference = self.store.get_meta("reference_scores")
        self.reference_running = False
        self.launched = 0  # strategy candidates launched or reused
        self.running: dict[str, Candidate] = {}
        self.parked: list[Candidate] = []  # duplicates of a running trial, served when it finishes
        self.last_row = 0  # id of the last results row told to the strategy
        self.on_result: Callable[[dict], None] | None = None
        # seconds between state saves (0: after every result). A replay finishes a trial in
        # milliseconds, where encoding e.g. the RL controller's weights would dominate; a state
        # older than the last rows is safe, since _restore tells the strategy those rows again.
        self.save_interval = 0.0
        self._saved_at = 0.0
        if resume:
            self._restore()

    # ------------------------------------------------------------------ persistence
    @property
    def state_path(self) -> Path:
        return self.run_dir / "state.json"

    def save(self, force: bool = True) -> None:
        if not force and time.monotonic() - self._saved_at < self.save_interval:
            return
        self._saved_at = time.monotonic()
        save_state({"version": STATE_VERSION, "strategy": self.strategy.state_dict(), "last_row": self.last_row},
                   self.state_path)

    def _restore(self) -> None:
        from cellsearch.strategies.base import load_state

        if self.state_path.exists():
            state = load_state(self.state_path)
            if state.get("version") != STATE_VERSION:
                raise ConfigError(f"{self.state_path}: state version {state.get('version')} is not supported")
            self.strategy.load_state_dict(state["strategy"])
            self.last_row = state["last_row"]
        # Results written after the last saved state (killed in between): tell them now.
        for row in self.store.rows():
            if row["origin"] == "reference":
                continue
            self.launched += 1
            if row["id"] > self.last_row:
                self.strategy.tell(self._candidate(row), self._result(row))
                self.last_row = row["id"]
        self.strategy.abandon_pending()  # trials that were running when the search stopped
        self.save()

    @staticmethod
    def _candidate(row) -> Candidate:
        return Candidate(loads_cell(row["cell_yaml"], warn=False),
                         tuple(json.loads(row["decisions"])) if row["decisions"] else None,
                         row["origin"] or "sample", row["parent"], json.loads(row["plan"]) if row["plan"] else None)

    @staticmethod
    def _result(row) -> Result:
        return Result(row["score"], row["status"], json.loads(row["metrics"] or "{}"), row["stage"])

    # ------------------------------------------------------------------ scheduling
    @property
    def done(self) -> bool:
        return self.launched >= self.cfg.trials and not self.running and not self.parked

    def trial_config(self, candidate: Candidate, is_reference: bool = False) -> dict[str, Any]:
        cfg = self.cfg
        seed = cfg.seed * 100_003 + self.launched
        if candidate.origin == "reevaluate":
            seed += 7919 * (1 + int(candidate.info.get("reevaluation", 0)))
        return {"cell": dumps_cell(candidate.graph), "plan": candidate.plan or self.plan,
                "budget": {"steps": cfg.steps, "seconds": cfg.minutes * 60 if cfg.minutes else None},
                "train": dict(cfg.train, device="cuda" if cfg.gpus_per_trial else "cpu"),
                "task_options": cfg.task_options, "reference": None if is_reference else self.reference,
                "is_reference": is_reference, "seed": seed, "threads": self.threads, "data_dir": cfg.data_dir}

    @property
    def threads(self) -> int:
        return threads_per_trial(self.cfg.cpus_per_trial, self.cfg.parallel)

    def next_trial(self, trial_id: str) -> dict[str, Any] | None | str:
        """The config of the next trial, None (wait: the reference is running) or FINISHED."""
        if self.needs_reference and self.reference is None:
            if self.reference_running:
                return None
            from cellsearch.library import resolve_cell

            self.reference_running = True
            cand = Candidate(resolve_cell(self.cfg.reference), origin="reference")
            self.running[trial_id] = cand
            return self.trial_config(cand, is_reference=True)
        while self.launched < self.cfg.trials:
            cand = self.strategy.ask()
            self.launched += 1
            prior = self.store.lookup(cand.hash) if cand.origin != "reevaluate" else None
            if prior is not None:  # (the reference's own result counts: it was evaluated the same way)
                self._reuse(cand, prior)
                continue
            if cand.origin != "reevaluate" and any(c.hash == cand.hash for c in self.running.values()):
                self.parked.append(cand)  # being trained right now: reuse its result when it is done
                continue
            self.running[trial_id] = cand
            return self.trial_config(cand)
        return FINISHED if not (self.running or self.parked) else None

    def _reuse(self, cand: Candidate, prior) -> None:
        """A cell this run already evaluated: record the reuse and report the stored result."""
        row_id = self.store.add_trial(hash=cand.hash, cell_yaml=prior["cell_yaml"], cell_name=cand.graph.name,
                                      strategy=self.cfg.strategy, status=prior["status"], score=prior["score"],
                                      metrics=json.loads(prior["metrics"] or "{}"), origin=cand.origin,
                                      parent=cand.parent, decisions=cand.decisions, stage=prior["stage"],
                                      params=prior["params"], seconds=0.0, reused_from=prior["id"])
        self.strategy.tell(cand, self._result(prior))
        self.last_row = row_id
        self.save(force=False)
        self._notify({"status": prior["status"], "score": prior["score"], "reused": True})

    def complete(self, trial_id: str, outcome: dict[str, Any], node: str | None = None) -> None:
        """Record a finished trial (any status) and tell the strategy."""
        cand = self.running.pop(trial_id, None)
        if cand is None:
            return
        is_reference = cand.origin == "reference"
        row_id = self.store.add_trial(
            hash=cand.hash, cell_yaml=dumps_cell(cand.graph), cell_name=cand.graph.name,
            strategy="reference" if is_reference else self.cfg.strategy, status=outcome["status"],
            score=outcome.get("score"), metrics=outcome.get("metrics"), trial_id=trial_id, origin=cand.origin,
            parent=cand.parent, decisions=cand.decisions, plan=cand.plan, stage=outcome.get("stage"),
            params=outcome.get("params"), seconds=outcome.get("seconds"), node=node, error=outcome.get("error"))
        if is_reference:
            self.reference_running = False
            if outcome["status"] != "ok":
                raise ConfigError(f"the reference cell '{self.cfg.reference}' failed to train "
                                  f"({outcome['status']}): {outcome.get('error') or ''}".strip())
            self.reference = reference_scores(outcome, self.plan)
            self.store.set_meta("reference_scores", self.reference)
        else:
            self.strategy.tell(cand, Result(outcome.get("score"), outcome["status"], outcome.get("metrics") or {},
                                            outcome.get("stage")))
            self.last_row = row_id
        self.save(force=is_reference)
        self._notify(outcome)
        waiting = [c for c in self.parked if c.hash == cand.hash]
        if waiting:
            self.parked = [c for c in self.parked if c.hash != cand.hash]
            prior = self.store.lookup(cand.hash)
            for c in waiting:
                self._reuse(c, prior)

    def _notify(self, outcome: dict) -> None:
        if self.on_result:
            self.on_result(outcome)


class SearchRun:
    """A search in ``runs_dir/NAME``: ``SearchRun(cfg).run()`` or ``SearchRun.resume(dir).run()``."""

    def __init__(self, cfg: SearchConfig, runs_dir: str | Path = "runs", *, resume: bool = False,
                 run_dir: str | Path | None = None):
        cfg.validate()
        self.cfg = cfg
        self.run_dir = Path(run_dir) if run_dir else Path(runs_dir) / cfg.name
        if not resume and (self.run_dir / "results.db").exists():
            raise ConfigError(f"{self.run_dir} already holds a search: resume it with `cellsearch resume "
                              f"{self.run_dir}` or choose another --name")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.table = None
        if cfg.benchmark:
            from cellsearch.tables import BenchmarkTable

            self.table = BenchmarkTable(cfg.benchmark)
        elif "ptb" in cfg.tasks:
            from cellsearch.tasks.data import verify

            verify("ptb", cfg.data_dir)
        (self.run_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
        self.controller = Controller(cfg, self.run_dir, resume=resume)
        self.controller.store.set_meta("config", asdict(cfg))

    @classmethod
    def resume(cls, run_dir: str | Path, **overrides: Any) -> "SearchRun":
        path = Path(run_dir)
        cfg_file = path / "config.json"
        if not cfg_file.exists():
            raise ConfigError(f"{path} is not a search run (no config.json)")
        data = json.loads(cfg_file.read_text())
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls(SearchConfig.from_dict(data), resume=True, run_dir=path)

    def run(self, progress: bool = False) -> dict[str, Any]:
        ctl = self.controller
        start = time.perf_counter()
        bar = _SearchProgress(ctl) if progress else None
        interrupted = False
        try:
            if not ctl.done:
                if self.table is not None:  # no model is trained
                    ctl.save_interval = 2.0
                    self._run_in_process(self._look_up, "replay")
                elif self.cfg.backend == "local":
                    self._run_in_process(lambda _, config: evaluate_candidate(config), "local")
                else:
                    from cellsearch.runner.tune import run_tune

                    run_tune(ctl, self.run_dir)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            ctl.save()
            if bar:
                bar.close()
        best = ctl.store.best()
        if best is not None:
            save_cell(loads_cell(best["cell_yaml"], warn=False), self.run_dir / "best.yaml")
        summary = {"run_dir": str(self.run_dir), "trials": ctl.store.count(), "seconds": time.perf_counter() - start,
                   "best_score": best["score"] if best else None, "best_hash": best["hash"] if best else None,
                   "interrupted": interrupted or not ctl.done}
        if self.table is not None:
            summary["benchmark"] = str(self.table.path)
            summary["missing"] = stage_counts(self.run_dir).get("missing", 0)
        ctl.store.set_meta("last_summary", summary)
        return summary

    def _run_in_process(self, evaluate: Callable[[str, dict[str, Any]], dict[str, Any]], node: str) -> None:
        """Trials one at a time in this process: ``evaluate(trial_id, trial_config)`` gives each outcome."""
        ctl = self.controller
        n = 0
        while True:
            trial_id = f"{node}_{ctl.store.count() + n:05d}"
            n += 1
            cfg = ctl.next_trial(trial_id)
            if cfg == FINISHED or cfg is None:
                if cfg == FINISHED or not ctl.running:
                    return
                raise RuntimeError("in-process run: nothing runnable")  # pragma: no cover
            ctl.complete(trial_id, evaluate(trial_id, cfg), node=node)

    def _look_up(self, trial_id: str, config: dict[str, Any]) -> dict[str, Any]:
        """A replayed trial's outcome: the benchmark table's row for the cell (by canonical hash)."""
        ctl, table = self.controller, self.table
        cand = ctl.running[trial_id]
        entry = table.lookup(cand.hash)
        if entry is not None:
            return entry.outcome()
        if self.cfg.missing == "fail":
            ctl.running.pop(trial_id)
            raise ConfigError(f"cell {cand.hash} ('{cand.graph.name}', {cand.origin}) is not in the benchmark "
                              f"table {table.path} ({len(table)} cells); replay with --missing skip to "
                              f"record such cells as missing and go on")
        return {"status": "missing", "score": None, "error": f"not in the benchmark table {table.path}"}


class _SearchProgress:
    """Trials done / running, best score so far and ETA on the terminal."""

    def __init__(self, ctl: Controller):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
            TimeRemainingColumn

        from cellsearch.cli import err_console

        self.ctl = ctl
        self.best: float | None = ctl.store.best()["score"] if ctl.store.best() else None
        self.p = Progress(TextColumn("[bold]search"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("running {task.fields[running]}"), TextColumn("best {task.fields[best]}"),
                          TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=err_console)
        self.p.start()
        self.t = self.p.add_task("search", total=ctl.cfg.trials, completed=min(ctl.launched, ctl.cfg.trials),
                                 running=0, best=self._fmt())
        ctl.on_result = self.update

    def _fmt(self) -> str:
        return "–" if self.best is None else f"{self.best:.4f}"

    def update(self, outcome: dict) -> None:
        score = outcome.get("score")
        if score is not None and math.isfinite(score) and (self.best is None or score > self.best):
            self.best = score
        done = self.ctl.store.count() - (1 if self.ctl.reference is not None else 0)
        self.p.update(self.t, completed=min(done, self.ctl.cfg.trials), running=len(self.ctl.running),
                      best=self._fmt())

    def close(self) -> None:
        self.p.stop()


def leaderboard(run_dir: str | Path, top: int = 10) -> list[dict[str, Any]]:
    """Distinct cells of a run ranked by score (best evaluation per cell), with their equations."""
    from cellsearch.dsl.equations import format_equation, inlined_nodes

    path = Path(run_dir)
    if not (path / "results.db").exists():
        raise ConfigError(f"{path} has no results.db (is it a search run?)")
    with Store(path / "results.db") as store:
        best: dict[str, Any] = {}
        counts: dict[str, int] = {}
        for row in store.rows():
            if row["reused_from"] is not None:
                continue
            counts[row["hash"]] = counts.get(row["hash"], 0) + 1
            cur = best.get(row["hash"])
            key = row["score"] if row["score"] is not None else -math.inf
            if cur is None or key > (cur["score"] if cur["score"] is not None else -math.inf):
                best[row["hash"]] = row
    rows = sorted(best.values(), key=lambda r: (-(r["score"] if r["score"] is not None else -math.inf), r["id"]))
    out = []
    for rank, r in enumerate(rows[:top], 1):
        g = loads_cell(r["cell_yaml"], warn=False)
        inline = inlined_nodes(g)
        out.append({"rank": rank, "hash": r["hash"], "score": r["score"], "status": r["status"],
                    "params": r["params"], "metrics": json.loads(r["metrics"] or "{}"), "cell": g.name,
                    "origin": r["origin"], "stage": r["stage"], "evaluations": counts[r["hash"]],
                    "equations": {n.name: format_equation(g, n.name, inline) for n in g.nodes if n.name not in inline},
                    "cell_yaml": r["cell_yaml"]})
    return out


def stage_counts(run_dir: str | Path) -> dict[str, int]:
    """How many candidates each filter stage rejected (and how many passed), for staged searches."""
    with Store(Path(run_dir) / "results.db") as store:
        counts: dict[str, int] = {}
        for row in store.rows():
            if row["origin"] == "reference":
                continue
            if row["reused_from"] is not None:
                key = "reused (duplicate)"
            else:
                key = f"rejected at {row['stage']}" if row["status"] == "rejected" else row["status"]
            counts[key] = counts.get(key, 0) + 1
    return counts
