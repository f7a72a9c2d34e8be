"""The one-shot search's machinery, shared by its strategies (RS-WS, ENAS, DARTS): train a supernet's
shared weights, score cells with them, record the best K in ``results.db``, checkpoint and resume.

``OneShotSearch`` holds one search in progress: the supernet, its optimizer and data, the random
generators, how far it has come. A strategy subclasses it and says which cell trains on each batch
(``train_cell``; or which model, ``train_model``: DARTS's relaxed cell), what else happens after a
training step (``after_step``, e.g. ENAS's controller training), which cell is scored next
(``score_cell``), and what else its checkpoint holds (``extra_state``/``load_extra_state``). A run (``run_oneshot``/``resume_oneshot`` in this process,
``cellsearch.runner.oneshot`` on Ray) trains one supernet per search seed (``cfg.seed`` ..
``cfg.seed + cfg.seeds - 1``; ``run_seed``), each on its own: (1) train the shared weights on the
task's training data for the search's budget (``steps`` and/or ``minutes``); (2) score ``candidates``
distinct cells (strategy option ``candidates``, default 10 × ``trials``) with the shared weights on the
validation data (the task's primary metric, higher is better). Then the run's one writer (``record``)
records each seed's best ``trials`` cells in ``runs/NAME/results.db`` as candidates with their one-shot
scores (status ``ok``, stage ``one-shot``, origin ``oneshot``, the strategy's name, the seed in the
row's metrics), and writes ``config.json`` and ``best.yaml`` (the best of all seeds), so that
``leaderboard`` (which ranks the union), ``export`` and ``evaluate`` read the run as any other search's.

Each seed checkpoints to ``runs/NAME/oneshot.pt`` (the first seed; ``oneshot-seed{S}.pt`` the others:
the shared weights, the optimizer, the data stream, the carried state, every random generator, the
strategy's own state, the cells scored so far) every twentieth of its step budget (every 30 seconds
under a time budget) and every twentieth of the cells scored; a resumed run (``cellsearch resume``)
continues every seed from there, and with a step budget gives exactly what the uninterrupted run gives.

What is not here: several tasks (one supernet trains on one task).
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch

from cellsearch.dsl.graph import CellGraph
from cellsearch.dsl.hashing import canonical_hash
from cellsearch.dsl.io import dumps_cell
from cellsearch.errors import ConfigError
from cellsearch.fileio import atomic_write, write_error
from cellsearch.limits import MAX_SEED, MAX_TRIALS, check_number
from cellsearch.nn.model import ModelConfig, SeqModel
from cellsearch.oneshot.supernet import DagSupernet, check_oneshot_space
from cellsearch.spaces.dag import DagSpace
from cellsearch.records import random_state
from cellsearch.spaces.base import InvalidCandidate, Space
from cellsearch.storage import rundir
from cellsearch.storage.settings import SearchConfig
from cellsearch.storage.store import Store
from cellsearch.storage.writer_lock import WriterLock
from cellsearch.tasks import make_task, primary_metric
from cellsearch.tasks.base import Task
from cellsearch.training.config import TrainConfig
from cellsearch.training.trainer import resolve_device

CHECKPOINT = "oneshot.pt"
CHECKPOINT_SECONDS = 30.0  # under a time budget, the training checkpoints this often
MISSES = 1000  # draws in a row without a new cell after which scoring takes the space as exhausted
STAGE = "one-shot"
ORIGIN = "oneshot"
# Progress events: a dict with "seed" (the search seed), "phase" ("train" or "score"), "done" and "total"
# (and "loss" or "score")
ProgressHandler = Callable[[dict[str, Any]], None]


def check_oneshot_config(cfg: SearchConfig, space: Space, strategy: type["OneShotSearch"]) -> int:
    """Refuse settings the one-shot ``strategy`` cannot run (ConfigError, one line); return the number
    of cells to score."""
    name = strategy.name
    strategy.check_space(check_oneshot_space(space))
    cfg.validate()
    if cfg.seed + cfg.seeds - 1 > MAX_SEED:
        raise ConfigError(f"seeds {cfg.seed}..{cfg.seed + cfg.seeds - 1} pass the largest seed ({MAX_SEED}): "
                          "lower --seed or --seeds", field="SearchConfig.seeds")
    if len(cfg.tasks) != 1:
        raise ConfigError(f"strategy {name} trains one supernet on one task, not {len(cfg.tasks)}: give one task",
                          field="SearchConfig.tasks")
    if cfg.benchmark:
        raise ConfigError(f"strategy {name} trains a supernet: it cannot replay a benchmark table",
                          field="SearchConfig.benchmark")
    if list(cfg.objectives) != ["score"]:
        raise ConfigError(f"strategy {name} ranks cells by their one-shot score alone, not by "
                          f"{','.join(cfg.objectives)}: drop --objectives or use random, regularized-evolution, "
                          f"tpe or nsga2", field="SearchConfig.objectives")
    known = ("candidates", *strategy.option_defaults)
    unknown = sorted(set(cfg.strategy_options) - set(known))
    if unknown:
        raise ConfigError(f"strategy {name} has no option '{unknown[0]}' (options: {', '.join(known)})",
                          field="SearchConfig.strategy_options")
    candidates = cfg.strategy_options.get("candidates", 10 * cfg.trials)
    check_number("candidates", candidates, 1, "trials", MAX_TRIALS)
    if candidates < cfg.trials:
        raise ConfigError(f"candidates ({candidates}) must be at least trials ({cfg.trials}): the best trials of "
                          "the scored cells are recorded", field="SearchConfig.strategy_options")
    strategy.check_options({k: v for k, v in cfg.strategy_options.items() if k != "candidates"})
    return int(candidates)


def build_supernet(space: Space, task: Task, tc: TrainConfig) -> DagSupernet:
    """The supernet of ``space`` at the training settings' sizes, initialised from ``tc.seed``."""
    if task.condition_classes:  # (the class embedding would be each cell's own, not the supernet's)
        raise ConfigError(f"one-shot search trains unconditioned supernets: task {task.name} is conditioned on its "
                          "class (drop its conditional option)", field="SearchConfig.task_options")
    config = ModelConfig(vocab_size=len(task.vocab), hidden_size=tc.hidden_size, embed_size=tc.embed_size,
                         dropout=tc.dropout, state_limit=tc.state_limit, memory_rows=tc.memory_rows)
    with torch.random.fork_rng(devices=[]):
        net = DagSupernet(space, config)
    net.reset_parameters(tc.init_scale, torch.Generator().manual_seed(tc.seed))
    return net.to(resolve_device(tc.device))


