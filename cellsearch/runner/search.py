"""Running a search: strategy ↔ trials ↔ results database, on Ray Tune or in-process.

``SearchRun`` owns the run directory ``runs/NAME/``: ``config.json`` (the search settings),
``results.db`` (every evaluated cell, written here by the driver only, one commit per trial),
``state.json`` (the strategy's state and the driver's bookkeeping, written atomically after
every result) and ``best.yaml``. The ``Controller`` is the one place that decides what runs
next: it first evaluates the reference cell when scores are relative to it, then asks the
strategy, skipping (and still reporting) cells this run has already evaluated. The Ray Tune
``Searcher`` (``runner.tune``) and the in-process loop both drive it through
``next_trial``/``complete``. The settings are ``cellsearch.storage.settings.SearchConfig``; reading a
run (leaderboard, outcome counts) is ``cellsearch.storage.results``'s. ``SearchRun.run(on_event=...)``
tells the caller how the search goes (``runner.events``) and prints nothing itself. A one-shot
strategy (``oneshot.strategies``: rsws, enas, ...) trains supernets instead of trials: ``SearchRun``
hands such a search to ``runner.oneshot.OneShotRun`` (same settings, same run directory, ``resume``).
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import sqlite3
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from cellsearch.runner.source import FINISHED, threads_per_trial
from cellsearch.dsl.io import loads_cell
from cellsearch.errors import ConfigError
from cellsearch.fileio import DiskFullError, WriteError, atomic_write, check_target, write_error
from cellsearch.limits import shown
from cellsearch.storage import rundir
from cellsearch.storage.results import stage_counts
from cellsearch.storage.outcome import TrialOutcome
from cellsearch.runner.trial import TrialSpec, evaluate_candidate, reference_scores, trial_spec
from cellsearch.runner.events import EventHandler, SearchEnded, SearchStarted, StageRejectedAll, TrialFinished
from cellsearch.storage.settings import SearchConfig
from cellsearch.spaces.base import Candidate, Space

if TYPE_CHECKING:
    from cellsearch.runner.oneshot import OneShotRun
from cellsearch.storage.store import Store, decode_json
from cellsearch.strategies.base import Stage, Strategy, default_plan, save_state, stage_threshold
from cellsearch.tasks import primary_metric

STATE_VERSION = 1


def check_search_config(cfg: SearchConfig) -> None:
    """Everything a search's settings must be before it starts: a known strategy (the one check
    that needs the strategies' names), then ``SearchConfig.validate``."""
    from cellsearch.strategies import STRATEGY_NAMES

    from cellsearch.oneshot.strategies import ONESHOT_STRATEGIES

    if cfg.strategy not in STRATEGY_NAMES:
        known = ", ".join([*STRATEGY_NAMES, *ONESHOT_STRATEGIES])
        raise ConfigError(f"strategy: unknown strategy '{cfg.strategy}' (known: {known})",
                          field="SearchConfig.strategy")
    cfg.validate()
    if len(cfg.objectives) > 1:
        from cellsearch.strategies import strategy_class
        from cellsearch.strategies.base import MULTI_OBJECTIVE

        if not strategy_class(cfg.strategy).multi_objective:
            raise ConfigError(f"strategy '{cfg.strategy}' optimises the score alone and cannot take objectives "
                              f"{','.join(cfg.objectives)} (several objectives: {', '.join(MULTI_OBJECTIVE)})",
                              field="SearchConfig.objectives")


def strategy_name(strategy: Strategy) -> str:
    """The name a strategy object is recorded under: its registry name when its class is a shipped
    strategy, else the class's ``module.qualname`` (a third-party strategy)."""
    from cellsearch.strategies import STRATEGY_NAMES, strategy_class

    cls = type(strategy)
    for name in STRATEGY_NAMES:
        with contextlib.suppress(ConfigError):
            if strategy_class(name) is cls:
                return name
    return f"{cls.__module__}.{cls.__qualname__}"


