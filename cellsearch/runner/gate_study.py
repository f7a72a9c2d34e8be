"""The runs of the Greff et al. 2017 gate study ("LSTM: A Search Space Odyssey"): its design and
its training.

The nine variants of the paper (``vanilla`` and eight that each change one thing, see
``cellsearch/library``; ``VARIANT_CHANGE`` says what, ``GATE_FEATURES`` as 0/1 features) are
trained with random hyperparameters — learning rate and hidden size log-uniform, as in the
paper: ``study_jobs`` draws them, ``run_gate_study`` trains every run (in worker processes;
the runs of one variant and hidden size as one population, ``runner.worker.train_population_job``)
and returns one DataFrame row per run. The statistics,
the comparison with the papers and the report are ``cellsearch.analysis.gates``'s.

Choices the paper does not fix (see ``analysis.gates`` for the rest):

* **CIFG** keeps a forget gate — it is coupled to the input gate, ``f = 1 − i`` — so its
  features are ``coupled = 1`` with ``forget_gate = 1`` (and ``input_gate = 1``).
* **Paired draws**: with ``paired=True`` (the default) the k-th hyperparameter setting is the
  same for every variant, which removes hyperparameter noise from the comparison when there
  are only a few trials per variant. ``paired=False`` draws each variant's settings
  independently, as Greff et al. did.
* **Seeds**: each hyperparameter setting is trained with ``seeds`` seeds; every run is one row.
"""

from __future__ import annotations

import math
import random
from typing import Any, Callable, Sequence

from cellsearch.errors import ConfigError
from cellsearch.limits import MAX_POPULATION, MAX_TRIALS, check_limit
from cellsearch.training.population import shape_groups
from cellsearch.runner.worker import train_population_job
from cellsearch.training.parallelism import map_in_workers

VARIANTS = ("vanilla", "nig", "nfg", "nog", "niaf", "noaf", "np", "cifg", "fgr")
FEATURES = ("input_gate", "forget_gate", "output_gate", "peepholes", "input_activation", "output_activation",
            "coupled", "full_recurrence")
HYPERPARAMETERS = ("lr", "hidden")

_VANILLA = {"input_gate": 1, "forget_gate": 1, "output_gate": 1, "peepholes": 1, "input_activation": 1,
            "output_activation": 1, "coupled": 0, "full_recurrence": 0}
# The one feature each variant changes (and to what).
VARIANT_CHANGE: dict[str, tuple[str, int] | None] = {
    "vanilla": None,
    "nig": ("input_gate", 0),         # i = 1
    "nfg": ("forget_gate", 0),        # f = 1
    "nog": ("output_gate", 0),        # o = 1
    "niaf": ("input_activation", 0),  # g = identity
    "noaf": ("output_activation", 0),  # h = identity
    "np": ("peepholes", 0),           # no peepholes
    "cifg": ("coupled", 1),           # f = 1 - i (the forget gate stays, coupled)
    "fgr": ("full_recurrence", 1),    # gates see the previous i, f, o
}
GATE_FEATURES: dict[str, dict[str, int]] = {
    v: {**_VANILLA, **({change[0]: change[1]} if change else {})} for v, change in VARIANT_CHANGE.items()
}
FEATURE_VARIANT = {change[0]: v for v, change in VARIANT_CHANGE.items() if change}


# Small settings per task: a study of 9 variants × a few trials runs in minutes on a CPU.
DEFAULT_TASK_OPTIONS: dict[str, dict[str, Any]] = {
    "arith": {"max_digits": 2, "eval_examples": 200},
    "xml": {"eval_chars": 4000},
    "memorize": {"eval_examples": 200},
    "ptb": {"bptt": 35, "eval_tokens": 10000},
}

COLUMNS = ("variant", "trial", "seed", "lr", "hidden", "score", "status", "seconds", "steps", "params", "error")


def features_of(variant: str) -> dict[str, int]:
    """The 0/1 gate features of a Greff et al. variant (a copy); ConfigError naming the known variants
    for another name."""
    if variant not in GATE_FEATURES:
        raise ConfigError(f"'{variant}' is not a Greff et al. variant (known: {', '.join(VARIANTS)})")
    return dict(GATE_FEATURES[variant])


def _log_uniform(rng: random.Random, lo: float, hi: float) -> float:
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def draw_hyperparameters(rng: random.Random, hidden_range: tuple[int, int], lr_range: tuple[float, float]
                         ) -> dict[str, Any]:
    """One random setting: log-uniform learning rate and (rounded) log-uniform hidden size."""
    lo, hi = hidden_range
    hidden = int(round(_log_uniform(rng, lo - 0.5 + 1e-9, hi + 0.5 - 1e-9)))
    return {"lr": _log_uniform(rng, *lr_range), "hidden": min(hi, max(lo, hidden))}


