"""The final evaluation protocol (``cellsearch evaluate`` and ``fidelity``): how cells are retrained.

Per cell and task (``Protocol``):

1. **Learning-rate sweep.** Train with seed 0 at each of a few learning rates around the
   search's (× ``lr_factors``, default 0.5, 1, 2) and keep the rate with the best *validation*
   score, so no cell loses to a badly chosen learning rate.
2. **Seeds.** Train with seeds 0 … N−1 at that rate (seed 0 is the sweep's run) and report the
   task's primary metric on the *test* split, which took no part in any choice.

The budget defaults to four times the search's per-trial budget (``protocol_for_run``). The
protocol's ``fingerprint`` names what makes two trainings comparable; the retrainings are
recorded under it (``runner.retrain``), so ``evaluate`` and ``fidelity`` share them.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from cellsearch import limits as L
from cellsearch.errors import CellWarning, ConfigError
from cellsearch.limits import check_limit, check_number, shown
from cellsearch.storage.results import run_config

DEFAULT_LR_FACTORS = (0.5, 1.0, 2.0)
# The trainer's settings that shape what a training learns, besides the per-job ones (cell, task,
# seed, learning rate, budget, device): the fingerprint takes their defaults unless the run sets them.
TRAINING_SETTINGS = ("hidden_size", "num_layers", "embed_size", "dropout", "batch_size", "optimizer", "momentum",
                     "weight_decay", "clip", "lr_schedule", "warmup_steps", "init_scale", "forget_bias",
                     "scheduled_sampling", "ss_k", "ss_min", "diverge_factor", "ar", "tar", "state_limit")
BUDGET_FACTOR = 4  # default evaluation budget: this many times the search's per-trial budget


@dataclass
class Protocol:
    """How cells are retrained: budget, seeds, learning-rate sweep, model and task settings."""

    tasks: list[str]
    steps: int | None = None  # training steps per job
    minutes: float | None = None  # or a time budget per job
    seeds: int = 5
    lr_factors: tuple[float, ...] = DEFAULT_LR_FACTORS  # × the base learning rate (train["lr"])
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides (hidden_size, batch_size, lr)
    task_options: dict[str, dict[Any, Any]] = field(default_factory=dict)
    data_dir: str | None = None

    def validate(self) -> None:
        """Check every setting (ConfigError naming the field) before anything trains."""
        from cellsearch.tasks import TASK_NAMES

        if not self.tasks:
            raise ConfigError("tasks is empty: give at least one task", field="Protocol.tasks")
        for t in self.tasks:
            if t not in TASK_NAMES:
                raise ConfigError(f"unknown task '{t}' in tasks (known: {', '.join(TASK_NAMES)})",
                                  field="Protocol.tasks")
        if self.steps is None and self.minutes is None:
            raise ConfigError("give a budget: steps or minutes", field=("Protocol.steps", "Protocol.minutes"))
        if self.steps is not None:
            check_number("Protocol.steps", self.steps, 1, "steps", L.MAX_STEPS)
        if self.minutes is not None:
            L.check_minutes(self.minutes, "Protocol.minutes")
        check_number("Protocol.seeds", self.seeds, 1, "population size", L.MAX_POPULATION)
        if not self.lr_factors or any(not (f > 0 and math.isfinite(f)) for f in self.lr_factors):
            raise ConfigError(f"lr_factors must be positive numbers (factors of the learning rate), got "
                              f"{shown(list(self.lr_factors))}", field="Protocol.lr_factors")
        # a cell's learning rates and seeds train as one population
        check_limit(f"trainings of a cell and task ({len(self.lr_factors)} learning rates × {self.seeds} seeds)",
                    "population size", len(self.lr_factors) * self.seeds, L.MAX_POPULATION)
        for lr in self.learning_rates:
            check_number("a learning rate of the sweep (lr_factors × the search's lr)", lr, 0, integer=False,
                         low_open=True)
        self.check_training()

    def check_training(self) -> None:
        """The retrainings' settings on each task, as the trainer will check them, and their memory."""
        from cellsearch.training.config import TrainConfig
        from cellsearch.training.memory_estimate import check_training_memory

        for task in self.tasks:
            cfg = TrainConfig.from_dict({**self.train, "task": task, "steps": self.steps,
                                         "seconds": self.minutes * 60 if self.minutes else None,
                                         "task_options": self.task_options.get(task, {})},
                                        "training settings of the retrainings")  # (checked as made)
            check_training_memory(cfg, members=len(self.lr_factors) * self.seeds)

    @property
    def base_lr(self) -> float:
        """The search's learning rate (``train["lr"]``), the centre of the sweep."""
        return float(self.train.get("lr", 2e-3))

    @property
    def learning_rates(self) -> list[float]:
        """The learning rates of the sweep: ``base_lr`` × each of ``lr_factors``, sorted."""
        return sorted({float(f"{self.base_lr * f:.6g}") for f in self.lr_factors})

    @property
    def fingerprint(self) -> str:
        """What makes two trainings comparable: budget, model/optimiser settings (the run's, over the
        trainer's defaults: trainings from before a default changed do not count as comparable),
        task options."""
        from cellsearch.training.config import TrainConfig

        defaults = TrainConfig()
        train = {k: getattr(defaults, k) for k in TRAINING_SETTINGS}
        train.update((k, v) for k, v in self.train.items() if k != "lr")
        data = {"steps": self.steps, "minutes": self.minutes, "train": train,
                "task_options": {t: self.task_options.get(t, {}) for t in sorted(self.tasks)}}
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]

    def to_json(self) -> dict[str, Any]:
        """The protocol as plain data for the reports, with its learning rates and fingerprint."""
        d = asdict(self)
        d.update(lr_factors=list(self.lr_factors), learning_rates=self.learning_rates, fingerprint=self.fingerprint)
        return d


def protocol_for_run(run_dir: str | Path, *, steps: int | None = None, minutes: float | None = None,
                     seeds: int = 5, lr_factors: Sequence[float] = DEFAULT_LR_FACTORS, tasks: list[str] | None = None,
                     data_dir: str | None = None, recipe: str | None = None) -> Protocol:
    """The protocol for a run: its model and task settings (``recipe``: a training recipe's instead,
    all but its budget), a budget ``BUDGET_FACTOR`` × its own."""
    chosen = None
    if recipe is not None:  # (a bad recipe is refused before the run is read)
        from cellsearch.training.recipes import load_recipe

        chosen = load_recipe(recipe)
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
    task_options = dict(cfg.get("task_options") or {})
    if chosen is not None:
        train, task_options = chosen.overlay(train, task_options)
    proto = Protocol(tasks=list(tasks or cfg.get("tasks") or ["arith"]), steps=steps, minutes=minutes, seeds=seeds,
                     lr_factors=tuple(float(f) for f in lr_factors), train=train, task_options=task_options,
                     data_dir=data_dir if data_dir is not None else cfg.get("data_dir"))
    proto.validate()
    return proto