def resolve_search(cfg: SearchConfig, *, space: "Space | str | None" = None, strategy: "Strategy | str | None" = None,
                   space_source: str | None = None) -> tuple[SearchConfig, Space, Strategy]:
    """The search ``cfg`` describes, settled and checked without touching a file: the resolved
    settings (``SearchConfig.resolved``: what ``config.json`` records), the space and the strategy.

    ``space``/``strategy`` may be objects (a ``Space``, a ``Strategy`` built over its space: a
    third-party one, say) or names, in place of ``cfg.space``/``cfg.strategy``; an object is
    recorded by its name (a space's ``name``, a strategy's ``strategy_name``). A strategy object
    searches its own space. ``space_source`` loads the space from there instead (a resumed run's
    snapshot)."""
    from cellsearch.spaces import load_space
    from cellsearch.spaces.base import Space
    from cellsearch.strategies import make_strategy

    if isinstance(space, str):
        cfg, space = replace(cfg, space=space), None
    if isinstance(strategy, str):
        cfg, strategy = replace(cfg, strategy=strategy), None
    if space is not None and not isinstance(space, Space):
        raise ConfigError(f"space must be a space name, a space file or a Space, not {shown(space)}",
                          field="SearchConfig.space")
    if strategy is not None:
        if not isinstance(strategy, Strategy):
            raise ConfigError(f"strategy must be a strategy name or a Strategy, not {shown(strategy)}",
                              field="SearchConfig.strategy")
        if space is not None and strategy.space is not space:
            raise ConfigError(f"the strategy searches the space '{strategy.space.name}', not the space "
                              f"'{space.name}' given with it: give one of them", field="SearchConfig.space")
        if cfg.strategy_options:
            raise ConfigError("strategy_options are for a strategy given by name: a Strategy object has its "
                              "options already", field="SearchConfig.strategy_options")
        space = strategy.space
        cfg = replace(cfg, strategy=strategy_name(strategy))
        cfg.validate()
        if list(strategy.objectives) != list(cfg.objectives):
            raise ConfigError(f"the strategy optimises {','.join(strategy.objectives)}, the settings name "
                              f"{','.join(cfg.objectives)}: build it with the settings' objectives",
                              field="SearchConfig.objectives")
    if space is not None:
        cfg = replace(cfg, space=space.name)
    if strategy is None:
        check_search_config(cfg)
    if space is None:
        space = load_space(space_source or cfg.space)
    cfg = cfg.resolved(space)
    if strategy is None:
        several = {"objectives": list(cfg.objectives)} if len(cfg.objectives) > 1 else {}
        strategy = make_strategy(cfg.strategy, space, seed=cfg.seed, **cfg.strategy_options, **several)
    if not cfg.benchmark:
        from cellsearch.library import resolve_cell

        resolve_cell(cfg.reference)
    return cfg, space, strategy