def study_jobs(task: str = "arith", trials_per_variant: int = 3, seeds: int = 1, steps: int = 150,
               hidden_range: tuple[int, int] = (16, 64), lr_range: tuple[float, float] = (1e-3, 3e-2),
               task_options: dict | None = None, variants: Sequence[str] = VARIANTS, seed: int = 0,
               batch_size: int = 32, paired: bool = True, train_options: dict | None = None) -> list[dict]:
    """The runs of a study as plain dicts (variant, trial, seed, lr, hidden and the TrainConfig)."""
    from dataclasses import asdict

    from cellsearch.training.config import TrainConfig

    if trials_per_variant < 1 or seeds < 1 or steps < 0:
        raise ConfigError("trials_per_variant and seeds must be at least 1, steps at least 0")
    # (the runs are listed before any trains: their number is bounded before the list is made)
    check_limit("trials per variant", "trials", trials_per_variant, MAX_TRIALS)
    check_limit("seeds per trial", "population size", seeds, MAX_POPULATION)
    if not (1 <= hidden_range[0] <= hidden_range[1]):
        raise ConfigError(f"bad hidden_range {hidden_range}: need 1 <= low <= high")
    if not (0 < lr_range[0] <= lr_range[1]):
        raise ConfigError(f"bad lr_range {lr_range}: need 0 < low <= high")
    variants = list(variants)
    if not variants:
        raise ConfigError("give at least one variant")
    for v in variants:
        features_of(v)
    options = dict(DEFAULT_TASK_OPTIONS.get(task, {}) if task_options is None else task_options)
    shared = [draw_hyperparameters(random.Random(seed * 1_000_003 + k), hidden_range, lr_range)
              for k in range(trials_per_variant)]
    jobs = []
    for v_i, variant in enumerate(variants):
        rng = random.Random(f"{seed}/{variant}")
        for k in range(trials_per_variant):
            hp = shared[k] if paired else draw_hyperparameters(rng, hidden_range, lr_range)
            for s in range(seeds):
                cfg = TrainConfig.from_dict({**(train_options or {}), "cell": variant, "task": task,
                                             "task_options": options, "hidden_size": hp["hidden"], "lr": hp["lr"],
                                             "steps": steps, "batch_size": batch_size, "seed": seed + s,
                                             "threads": None, "device": "cpu"})  # (checked as made)
                jobs.append({"variant": variant, "trial": k, "seed": seed + s, "lr": hp["lr"], "hidden": hp["hidden"],
                             "config": asdict(cfg)})
    return jobs


def _run_trials(group: list[dict], threads: int | None = 1) -> list[dict]:
    """Train runs of one variant and hidden size (they differ in learning rate and seed) as one
    population (in a worker process or in-process); one row per run; never raises for a failing run."""
    outcomes = train_population_job([job["config"] for job in group], threads=threads)
    rows = []
    for job, out in zip(group, outcomes):
        row = {k: job[k] for k in ("variant", "trial", "seed", "lr", "hidden")}
        if out.error is not None:  # one broken run must not stop the study
            row.update(score=float("nan"), status="failed", steps=0, params=0, error=out.error)
        else:
            score = out.score if out.status == "ok" else None
            row.update(score=float("nan") if score is None else float(score), status=out.status, steps=out.steps,
                       params=out.params, error=None)
        row["seconds"] = out.seconds
        rows.append(row)
    return rows


def run_gate_study(task: str = "arith", trials_per_variant: int = 3, seeds: int = 1, steps: int = 150,
                   hidden_range: tuple[int, int] = (16, 64), lr_range: tuple[float, float] = (1e-3, 3e-2),
                   task_options: dict | None = None, variants: Sequence[str] = VARIANTS, workers: int = 1,
                   progress: Callable[[int, int, dict], None] | None = None, *, seed: int = 0,
                   batch_size: int = 32, paired: bool = True, train_options: dict | None = None):
    """Train every variant ``trials_per_variant`` × ``seeds`` times with random hyperparameters.

    ``task_options`` default to ``DEFAULT_TASK_OPTIONS[task]`` (arith: 2-digit numbers).
    ``workers > 1`` trains in that many processes with one torch thread each; ``progress(i, n, row)``
    is called after every run. Returns a DataFrame with one row per run: variant, trial, seed, lr,
    hidden, score (the task's primary metric; NaN unless status is ok), status, seconds, steps,
    params, error — sorted by variant (paper order), trial and seed.
    """
    import pandas as pd

    from cellsearch.tasks import make_task

    if task == "ptb":
        from cellsearch.tasks.data import verify

        verify("ptb", (train_options or {}).get("data_dir"))
    todo = study_jobs(task, trials_per_variant, seeds, steps, hidden_range, lr_range, task_options, variants, seed,
                      batch_size, paired, train_options)
    # a bad task option fails here, once (ConfigError), not in every run
    make_task(task, seed=0, data_dir=(train_options or {}).get("data_dir"), **todo[0]["config"]["task_options"])
    # runs of one variant and hidden size train as one population (members grouped by hidden size)
    groups = [[todo[i] for i in idx] for idx in shape_groups([job["config"] for job in todo])]
    rows: list[dict] = []

    def on_group(i: int, n: int, group_rows: list[dict]) -> None:
        for row in group_rows:
            rows.append(row)
            if progress:
                progress(len(rows), len(todo), row)

    map_in_workers(_run_trials, groups, workers or 1, on_group)
    return sorted_runs(pd.DataFrame(rows, columns=list(COLUMNS)))


def sorted_runs(df):
    """A study's DataFrame in paper order of the variants, then by trial and seed."""
    order = {v: i for i, v in enumerate(VARIANTS)}
    df = df.assign(_o=df["variant"].map(order)).sort_values(["_o", "trial", "seed"], kind="stable")
    return df.drop(columns="_o").reset_index(drop=True)
