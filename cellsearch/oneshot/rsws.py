"""Random search with weight sharing (RS-WS, Li & Talwalkar 2019) over a ``dag`` space's supernet.

``run_rsws(cfg, runs_dir)``: (1) train the supernet's shared weights on the task's training
data, a uniformly random cell per batch (only that cell's path runs and learns), for the
search's budget (``steps`` and/or ``minutes``); (2) score ``candidates`` distinct random cells
(strategy option ``candidates``, default 10 × ``trials``) with the shared weights on the
validation data (the task's primary metric, higher is better); (3) record the best ``trials``
of them in ``runs/NAME/results.db`` as candidates with their one-shot scores (status ``ok``,
stage ``one-shot``, origin ``oneshot``), and write ``config.json`` and ``best.yaml``, so that
``leaderboard``, ``export`` and ``evaluate`` read the run as any other search's.

What is not here yet: Ray (it runs in-process: ``backend`` must be ``local``), checkpoints and
``resume``, several tasks (one supernet trains on one task).
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable

import torch

from cellsearch.dsl.graph import CellGraph
from cellsearch.dsl.hashing import canonical_hash
from cellsearch.dsl.io import dumps_cell
from cellsearch.errors import ConfigError
from cellsearch.fileio import atomic_write
from cellsearch.limits import MAX_TRIALS, check_number
from cellsearch.nn.model import ModelConfig
from cellsearch.oneshot.supernet import DagSupernet, check_oneshot_space
from cellsearch.spaces.base import InvalidCandidate, Space
from cellsearch.storage import rundir
from cellsearch.storage.settings import SearchConfig
from cellsearch.storage.store import Store
from cellsearch.tasks import make_task, primary_metric
from cellsearch.tasks.base import Task
from cellsearch.training.config import TrainConfig

STRATEGY = "rsws"
STAGE = "one-shot"
ORIGIN = "oneshot"
OPTIONS = ("candidates",)  # the strategy options (-o KEY=VALUE) RS-WS takes
# Progress events: a dict with "phase" ("train" or "score"), "done" and "total" (and "loss" or "score")
ProgressHandler = Callable[[dict[str, Any]], None]


def check_rsws_config(cfg: SearchConfig, space: Space) -> int:
    """Refuse settings RS-WS cannot run (ConfigError, one line); return the number of cells to score."""
    check_oneshot_space(space)
    cfg.validate()
    if cfg.backend != "local":
        raise ConfigError("strategy rsws runs in-process for now: use --backend local", field="SearchConfig.backend")
    if len(cfg.tasks) != 1:
        raise ConfigError(f"strategy rsws trains one supernet on one task, not {len(cfg.tasks)}: give one task",
                          field="SearchConfig.tasks")
    if cfg.benchmark:
        raise ConfigError("strategy rsws trains a supernet: it cannot replay a benchmark table",
                          field="SearchConfig.benchmark")
    unknown = sorted(set(cfg.strategy_options) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"strategy rsws has no option '{unknown[0]}' (options: {', '.join(OPTIONS)})",
                          field="SearchConfig.strategy_options")
    candidates = cfg.strategy_options.get("candidates", 10 * cfg.trials)
    check_number("candidates", candidates, 1, "trials", MAX_TRIALS)
    if candidates < cfg.trials:
        raise ConfigError(f"candidates ({candidates}) must be at least trials ({cfg.trials}): the best trials of "
                          "the scored cells are recorded", field="SearchConfig.strategy_options")
    return int(candidates)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda requested but CUDA is not available")
    return torch.device(name)


def build_supernet(space: Space, task: Task, tc: TrainConfig) -> DagSupernet:
    """The supernet of ``space`` at the training settings' sizes, initialised from ``tc.seed``."""
    config = ModelConfig(vocab_size=len(task.vocab), hidden_size=tc.hidden_size, embed_size=tc.embed_size,
                         dropout=tc.dropout, state_limit=tc.state_limit)
    with torch.random.fork_rng(devices=[]):
        net = DagSupernet(space, config)
    net.reset_parameters(tc.init_scale, torch.Generator().manual_seed(tc.seed))
    return net.to(_device(tc.device))