class Controller:
    """Decides the next trial and records finished ones (see module docstring)."""

    def __init__(self, cfg: SearchConfig, run_dir: Path, *, space: Space, strategy: Strategy, store: Store,
                 resume: bool = False):
        self.cfg = cfg
        self.run_dir = run_dir
        self.space = space
        self.strategy = strategy
        self.store = store
        stages = self.strategy.plan(list(cfg.tasks))
        self.plan: tuple[Stage, ...] = tuple(stages if stages is not None else default_plan(list(cfg.tasks)))
        # (a replay takes its scores from the table as they are: nothing to normalise)
        self.needs_reference = not cfg.benchmark and (len([s for s in self.plan if s.scoring]) > 1 or any(
            s.relative is not None for s in self.plan))
        self.reference = self.store.get_meta("reference_scores")
        self.reference_running = False
        self.launched = 0  # strategy candidates launched or reused
        self.running: dict[str, Candidate] = {}
        self.parked: list[Candidate] = []  # duplicates of a running trial, served when it finishes
        self.last_row = 0  # id of the last results row told to the strategy
        self.on_result: Callable[[TrialOutcome, bool, bool], None] | None = None  # (outcome, reused, reference)
        self.on_warning: Callable[[StageRejectedAll], None] | None = None
        # the candidates trained (the reference and reuses left out), how many each stage rejected and
        # the best primary metric a rejected one reached there: for ``StageRejectedAll``
        self.trained = 0
        self.rejected_at: dict[str, int] = {}
        self.best_rejected: dict[str, float] = {}
        # seconds between state saves (0: after every result). A replay finishes a trial in
        # milliseconds, where encoding e.g. the RL controller's weights would dominate; a state
        # older than the last rows is safe, since _restore tells the strategy those rows again.
        self.save_interval = 0.0
        self._saved_at = 0.0
        if resume:
            self._restore()
            for row in self.store.rows():
                if row["origin"] != "reference" and row["reused_from"] is None:
                    self._count(row["status"], row["stage"], decode_json(row["metrics"], {}, self.store.path))
        # how many times this run has been started (1 for a new search): stored trial ids carry it
        # from the second on, since Tune and the in-process loop number trials afresh each time
        sessions = self.store.get_meta("sessions", 1 if self.store.count() else 0)
        self.session = (sessions if isinstance(sessions, int) else 0) + 1
        self.store.set_meta("sessions", self.session)

    # ------------------------------------------------------------------ persistence
    @property
    def state_path(self) -> Path:
        """The file the controller's state (the strategy's included) is saved to."""
        return self.run_dir / "state.json"

    def save(self, force: bool = True) -> None:
        """Save the state (unless ``force`` is False and the last save is more recent than ``save_interval``)."""
        if not force and time.monotonic() - self._saved_at < self.save_interval:
            return
        self._saved_at = time.monotonic()
        save_state({"version": STATE_VERSION, "strategy": self.strategy.state_dict(), "last_row": self.last_row},
                   self.state_path)

    def _restore(self) -> None:
        if self.state_path.exists():
            advice = f"move it away to rebuild the strategy's state from {rundir.RESULTS}"
            state = rundir.read_json_file(self.state_path, "search state", advice)
            if state.get("version") != STATE_VERSION:
                raise ConfigError(f"{self.state_path}: state version {shown(state.get('version'))} is not "
                                  f"supported (this cellsearch writes {STATE_VERSION}); {advice}")
            last_row = state.get("last_row")
            if not isinstance(last_row, int) or isinstance(last_row, bool) or not isinstance(state.get("strategy"),
                                                                                                dict):
                raise ConfigError(f"{self.state_path}: damaged search state (it needs 'strategy' and 'last_row'); "
                                  f"{advice}")
            try:
                self.strategy.load_state_dict(state["strategy"])
            except ConfigError as exc:
                raise ConfigError(f"{self.state_path}: {exc}; {advice}") from None
            except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as exc:
                raise ConfigError(f"{self.state_path}: the saved state does not fit the '{self.cfg.strategy}' "
                                  f"strategy ({type(exc).__name__}: {shown(str(exc))}); {advice}") from None
            self.last_row = last_row
        # Results written after the last saved state (killed in between): tell them now.
        for row in self.store.rows():
            if row["origin"] == "reference":
                continue
            self.launched += 1
            if row["id"] > self.last_row:
                cand = self._candidate(row)
                self.strategy.tell(cand, self._measured(cand, self._result(row)))
                self.last_row = row["id"]
        self.strategy.abandon_pending()  # trials that were running when the search stopped
        self.save()

    def _candidate(self, row: sqlite3.Row) -> Candidate:
        decisions = decode_json(row["decisions"], None, self.store.path)
        return Candidate(loads_cell(row["cell_yaml"], warn=False), tuple(decisions) if decisions is not None else None,
                         row["origin"] or "sample", row["parent"])

    def _measured(self, cand: Candidate, outcome: TrialOutcome) -> TrialOutcome:
        """``outcome`` with the cell's size objectives (``storage.objectives.measured``) when the search
        has several objectives (they are computed from the cell: results.db keeps score and params)."""
        if len(self.cfg.objectives) == 1:
            return outcome
        from cellsearch.storage.objectives import measured

        return replace(outcome, objectives=measured(cand.graph, self.cfg.train, outcome.params, outcome.metrics))

    def _result(self, row: sqlite3.Row) -> TrialOutcome:
        """A stored trial's outcome, as the strategy was (or would have been) told it."""
        return TrialOutcome(row["score"], row["status"], decode_json(row["metrics"], {}, self.store.path),
                            row["stage"], row["params"], row["seconds"], row["error"])

    # ------------------------------------------------------------------ scheduling
    @property
    def done(self) -> bool:
        """Whether every trial has been launched and none is running or waiting."""
        return self.launched >= self.cfg.trials and not self.running and not self.parked

    def trial_spec(self, candidate: Candidate, is_reference: bool = False) -> TrialSpec:
        """What a trial of ``candidate`` trains (the candidate's YAML and hash, computed once, go with it)."""
        cfg = self.cfg
        seed = cfg.seed * 100_003 + self.launched
        if candidate.origin == "reevaluate":
            seed += 7919 * (1 + int(candidate.info.get("reevaluation", 0)))
        return trial_spec(candidate, self.plan, steps=cfg.steps, seconds=cfg.minutes * 60 if cfg.minutes else None,
                          train=dict(cfg.train, device="cuda" if cfg.gpus_per_trial else "cpu"),
                          task_options=cfg.task_options, reference=None if is_reference else self.reference,
                          is_reference=is_reference, seed=seed, seeds=cfg.seeds, threads=self.threads,
                          data_dir=cfg.data_dir, latency="latency" in cfg.objectives)

    @property
    def threads(self) -> int:
        """The torch threads of each trial (``cpus_per_trial``, else the CPUs shared among the parallel trials)."""
        return threads_per_trial(self.cfg.cpus_per_trial, self.cfg.parallel)

    def next_trial(self, trial_id: str) -> TrialSpec | None | str:
        """The spec of the next trial, None (wait: the reference is running) or FINISHED."""
        if self.needs_reference and self.reference is None:
            if self.reference_running:
                return None
            from cellsearch.library import resolve_cell

            self.reference_running = True
            cand = Candidate(resolve_cell(self.cfg.reference), origin="reference")
            self.running[trial_id] = cand
            return self.trial_spec(cand, is_reference=True)
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
            return self.trial_spec(cand)
        return FINISHED if not (self.running or self.parked) else None

    def _reuse(self, cand: Candidate, prior: sqlite3.Row) -> None:
        """A cell this run already evaluated: record the reuse and report the stored result."""
        row_id = self.store.add_trial(hash=cand.hash, cell_yaml=prior["cell_yaml"], cell_name=cand.graph.name,
                                      strategy=self.cfg.strategy, status=prior["status"], score=prior["score"],
                                      metrics=decode_json(prior["metrics"], {}, self.store.path), origin=cand.origin,
                                      parent=cand.parent, decisions=cand.decisions, stage=prior["stage"],
                                      params=prior["params"], seconds=0.0, reused_from=prior["id"])
        outcome = self._measured(cand, self._result(prior))
        self.strategy.tell(cand, outcome)
        self.last_row = row_id
        self.save(force=False)
        self._notify(outcome, reused=True, reference=prior["origin"] == "reference")  # (a seed that is the reference)

    def complete(self, trial_id: str, outcome: TrialOutcome, node: str | None = None) -> None:
        """Record a finished trial (any status) and tell the strategy."""
        cand = self.running.pop(trial_id, None)
        if cand is None:
            return
        is_reference = cand.origin == "reference"
        row_id = self.store.add_trial(
            hash=cand.hash, cell_yaml=cand.yaml, cell_name=cand.graph.name,
            strategy="reference" if is_reference else self.cfg.strategy, status=outcome.status,
            score=outcome.score, metrics=outcome.metrics,
            trial_id=trial_id if self.session == 1 else f"{trial_id}#{self.session}", origin=cand.origin,
            parent=cand.parent, decisions=cand.decisions, stage=outcome.stage,
            params=outcome.params, seconds=outcome.seconds, node=node, error=outcome.error)
        if is_reference:
            self.reference_running = False
            if outcome.status != "ok":
                raise ConfigError(f"the reference cell '{self.cfg.reference}' failed to train "
                                  f"({outcome.status}): {outcome.error or ''}".strip())
            self.reference = reference_scores(outcome, self.plan)
            self.store.set_meta("reference_scores", self.reference)
        else:
            self.strategy.tell(cand, self._measured(cand, outcome))
            self.last_row = row_id
            self._count(outcome.status, outcome.stage, outcome.metrics)
        self.save(force=is_reference)
        self._notify(outcome, reference=is_reference)
        if not is_reference:
            self.check_stages()
        waiting = [c for c in self.parked if c.hash == cand.hash]
        if waiting:
            self.parked = [c for c in self.parked if c.hash != cand.hash]
            prior = self.store.lookup(cand.hash)
            assert prior is not None  # the evaluation recorded just above
            for c in waiting:
                self._reuse(c, prior)

    def _count(self, status: str, stage: str | None, metrics: dict[str, Any]) -> None:
        """Count one trained candidate (its status, rejecting stage and metrics) for ``check_stages``."""
        self.trained += 1
        if status == "rejected" and stage is not None:
            self.rejected_at[stage] = self.rejected_at.get(stage, 0) + 1
            value = (metrics.get(stage) or {}).get(primary_metric(stage)) if stage in metrics else None
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.best_rejected[stage] = max(value, self.best_rejected.get(stage, -math.inf))

    def check_stages(self, final: bool = False) -> None:
        """Warn (``StageRejectedAll``, kept in the run's ``stage_warnings``) when a filter stage has
        rejected every candidate trained so far: from the third candidate on, or at the end (``final``)
        of a search that trained fewer; once per stage and run."""
        if not self.trained or (self.trained < 3 and not final):
            return
        stages = [s for s in self.plan if self.rejected_at.get(s.task, 0) == self.trained]
        if not stages:
            return
        warned = self.store.get_meta("stage_warnings", {})
        warned = warned if isinstance(warned, dict) else {}
        for stage in stages:
            if stage.task in warned:
                continue
            event = StageRejectedAll(stage.task, self.trained, self._stage_advice(stage))
            warned[stage.task] = event.message
            self.store.set_meta("stage_warnings", warned)
            if self.on_warning is not None:
                self.on_warning(event)

    def _stage_advice(self, stage: Stage) -> str:
        """The one line of ``StageRejectedAll``: the stage, its bar, the scores behind it, what to change."""
        cfg = self.cfg
        bar = stage_threshold(stage, self.reference)
        shown_bar = "?" if bar is None else f"{bar:.3g}"
        facts = [f"bar {shown_bar}"]
        if stage.task in self.best_rejected:
            facts.append(f"best candidate {self.best_rejected[stage.task]:.3g}")
        ref = (self.reference or {}).get(stage.task)
        if ref is not None:
            facts.append(f"reference '{cfg.reference}' {ref:.3g}")
        steps = stage.steps if stage.steps is not None else cfg.steps
        budget = f"{steps} steps" if steps is not None else f"{cfg.minutes:g} minutes"
        ref_bar = stage.min_score is not None and bar is not None and bar < stage.min_score  # the fallback's
        name = stage.fallback_option if ref_bar else stage.option
        if ref_bar:
            facts[0] += f" = {stage.fallback:g} × the reference's"
        option = f"-o {name}=..." if name else "the strategy's options"
        lower = f"lower the bar ({option})"
        todo = lower if cfg.benchmark else f"raise the budget (--budget, now {budget}) or {lower}"
        return (f"stage '{stage.task}' has rejected all {self.trained} candidates so far "
                f"({', '.join(facts)}): {todo}")

    def _notify(self, outcome: TrialOutcome, reused: bool = False, reference: bool = False) -> None:
        if self.on_result:
            self.on_result(outcome, reused, reference)


