"""A search's settings (``runs/NAME/config.json``) as a typed record: ``SearchConfig``.

Plain data checked field by field (``from_dict``) and for consistency (``validate``), read by
the run's readers (``cellsearch.storage.results``) and the runner alike. The defaults are the search
``cellsearch search`` runs (the command line only maps its flags to these fields), and
``resolved()`` settles what the fields leave open the one way both take: the training settings
layered (``SEARCH_TRAIN`` under the recipe under ``train``), the task options likewise, and the
encoder of a space whose cells read a memory. Whether the strategy exists is checked by the
layer that knows the strategies, before a search starts (``cellsearch.runner.search``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from cellsearch.errors import ConfigError
from cellsearch import limits as L
from cellsearch.limits import check_file_name, check_number, shown
from cellsearch.records import record_from_dict

if TYPE_CHECKING:  # (at run time imported where used, so reading settings does not load torch)
    from cellsearch.spaces.base import Space
    from cellsearch.training.config import TrainConfig

DEFAULT_STEPS = 300  # a trial's step budget when neither steps nor minutes is given
# The trials' training settings under a recipe's and ``SearchConfig.train``'s
SEARCH_TRAIN: dict[str, Any] = {"hidden_size": 64, "batch_size": 32, "lr": 5e-3}
# The tasks' options under a recipe's and ``SearchConfig.task_options``'s (small evaluations: a trial is a proxy)
SEARCH_TASK_OPTIONS: dict[str, dict[str, Any]] = {"arith": {"max_digits": 3, "eval_examples": 500},
                                                  "xml": {"eval_chars": 10000},
                                                  "memorize": {"eval_examples": 500},
                                                  "ptb": {"eval_tokens": 20000}}


@dataclass
class SearchConfig:
    """The settings of a search (``SearchRun``), as ``config.json`` records them: the space, the
    strategy, the number of trials and their parallelism, the tasks and the training of each trial."""

    name: str = "search"
    space: str = "mutation"  # shipped space name or YAML path
    strategy: str = "evolution"  # random | evolution | regularized-evolution | rl | tpe
    strategy_options: dict[Any, Any] = field(default_factory=dict)
    tasks: list[Any] = field(default_factory=lambda: ["arith"])
    trials: int = 40  # candidates to evaluate (deduplicated ones count, the reference does not)
    parallel: int = 2  # concurrent trials
    steps: int | None = None  # training budget per trial and task (stage); DEFAULT_STEPS unless minutes is given
    minutes: float | None = None  # or a time budget per stage (with steps: whichever ends first)
    scheduler: str = "asha"  # asha | fifo
    seed: int = 0
    seeds: int = 1  # trainings (seeds) per candidate and setting, one population; the score is their mean
    address: str | None = None  # Ray cluster address; None starts Ray locally
    cpus_per_trial: int | None = None  # default: the machine's CPUs / parallel
    gpus_per_trial: float = 0.0
    backend: str = "ray"  # ray | local (in-process, sequential; for debugging)
    reference: str = "gru"  # cell that relative scores and filters compare against
    # TrainConfig settings of the trials, over the recipe's and SEARCH_TRAIN (all but the budget);
    # "encoder" trains every candidate as the decoder of an encoder-decoder model
    train: dict[Any, Any] = field(default_factory=dict)
    task_options: dict[Any, Any] = field(default_factory=dict)  # per task, over the recipe's and SEARCH_TASK_OPTIONS
    recipe: str | None = None  # a training recipe (cellsearch.training.recipes: a shipped name or a YAML file)
    data_dir: str | None = None
    max_failures: int = 2  # Tune retries of a trial whose worker died
    benchmark: str | None = None  # replay: look candidates up in this table instead of training them
    missing: str = "skip"  # replay, a candidate not in the table: skip (record it as missing) | fail
    # what the search optimises (storage.objectives: score, params, macs; score among them); several:
    # a Pareto front (random, regularized-evolution, tpe, nsga2); ["score"] is the search of one number
    objectives: list[Any] = field(default_factory=lambda: ["score"])

    def __post_init__(self) -> None:
        if self.steps is None and self.minutes is None:  # (the default budget is steps; minutes alone replaces it)
            self.steps = DEFAULT_STEPS

    def validate(self) -> None:
        """Check the settings (all but the strategy's name: ``runner.search.check_search_config``)."""
        from cellsearch.tasks import TASK_NAMES

        for t in self.tasks:
            if t not in TASK_NAMES:
                raise ConfigError(f"unknown task '{t}' in tasks (known: {', '.join(TASK_NAMES)})",
                                  field="SearchConfig.tasks")
        if not self.tasks:
            raise ConfigError("tasks is empty: give at least one task", field="SearchConfig.tasks")
        check_number("SearchConfig.trials", self.trials, 1, "trials", L.MAX_TRIALS)
        check_number("SearchConfig.parallel", self.parallel, 1, "parallel", L.MAX_PARALLEL)
        if self.steps is None and self.minutes is None:
            raise ConfigError("give a budget: steps or minutes", field=("SearchConfig.steps", "SearchConfig.minutes"))
        if self.steps is not None:
            check_number("SearchConfig.steps", self.steps, 1, "steps", L.MAX_STEPS)
        if self.minutes is not None:
            L.check_minutes(self.minutes)
        if self.cpus_per_trial is not None:
            check_number("SearchConfig.cpus_per_trial", self.cpus_per_trial, 1, "threads", L.MAX_THREADS)
        check_number("SearchConfig.gpus_per_trial", self.gpus_per_trial, 0, "gpus per trial", L.MAX_GPUS_PER_TRIAL,
                     integer=False)
        check_number("SearchConfig.seed", self.seed, 0, "seed", L.MAX_SEED)
        check_number("SearchConfig.seeds", self.seeds, 1, "population size", L.MAX_POPULATION)
        check_number("SearchConfig.max_failures", self.max_failures, 0, "trials", L.MAX_TRIALS)
        if self.scheduler not in ("asha", "fifo"):
            raise ConfigError(f"scheduler must be asha or fifo, not {shown(self.scheduler)}",
                              field="SearchConfig.scheduler")
        if self.backend not in ("ray", "local"):
            raise ConfigError(f"backend must be ray or local, not {shown(self.backend)}", field="SearchConfig.backend")
        from cellsearch.storage.objectives import check_objectives

        check_objectives(self.objectives)
        if "latency" in self.objectives and self.benchmark:
            raise ConfigError("the latency objective is measured by trials that train: a replay (benchmark) has "
                              "none; use params or macs", field="SearchConfig.objectives")
        if "objectives" in self.strategy_options:
            raise ConfigError("give the objectives as objectives (--objectives), not as a strategy option",
                              field="SearchConfig.strategy_options")
        if self.missing not in ("skip", "fail"):
            raise ConfigError(f"missing must be skip or fail, not {shown(self.missing)}", field="SearchConfig.missing")
        if (not isinstance(self.name, str) or not self.name or self.name in (".", "..")
                or any(c in self.name for c in "/\\\0") or not self.name.isprintable()):
            raise ConfigError(f"name {shown(self.name)} cannot name a run folder: use printable characters, no / or \\",
                              field="SearchConfig.name")
        check_file_name("run name", self.name)  # (in bytes, as the file system counts)
        from cellsearch.training.memory_estimate import check_training_memory

        for task in self.tasks:
            cfg = self.train_config(task)  # (checked as it is made: TrainConfig validates itself)
            if not self.address:  # (a cluster's workers have memory of their own: each trial checks there)
                check_training_memory(cfg, members=self.seeds)  # (a trial trains its seeds as one population)

    def train_config(self, task: str = "arith") -> "TrainConfig":
        """The training settings of one trial stage (what a worker would build; with the task's
        options when it is one of the search's tasks), checked for types."""
        from cellsearch.training.config import TrainConfig

        train, task_options = self.layered()
        settings = dict(train, task=task, steps=self.steps, seconds=self.minutes * 60 if self.minutes else None)
        if task in self.tasks and task in task_options:
            settings["task_options"] = task_options[task]
        return TrainConfig.from_dict(settings, "training settings (train and the recipe's)")

    def layered(self) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """The trials' training settings and task options: ``SEARCH_TRAIN``/``SEARCH_TASK_OPTIONS``,
        under the recipe's (all but its budget), under ``train``/``task_options``."""
        train: dict[str, Any] = dict(SEARCH_TRAIN)
        task_options = {t: dict(o) for t, o in SEARCH_TASK_OPTIONS.items()}
        if self.recipe is not None:
            from cellsearch.training.recipes import load_recipe

            train, task_options = load_recipe(self.recipe).overlay(train, task_options)
        for task, options in self.task_options.items():
            if not isinstance(options, dict):
                raise ConfigError(f"task options of '{task}' must be a mapping, not {shown(options)}",
                                  field="SearchConfig.task_options")
            task_options[task] = {**task_options.get(task, {}), **options}
        return {**train, **self.train}, task_options

    def resolved(self, space: "Space | None" = None) -> "SearchConfig":
        """These settings with nothing left open: the training settings and task options layered
        (``layered``) and the encoder decided — the one given (``train["encoder"]``), else
        ``DEFAULT_ENCODER`` for a space whose cells read a memory (``space``: the space object,
        when the caller has it; else ``self.space`` is loaded) — and checked: the encoder is a
        cell that can encode and every task has prompts and answers. What ``config.json`` records;
        resolving a resolved config changes nothing."""
        train, task_options = self.layered()
        encoder = train.get("encoder")
        if encoder is None and self.benchmark is None:  # (a replay trains nothing: no encoder to decide)
            from cellsearch.training.config import DEFAULT_ENCODER

            if space is None:
                from cellsearch.spaces import load_space

                space = load_space(self.space)
            encoder = DEFAULT_ENCODER if space.reads_memory() else None
        if encoder is not None:  # a bad encoder or task fails here, in one line, not in every trial
            from cellsearch.library import resolve_cell
            from cellsearch.nn.model import check_encoder
            from cellsearch.tasks import task_class
            from cellsearch.tasks.base import no_layout

            check_encoder(resolve_cell(encoder))
            for t in self.tasks:
                if "seq2seq" not in task_class(t).layouts:
                    raise ConfigError(no_layout(t, "seq2seq"), field="SearchConfig.tasks")
            train["encoder"] = encoder
        return replace(self, train=train, task_options=task_options, tasks=list(self.tasks),
                       strategy_options=dict(self.strategy_options), objectives=list(self.objectives))

    @classmethod
    def from_dict(cls, d: Any, what: str = "search settings") -> "SearchConfig":
        """From plain data (a run's config.json), every field type-checked."""
        return record_from_dict(cls, d, what)