def train_supernet(net: DagSupernet, task: Task, tc: TrainConfig, rng: random.Random,
                   on_progress: ProgressHandler | None = None) -> dict[str, Any]:
    """Train the shared weights, a random cell per batch, for ``tc.steps`` steps and/or
    ``tc.seconds``; returns the steps taken, the seconds and the last losses' mean."""
    device = next(net.parameters()).device
    params = list(net.parameters())
    opt: torch.optim.Optimizer
    if tc.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=tc.lr, weight_decay=tc.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)
    stream = task.train_stream(tc.batch_size, tc.seed)
    start = time.perf_counter()
    state: Any = None
    losses: list[float] = []
    step = 0
    total = tc.steps
    every = max(1, (total or 100) // 10)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(tc.seed)  # (dropout)
        while (total is None or step < total) and (tc.seconds is None or time.perf_counter() - start < tc.seconds):
            model = net.model_for(draw(net.space, rng)[0])
            model.train()
            batch = next(stream).to(device)
            begin = state if batch.carry_state and state is not None else model.start(batch)
            logits, new_state = model(batch.inputs, begin)
            model.take_outputs()
            nll, n = task.masked_nll(logits, batch.targets, batch.mask)
            loss = nll / max(n, 1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tc.clip:
                torch.nn.utils.clip_grad_norm_(params, tc.clip)
            opt.step()
            state = None if model.is_seq2seq else model.detach_state(new_state)
            step += 1
            value = float(loss.detach())
            losses.append(value)
            if on_progress is not None and (step % every == 0 or step == total):
                on_progress({"phase": "train", "done": step, "total": total, "loss": value})
    tail = [v for v in losses[-20:] if math.isfinite(v)]
    return {"steps": step, "seconds": time.perf_counter() - start,
            "loss": sum(tail) / len(tail) if tail else None}


def draw(space: Space, rng: random.Random) -> tuple[tuple[int, ...], CellGraph]:
    """A uniformly random decision tuple of ``space`` and the cell it decodes to (invalid draws drawn again)."""
    for _ in range(100):
        choices = space.random_decisions(rng)
        try:
            return choices, space.decode(choices)
        except InvalidCandidate:  # pragma: no cover - every cell of a dag space is valid
            continue
    raise InvalidCandidate(f"space '{space.name}': no valid cell in 100 random draws")  # pragma: no cover


def score_cells(net: DagSupernet, task: Task, tc: TrainConfig, count: int, rng: random.Random,
                on_progress: ProgressHandler | None = None) -> list[dict[str, Any]]:
    """Score up to ``count`` distinct random cells (by canonical hash) with the shared weights on the
    validation data; fewer when the space has fewer (100 draws in a row without a new cell end it).
    Each: choices, graph, hash, score (None if not finite), metrics."""
    metric = primary_metric(tc.task)
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    misses = 0
    while len(out) < count and misses < 100:
        choices, graph = draw(net.space, rng)
        cell_hash = canonical_hash(graph)
        if cell_hash in seen:
            misses += 1
            continue
        misses = 0
        seen.add(cell_hash)
        model = net.model_for(choices)
        model.eval()
        with torch.no_grad():
            metrics = task.evaluate(model, "valid", tc.eval_batch_size)
        clean = {k: (float(v) if v is not None and math.isfinite(v) else None) for k, v in metrics.items()}
        out.append({"choices": choices, "graph": graph, "hash": cell_hash, "score": clean.get(metric),
                    "metrics": clean, "params": net.cell_parameter_count(choices)})
        if on_progress is not None:
            on_progress({"phase": "score", "done": len(out), "total": count, "score": clean.get(metric)})
    return out


def run_rsws(cfg: SearchConfig, runs_dir: str | Path = "runs", *, space: Space | None = None,
             on_progress: ProgressHandler | None = None) -> dict[str, Any]:
    """RS-WS end to end (module docstring): train, score, record the top ``cfg.trials``; returns a
    summary (run_dir, best_hash, best_score, steps, scored, seconds)."""
    from cellsearch.spaces import load_space

    space = space if space is not None else load_space(cfg.space)
    cfg = replace(cfg, strategy=STRATEGY, space=space.name)
    count = check_rsws_config(cfg, space)
    cfg = cfg.resolved(space)
    task_name = cfg.tasks[0]
    tc = cfg.train_config(task_name)
    if tc.seconds is None and tc.steps is None:  # pragma: no cover - SearchConfig.validate refuses it
        raise ConfigError("give a budget: steps or minutes")
    run_dir = Path(runs_dir) / cfg.name
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"{run_dir} already holds a run: choose another --name", field="SearchConfig.name")
    if task_name == "ptb":
        from cellsearch.tasks.data import verify

        verify("ptb", cfg.data_dir)
    task = make_task(task_name, seed=tc.seed, data_dir=tc.data_dir, **tc.task_options)
    net = build_supernet(space, task, tc)
    start = time.perf_counter()
    rng = random.Random(cfg.seed * 1_000_003 + 29)
    trained = train_supernet(net, task, tc, rng, on_progress)
    scored = score_cells(net, task, tc, count, rng, on_progress)
    ranked = sorted(scored, key=lambda r: -math.inf if r["score"] is None else r["score"], reverse=True)
    top = ranked[:cfg.trials]
    atomic_write(run_dir / rundir.CONFIG, json.dumps(asdict(cfg), indent=2))
    with Store(run_dir / rundir.RESULTS) as store:
        store.set_meta("config", asdict(cfg))
        store.set_meta("oneshot", {"strategy": STRATEGY, "scored": len(scored), "supernet": trained})
        for k, r in enumerate(top):
            graph = r["graph"]
            store.add_trial(hash=r["hash"], cell_yaml=dumps_cell(graph), strategy=STRATEGY, status="ok",
                            score=r["score"], metrics={task_name: r["metrics"]}, cell_name=graph.name,
                            trial_id=f"{STRATEGY}_{k:05d}", origin=ORIGIN, decisions=r["choices"], stage=STAGE,
                            params=r["params"], node="local")
        summary = {"run_dir": str(run_dir), "trials": len(top), "scored": len(scored), "steps": trained["steps"],
                   "seconds": time.perf_counter() - start,
                   "best_hash": top[0]["hash"] if top and top[0]["score"] is not None else None,
                   "best_score": top[0]["score"] if top else None}
        store.set_meta("last_summary", summary)
    if summary["best_hash"]:
        atomic_write(run_dir / rundir.BEST, dumps_cell(top[0]["graph"]))
    return summary