class SearchRun:
    """A search in ``runs_dir/NAME``: ``SearchRun(cfg).run()`` or ``SearchRun.resume(dir).run()``.

    Everything that can fail on bad input (settings, space, strategy options, reference cell,
    replay table, data) is checked before the run directory is created or touched; then the
    run is locked for this writer (``WriterLock``) until ``run()`` returns."""

    def __init__(self, cfg: SearchConfig, runs_dir: str | Path = "runs", *, space: Space | str | None = None,
                 strategy: Strategy | str | None = None, resume: bool = False, run_dir: str | Path | None = None):
        from cellsearch.spaces.snapshot import SPACE_FILE, is_space_file
        from cellsearch.storage.writer_lock import WriterLock

        self.run_dir = Path(run_dir) if run_dir else Path(runs_dir) / cfg.name
        self.oneshot: OneShotRun | None = None
        if _is_oneshot(cfg, strategy):  # a supernet per search seed: cellsearch.runner.oneshot
            from cellsearch.runner.oneshot import OneShotRun

            cfg = replace(cfg, strategy=strategy) if isinstance(strategy, str) else cfg
            cfg = replace(cfg, space=space) if isinstance(space, str) else cfg
            self.oneshot = OneShotRun(cfg, space=space if isinstance(space, Space) else None, resume=resume,
                                      run_dir=self.run_dir)
            self.cfg = self.oneshot.cfg
            return
        snapshot = self.run_dir / rundir.SPACE_SNAPSHOT / SPACE_FILE
        named = space if isinstance(space, str) else cfg.space if space is None else None
        space_file = named if named is not None and is_space_file(named) else None  # (snapshotted: see below)
        cfg, space, strategy = resolve_search(cfg, space=space, strategy=strategy,
                                              space_source=str(snapshot) if resume and snapshot.exists() else None)
        self.cfg = cfg
        if not resume:
            rundir.check_new_run(self.run_dir)
        self.table = None
        if cfg.benchmark:
            from cellsearch.storage.benchmark_tables import BenchmarkTable

            self.table = BenchmarkTable(cfg.benchmark)
        elif "ptb" in cfg.tasks:
            from cellsearch.tasks.data import verify

            verify("ptb", cfg.data_dir)
        for name in (rundir.CONFIG, rundir.STATE, rundir.BEST):  # (a link there is refused now, not after the trials)
            check_target(self.run_dir / name)
        # -- nothing above wrote a file; from here on this process is the run's one writer
        created = not self.run_dir.exists()
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(self.run_dir, exc) from None
        self.lock = WriterLock(self.run_dir, "cellsearch resume" if resume else "cellsearch search")
        try:
            self.lock.acquire()
            if not resume:
                rundir.check_new_run(self.run_dir)  # (again, under the lock: another search may have won the race)
                if space_file is not None:
                    from cellsearch.spaces.snapshot import snapshot_space

                    snapshot_space(space_file, self.run_dir / rundir.SPACE_SNAPSHOT)
            store = Store(self.run_dir / rundir.RESULTS)
            self.controller = Controller(cfg, self.run_dir, space=space, strategy=strategy, store=store,
                                         resume=resume)
            _write_json(self.run_dir / rundir.CONFIG, asdict(cfg))
            store.set_meta("config", asdict(cfg))
        except BaseException as exc:
            self.lock.release()
            failed = _write_failure(exc)
            if failed is None:
                raise
            if created:  # a new search that never started: nothing half-made is left behind to trip the next one
                shutil.rmtree(self.run_dir, ignore_errors=True)
                raise failed.advised("nothing was kept: free space and start the search again") from None
            raise failed.advised(_resume_advice(failed, self.run_dir)) from None

    @staticmethod
    def resolve(cfg: SearchConfig, *, space: Space | str | None = None,
                strategy: Strategy | str | None = None) -> SearchConfig:
        """The settings ``SearchRun(cfg, space=..., strategy=...)`` would record in ``config.json``,
        checked as it checks them, without a file written (``cellsearch search --dry-run``)."""
        if _is_oneshot(cfg, strategy):
            from cellsearch.runner.oneshot import OneShotRun

            cfg = replace(cfg, strategy=strategy) if isinstance(strategy, str) else cfg
            cfg = replace(cfg, space=space) if isinstance(space, str) else cfg
            return OneShotRun.resolve(cfg, space if isinstance(space, Space) else None)
        return resolve_search(cfg, space=space, strategy=strategy)[0]

    @classmethod
    def resume(cls, run_dir: str | Path, *, space: Space | None = None, strategy: Strategy | None = None,
               **overrides: Any) -> "SearchRun":
        """Continue the search in ``run_dir`` (``overrides``: settings to change, e.g. ``trials``); a
        search of a Space or Strategy object resumes with the object given again."""
        path = rundir.require_run(run_dir, "a search run that can be resumed")
        data = rundir.read_run_config(path)
        data.update({k: v for k, v in overrides.items() if v is not None})
        cfg = SearchConfig.from_dict(data, f"{path / rundir.CONFIG}")
        return cls(cfg, resume=True, run_dir=path, space=space, strategy=strategy)

    def run(self, on_event: EventHandler | None = None) -> dict[str, Any]:
        """Run the search to its number of trials (or until interrupted) and return a summary (its
        ``warnings``: the lines of ``StageRejectedAll``); ``on_event(event)`` hears ``SearchStarted``, a
        ``TrialFinished`` per trial, ``StageRejectedAll`` when a filter stage rejects every candidate
        and ``SearchEnded``; a one-shot search (``runner.oneshot``) tells an ``OneShotProgress`` as each
        search seed goes on instead."""
        try:
            if self.oneshot is not None:  # (it releases its own lock)
                return self.oneshot.run(on_event)
            return self._run(on_event)
        except BaseException as exc:
            failed = _write_failure(exc)
            if failed is None:
                raise
            # Everything committed before the failed write is kept (results.db commits per trial, a
            # one-shot seed's checkpoint is replaced whole or not at all, as the other files): resuming
            # goes on from there.
            raise failed.advised(_resume_advice(failed, self.run_dir)) from None
        finally:
            if self.oneshot is None:
                self.lock.release()

    def _run(self, on_event: EventHandler | None) -> dict[str, Any]:
        ctl = self.controller
        start = time.perf_counter()
        if on_event is not None:
            self._tell_progress(on_event)
        interrupted = False
        try:
            if not ctl.done:
                if self.table is not None:  # no model is trained
                    ctl.save_interval = 2.0
                    self._run_in_process(self._look_up, "replay")
                elif self.cfg.backend == "local":
                    self._run_in_process(lambda _, spec: evaluate_candidate(spec), "local")
                else:
                    from cellsearch.runner.tune import run_tune, search_trials

                    run_tune(ctl, self.run_dir, search_trials())
        except KeyboardInterrupt:
            interrupted = True
        except BaseException:
            # the first failure is the one to report: a save that fails again (a full disk) must not
            # replace it; what was saved last is no older than the last recorded trial's state save
            with contextlib.suppress(WriteError):
                ctl.save()
            self._ended(on_event)
            raise
        ctl.save()
        if ctl.done:
            ctl.check_stages(final=True)
        self._ended(on_event)
        best = ctl.store.best()
        if best is not None:  # the text results.db keeps: the YAML this run trained
            atomic_write(self.run_dir / rundir.BEST, best["cell_yaml"])
        summary = {"run_dir": str(self.run_dir), "trials": ctl.store.count(), "seconds": time.perf_counter() - start,
                   "best_score": best["score"] if best else None, "best_hash": best["hash"] if best else None,
                   "interrupted": interrupted or not ctl.done,
                   "warnings": list(dict(ctl.store.get_meta("stage_warnings", {}) or {}).values())}
        if self.table is not None:
            summary["benchmark"] = str(self.table.path)
            summary["missing"] = stage_counts(self.run_dir).get("missing", 0)
        ctl.store.set_meta("last_summary", summary)
        return summary

    def _ended(self, on_event: EventHandler | None) -> None:
        if on_event is not None:
            self.controller.on_result = None
            self.controller.on_warning = None
            on_event(SearchEnded())

    def _tell_progress(self, on_event: EventHandler) -> None:
        """Tell ``on_event`` that the search starts, then of every trial the controller records."""
        ctl = self.controller
        total = ctl.cfg.trials
        row = ctl.store.best()
        best = row["score"] if row else None
        on_event(SearchStarted(total=total, done=min(ctl.launched, total), best=best))

        def on_result(outcome: TrialOutcome, reused: bool, reference: bool) -> None:
            nonlocal best
            score = outcome.score
            # (the best *candidate*'s: the reference cell's 1.0 is no find of the search)
            if not reference and score is not None and math.isfinite(score) and (best is None or score > best):
                best = score
            done = ctl.store.count() - (1 if ctl.reference is not None else 0)
            on_event(TrialFinished(status=outcome.status, score=score, reused=reused,
                                   done=min(done, total), total=total, running=len(ctl.running), best=best))

        ctl.on_result = on_result
        ctl.on_warning = on_event

    def _run_in_process(self, evaluate: Callable[[str, TrialSpec], TrialOutcome], node: str) -> None:
        """Trials one at a time in this process: ``evaluate(trial_id, spec)`` gives each outcome."""
        ctl = self.controller
        n = 0
        while True:
            trial_id = f"{node}_{ctl.store.count() + n:05d}"
            n += 1
            spec = ctl.next_trial(trial_id)
            if spec == FINISHED or spec is None:
                if spec == FINISHED or not ctl.running:
                    return
                raise RuntimeError("in-process run: nothing runnable")  # pragma: no cover
            assert isinstance(spec, TrialSpec)
            ctl.complete(trial_id, evaluate(trial_id, spec), node=node)

    def _look_up(self, trial_id: str, spec: TrialSpec) -> TrialOutcome:
        """A replayed trial's outcome: the replay table's row for the cell (by canonical hash)."""
        ctl, table = self.controller, self.table
        assert table is not None  # (a replay has its table)
        cand = ctl.running[trial_id]
        entry = table.lookup(spec.hash)
        if entry is not None:
            return entry.outcome()
        if self.cfg.missing == "fail":
            ctl.running.pop(trial_id)
            raise ConfigError(f"cell {cand.hash} ('{cand.graph.name}', {cand.origin}) is not in the benchmark "
                              f"table {table.path} ({len(table)} cells); replay with missing set to skip to "
                              f"record such cells as missing and go on", field="SearchConfig.missing")
        return TrialOutcome(status="missing", score=None, error=f"not in the benchmark table {table.path}")


def _is_oneshot(cfg: SearchConfig, strategy: "Strategy | str | None") -> bool:
    """Whether the search trains a supernet (a one-shot strategy, by name: ``oneshot.strategies``)."""
    from cellsearch.oneshot.strategies import is_oneshot

    return is_oneshot(strategy if isinstance(strategy, str) else cfg.strategy if strategy is None else None)


def _resume_advice(failed: WriteError, run_dir: Path) -> str:
    return f"{'free space' if isinstance(failed, DiskFullError) else 'fix that'} and run `cellsearch resume {run_dir}`"


def _write_failure(exc: BaseException) -> WriteError | None:
    """The failed write (a full disk, ...) behind ``exc``: itself, or its cause or context (Ray Tune
    wraps an error of the searcher in its own), or None."""
    seen = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, WriteError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _write_json(path: Path, data: Any) -> None:
    """Write a run file atomically (a reader never sees half of it)."""
    atomic_write(path, json.dumps(data, indent=2) + "\n")