def draw(space: Space, rng: random.Random) -> tuple[tuple[int, ...], CellGraph]:
    """A uniformly random decision tuple of ``space`` and the cell it decodes to (invalid draws drawn again)."""
    for _ in range(100):
        choices = space.random_decisions(rng)
        try:
            return choices, space.decode(choices)
        except InvalidCandidate:  # pragma: no cover - every cell of a dag space is valid
            continue
    raise InvalidCandidate(f"space '{space.name}': no valid cell in 100 random draws")  # pragma: no cover


class OneShotSearch:
    """One one-shot search in progress: the supernet, its optimizer and data, the random generators, how
    far it has come; ``run()`` goes on from there to the end, checkpointing to ``checkpoint`` (if set).
    A strategy subclasses it (module docstring); ``options`` are its strategy options (``-o``), checked."""

    name: ClassVar[str] = ""  # the strategy's name (--strategy), recorded with every cell
    option_defaults: ClassVar[dict[str, Any]] = {}  # the strategy's own options (besides candidates)

    @classmethod
    def check_space(cls, space: DagSpace) -> None:
        """Refuse (ConfigError, one line) a dag space this strategy cannot search; every one by default."""

    def __init__(self, space: Space, task: Task, tc: TrainConfig, count: int, seed: int,
                 checkpoint: Path | None = None, on_progress: ProgressHandler | None = None,
                 options: dict[str, Any] | None = None):
        self.space, self.task, self.tc, self.count = space, task, tc, count
        self.seed = seed
        self.options = {**self.option_defaults, **self.check_options(dict(options or {}))}
        self.checkpoint, self.on_progress = checkpoint, on_progress
        self.net = build_supernet(space, task, tc)
        self.device = next(self.net.parameters()).device
        params = list(self.net.parameters())
        self.opt: torch.optim.Optimizer
        if tc.optimizer == "adam":
            self.opt = torch.optim.Adam(params, lr=tc.lr, weight_decay=tc.weight_decay)
        else:
            self.opt = torch.optim.SGD(params, lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)
        self.stream = task.train_stream(tc.batch_size, tc.seed)
        self.rng = random.Random(seed * 1_000_003 + 29)  # the cells drawn, in training and in scoring
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(tc.seed)
            self.torch_rng = torch.get_rng_state()  # the training's own (dropout), kept apart from the caller's
        self.step = 0
        self.elapsed = 0.0  # seconds of training, over sessions
        self.carried: Any = None  # the state carried between batches (truncated BPTT)
        self.losses: list[float] = []
        self.trained = False
        self.scored: list[dict[str, Any]] = []  # choices, hash, score, metrics, params

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything ``run`` needs to go on exactly: tensors and plain data only."""
        carried = None if self.carried is None else [t.cpu() for t in self.carried]
        return {"version": 1, "strategy": self.name, "extra": self.extra_state(),
                "net": self.net.state_dict(), "optimizer": self.opt.state_dict(),
                "stream": self.stream.state_dict(), "rng": self.rng.getstate(), "torch_rng": self.torch_rng,
                "step": self.step, "elapsed": self.elapsed, "carried": carried, "losses": self.losses[-100:],
                "trained": self.trained,
                "scored": [{k: (list(v) if k == "choices" else v) for k, v in r.items()} for r in self.scored]}

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        """Go on from ``state_dict``'s contents (KeyError/TypeError/ValueError/RuntimeError if they do not fit)."""
        if ckpt["version"] != 1:
            raise ValueError(f"unknown version {ckpt['version']!r}")
        if ckpt.get("strategy", "rsws") != self.name:
            raise ValueError(f"it was written by strategy {ckpt.get('strategy')!r}, not {self.name!r}")
        self.net.load_state_dict(ckpt["net"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.stream.load_state_dict(ckpt["stream"])
        self.rng.setstate(random_state(ckpt["rng"]))
        self.torch_rng = ckpt["torch_rng"]
        self.step, self.elapsed = int(ckpt["step"]), float(ckpt["elapsed"])
        carried = ckpt["carried"]
        self.carried = None if carried is None else tuple(t.to(self.device) for t in carried)
        self.losses = [float(v) for v in ckpt["losses"]]
        self.trained = bool(ckpt["trained"])
        self.scored = [dict(r, choices=tuple(int(c) for c in r["choices"])) for r in ckpt["scored"]]
        self.load_extra_state(ckpt.get("extra"))

    # ------------------------------------------------------------------ what a strategy says
    @classmethod
    def check_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """The strategy's own options checked (ConfigError, one line); none by default."""
        return options

    def train_cell(self) -> tuple[int, ...]:
        """The decisions of the cell that trains on the next batch."""
        raise NotImplementedError

    def train_model(self) -> SeqModel:
        """The model that trains on the next batch: by default the bound model of ``train_cell``'s cell."""
        return self.net.model_for(self.train_cell())

    def after_step(self) -> None:
        """Whatever the strategy does after each training step of the shared weights (nothing by default)."""

    def score_cell(self) -> tuple[tuple[int, ...], CellGraph]:
        """The next cell to score (its decisions and graph); it may repeat one already scored."""
        raise NotImplementedError

    def extra_state(self) -> Any:
        """The strategy's own state for the checkpoint (tensors and plain data; None by default)."""
        return None

    def load_extra_state(self, state: Any) -> None:
        """Go on from ``extra_state``'s contents (nothing to do by default)."""

    def save(self) -> None:
        """Write the checkpoint (whole or not at all)."""
        if self.checkpoint is not None:
            state = self.state_dict()
            atomic_write(self.checkpoint, lambda f: torch.save(state, f))

    # ------------------------------------------------------------------ the search
    def run(self) -> None:
        """Train the shared weights to the budget, then score the cells (from wherever it stands)."""
        if not self.trained:
            self.train()
            self.trained = True
            self.save()
        self.score()

    def _budget_left(self, start: float) -> bool:
        tc = self.tc
        if tc.steps is not None and self.step >= tc.steps:
            return False
        return tc.seconds is None or self.elapsed + time.perf_counter() - start < tc.seconds

    def train(self) -> None:
        """Train the shared weights, a random cell per batch, to ``tc.steps`` steps and/or ``tc.seconds``."""
        tc, net, task = self.tc, self.net, self.task
        params = list(net.parameters())
        total = tc.steps
        every = max(1, total // 20) if total else 0
        report = max(1, (total or 100) // 10)
        start = last_save = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self.torch_rng)
            while self._budget_left(start):
                model = self.train_model()
                model.train()
                batch = next(self.stream).to(self.device)
                begin = self.carried if batch.carry_state and self.carried is not None else model.start(batch)
                logits, new_state = model(batch.inputs, begin)
                model.take_outputs()
                nll, n = task.masked_nll(logits, batch.targets, batch.mask)
                loss = nll / max(n, 1)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                if tc.clip:
                    torch.nn.utils.clip_grad_norm_(params, tc.clip)
                self.opt.step()
                self.carried = model.detach_state(new_state) if model.carries_state else None
                self.step += 1
                value = float(loss.detach())
                self.losses.append(value)
                self.after_step()
                self.torch_rng = torch.get_rng_state()
                now = time.perf_counter()
                if (every and self.step % every == 0) or (not every and now - last_save >= CHECKPOINT_SECONDS):
                    self.elapsed += now - start
                    start = last_save = now
                    self.save()
                if self.on_progress is not None and (self.step % report == 0 or self.step == total):
                    self.on_progress({"seed": self.seed, "phase": "train", "done": self.step, "total": total, "loss": value})
            self.elapsed += time.perf_counter() - start

    def evaluate(self, choices: tuple[int, ...]) -> dict[str, float | None]:
        """The cell ``choices``'s metrics on the validation data with the shared weights (non-finite: None)."""
        model = self.net.model_for(choices)
        model.eval()
        with torch.no_grad():
            metrics = self.task.evaluate(model, "valid", self.tc.eval_batch_size)
        return {k: (float(v) if v is not None and math.isfinite(v) else None) for k, v in metrics.items()}

    def score(self) -> None:
        """Score distinct cells (by canonical hash; ``score_cell`` draws them) with the shared weights on the
        validation data until ``count`` are scored, or the space runs out (``MISSES`` draws in a row without a
        new cell)."""
        metric = primary_metric(self.tc.task)
        seen = {r["hash"] for r in self.scored}
        every = max(1, self.count // 20)
        misses = 0
        while len(self.scored) < self.count and misses < MISSES:
            choices, graph = self.score_cell()
            cell_hash = canonical_hash(graph)
            if cell_hash in seen:
                misses += 1
                continue
            misses = 0
            seen.add(cell_hash)
            clean = self.evaluate(choices)
            self.scored.append({"choices": choices, "hash": cell_hash, "score": clean.get(metric),
                                "metrics": clean, "params": self.net.cell_parameter_count(choices)})
            if len(self.scored) % every == 0:
                self.save()
            if self.on_progress is not None:
                self.on_progress({"seed": self.seed, "phase": "score", "done": len(self.scored), "total": self.count,
                                  "score": clean.get(metric)})

    def ranked(self) -> list[dict[str, Any]]:
        """The scored cells, best first (cells without a score last; ties in the order scored)."""
        return sorted(self.scored, key=lambda r: -math.inf if r["score"] is None else r["score"], reverse=True)


# ---------------------------------------------------------------------- a run of one or several seeds
def prepare(cfg: SearchConfig, space: Space, strategy: type[OneShotSearch], *,
            check_device: bool = True) -> tuple[SearchConfig, TrainConfig, Task, int]:
    """The settings checked (``check_oneshot_config``) and resolved, the supernet's training settings (on
    CUDA with ``gpus_per_trial``; ``check_device``: ConfigError, one line, for CUDA where there is none),
    the task, and the number of cells to score."""
    count = check_oneshot_config(cfg, space, strategy)
    cfg = cfg.resolved(space)
    tc = cfg.train_config(cfg.tasks[0])
    if cfg.data_dir is not None:
        tc = replace(tc, data_dir=cfg.data_dir)
    if cfg.gpus_per_trial:
        tc = replace(tc, device="cuda")
    if check_device:
        resolve_device(tc.device)
    if tc.task == "ptb":
        from cellsearch.tasks.data import verify

        verify("ptb", cfg.data_dir)
    return cfg, tc, make_task(tc.task, seed=tc.seed, data_dir=tc.data_dir, **tc.task_options), count


def search_seeds(cfg: SearchConfig) -> list[int]:
    """The search seeds of a run: ``cfg.seed`` .. ``cfg.seed + cfg.seeds - 1``, one supernet each."""
    return [cfg.seed + i for i in range(cfg.seeds)]


def seed_checkpoint(run_dir: Path, cfg: SearchConfig, seed: int) -> Path:
    """Where search seed ``seed`` checkpoints: ``oneshot.pt`` for the first, ``oneshot-seed{S}.pt`` for the others."""
    return run_dir / (CHECKPOINT if seed == cfg.seed else f"oneshot-seed{seed}.pt")


def run_seed(strategy: type[OneShotSearch], cfg: SearchConfig, space: Space, task: Task, tc: TrainConfig,
             count: int, seed: int, run_dir: Path, on_progress: ProgressHandler | None = None) -> OneShotSearch:
    """Search seed ``seed`` of the run in ``run_dir`` to its end, from its checkpoint when it has one; its
    supernet is initialised and fed from ``tc.seed`` + ``seed``: the search seed alone decides it, so seed S
    of a run with several seeds is the run ``--seed S`` (and two searches with other seeds never share one)."""
    from cellsearch.training.checkpoint import read_checkpoint_data, restore_error

    options = {k: v for k, v in cfg.strategy_options.items() if k != "candidates"}
    tc = replace(tc, seed=tc.seed + seed)
    path = seed_checkpoint(run_dir, cfg, seed)
    search = strategy(space, task, tc, count, seed, path, on_progress, options)
    if path.exists():
        ckpt = read_checkpoint_data(path)
        try:
            search.load_state_dict(ckpt)
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
            raise restore_error(path, exc) from None
    search.run()
    return search


def seed_result(search: OneShotSearch, trials: int) -> dict[str, Any]:
    """What a finished seed hands to the run's one writer: its seed, its best ``trials`` cells (choices,
    hash, score, metrics, params), how many cells it scored, its steps and seconds of training."""
    top = [dict(r, choices=list(r["choices"])) for r in search.ranked()[:trials]]
    return {"seed": search.seed, "top": top, "scored": len(search.scored), "steps": search.step,
            "train_seconds": search.elapsed}


def open_run(cfg: SearchConfig, run_dir: Path, *, resume: bool) -> WriterLock:
    """Lock ``run_dir`` for this writer and return the lock (held); a new run (``resume`` False) is checked
    new, created, and its ``config.json`` and ``results.db`` written (a run from then on: ``resume`` finds it)."""
    if not resume:
        rundir.check_new_run(run_dir)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(run_dir, exc) from None
    lock = WriterLock(run_dir, "cellsearch resume" if resume else "cellsearch search")
    lock.acquire()
    try:
        if not resume:
            rundir.check_new_run(run_dir)  # (again, under the lock: another search may have won the race)
            atomic_write(run_dir / rundir.CONFIG, json.dumps(asdict(cfg), indent=2))
            with Store(run_dir / rundir.RESULTS) as store:
                store.set_meta("config", asdict(cfg))
    except BaseException:
        lock.release()
        raise
    return lock


def finished_summary(run_dir: Path) -> dict[str, Any] | None:
    """The summary of a run that has recorded its cells already (None while it has not)."""
    with Store(run_dir / rundir.RESULTS, readonly=True) as store:
        summary = store.get_meta("last_summary")
    return dict(summary) if summary is not None else None


def record(run_dir: Path, cfg: SearchConfig, space: Space, results: list[dict[str, Any]],
           seconds: float) -> dict[str, Any]:
    """Record each seed's best ``cfg.trials`` cells (``seed_result``s, in seed order) in ``results.db`` (trial
    ids ``STRATEGY_seedS_K``; each row's metrics carry its ``seed``), then ``best.yaml`` (the best score of
    any seed) and the run's summary. A row already there (a writer killed while recording) is kept."""
    name, task = cfg.strategy, cfg.tasks[0]
    results = sorted(results, key=lambda r: r["seed"])
    rows = [(res["seed"], k, r) for res in results for k, r in enumerate(res["top"])]
    with Store(run_dir / rundir.RESULTS) as store:
        store.set_meta("config", asdict(cfg))
        recorded = {row["trial_id"] for row in store.rows()}
        for seed, k, r in rows:
            trial_id = f"{name}_seed{seed}_{k:05d}"
            if trial_id in recorded:
                continue
            graph = space.decode(tuple(r["choices"]))
            if canonical_hash(graph) != r["hash"]:
                raise ConfigError(f"seed {seed}: cell {k}'s hash {r['hash']} is not its decisions' cell's: refused")
            store.add_trial(hash=r["hash"], cell_yaml=dumps_cell(graph), strategy=name, status="ok",
                            score=r["score"], metrics={task: {**r["metrics"], "seed": seed}}, cell_name=graph.name,
                            trial_id=trial_id, origin=ORIGIN, decisions=r["choices"], stage=STAGE,
                            params=r["params"], node=r.get("node") or "local")
        store.set_meta("oneshot", {"strategy": name, "scored": sum(r["scored"] for r in results),
                                   "steps": sum(r["steps"] for r in results),
                                   "train_seconds": sum(r["train_seconds"] for r in results),
                                   "seeds": [{k: v for k, v in r.items() if k != "top"} for r in results]})
        scored = [(seed, r) for seed, _, r in rows if r["score"] is not None]
        best = max(scored, key=lambda x: x[1]["score"], default=None)
        summary = {"run_dir": str(run_dir), "trials": len(rows), "seeds": len(results),
                   "scored": sum(r["scored"] for r in results), "steps": sum(r["steps"] for r in results),
                   "seconds": seconds, "best_hash": best[1]["hash"] if best else None,
                   "best_score": best[1]["score"] if best else None, "best_seed": best[0] if best else None}
        store.set_meta("last_summary", summary)
    if best is not None:
        atomic_write(run_dir / rundir.BEST, dumps_cell(space.decode(tuple(best[1]["choices"]))))
    return summary


def run_here(strategy: type[OneShotSearch], cfg: SearchConfig, space: Space, tc: TrainConfig, task: Task,
             count: int, run_dir: Path, on_progress: ProgressHandler | None = None) -> dict[str, Any]:
    """Every seed of the run in this process, one after the other (on ``cfg.cpus_per_trial`` torch threads
    when given), then ``record``; returns the summary."""
    from cellsearch.training.parallelism import torch_threads

    start = time.perf_counter()
    with torch_threads(cfg.cpus_per_trial):
        results = [seed_result(run_seed(strategy, cfg, space, task, tc, count, seed, run_dir, on_progress),
                               cfg.trials) for seed in search_seeds(cfg)]
    return record(run_dir, cfg, space, results, time.perf_counter() - start)


def run_oneshot(strategy: type[OneShotSearch], cfg: SearchConfig, runs_dir: str | Path = "runs", *,
                space: Space | None = None, on_progress: ProgressHandler | None = None) -> dict[str, Any]:
    """A one-shot ``strategy`` end to end in this process (module docstring; every seed in turn, whatever
    ``cfg.backend`` says: ``SearchRun`` runs the seeds on Ray): train, score, record the top ``cfg.trials``
    of each seed; returns a summary (run_dir, trials, seeds, scored, steps, seconds, best_hash, best_score)."""
    from cellsearch.spaces import load_space

    space = space if space is not None else load_space(cfg.space)
    cfg = replace(cfg, strategy=strategy.name)
    cfg, tc, task, count = prepare(cfg, space, strategy)
    run_dir = Path(runs_dir) / cfg.name
    lock = open_run(cfg, run_dir, resume=False)
    try:
        return run_here(strategy, cfg, space, tc, task, count, run_dir, on_progress)
    finally:
        lock.release()


def resume_oneshot(strategy: type[OneShotSearch], run_dir: str | Path, *,
                   on_progress: ProgressHandler | None = None) -> dict[str, Any]:
    """Continue an interrupted one-shot run of ``strategy`` in this process, each seed from its checkpoint
    (a finished run: its summary again)."""
    from cellsearch.spaces import load_space

    run_dir = rundir.require_run(run_dir)
    cfg = SearchConfig.from_dict(rundir.read_run_config(run_dir))
    space = load_space(cfg.space)
    cfg, tc, task, count = prepare(cfg, space, strategy)
    lock = open_run(cfg, run_dir, resume=True)
    try:
        return finished_summary(run_dir) or run_here(strategy, cfg, space, tc, task, count, run_dir, on_progress)
    finally:
        lock.release()
