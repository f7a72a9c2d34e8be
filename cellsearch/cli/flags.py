"""Which flag sets which library setting: the one table the command line's error messages use.

Library errors name the setting at fault by its field (``trials must be at least 1``; the
``ConfigError`` carries ``"SearchConfig.trials"``), as a Python caller wrote it. A command-line
user wrote a flag, so ``cli_message`` shows the flag in the field's place (``--trials must be at
least 1``) — when the running command has that flag: a setting the user did not give on the
command line (a recipe's hidden size under ``evaluate``) keeps its field name.
"""

from __future__ import annotations

import importlib
import re

# "Record.field" (or "function.parameter") → the flag that sets it
FLAGS: dict[str, str] = {
    # cellsearch search / resume (SearchConfig), and the run folder
    **{f"SearchConfig.{name}": flag for name, flag in {
        "name": "--name", "space": "--space", "strategy": "--strategy", "strategy_options": "--option",
        "tasks": "--tasks", "trials": "--trials", "parallel": "--parallel", "steps": "--budget",
        "minutes": "--minutes", "scheduler": "--scheduler", "seed": "--seed", "seeds": "--seeds",
        "address": "--address", "cpus_per_trial": "--cpus-per-trial", "gpus_per_trial": "--gpus-per-trial",
        "backend": "--backend", "reference": "--reference", "recipe": "--recipe", "data_dir": "--data-dir",
        "benchmark": "--benchmark", "missing": "--missing",
        "objectives": "--objectives"}.items()},
    "SearchRun.runs_dir": "--runs",
    # cellsearch train (TrainConfig, Trainer.run's output folder, the population lists)
    **{f"TrainConfig.{name}": flag for name, flag in {
        "task": "--task", "steps": "--steps", "hidden_size": "--hidden", "num_layers": "--layers", "seed": "--seed",
        "batch_size": "--batch-size", "lr": "--lr", "optimizer": "--optimizer", "clip": "--clip",
        "lr_schedule": "--lr-schedule", "dropout": "--dropout", "forget_bias": "--forget-bias",
        "init_scale": "--init-scale", "ar": "--ar", "tar": "--tar", "state_limit": "--state-limit",
        "scheduled_sampling": "--scheduled-sampling", "ss_k": "--ss-k", "eval_every": "--eval-every",
        "data_dir": "--data-dir", "threads": "--threads", "device": "--device", "encoder": "--encoder",
        "objective": "--objective", "reward": "--reward", "mixer_xent_steps": "--mixer-xent-steps",
        "mixer_every": "--mixer-every", "mixer_delta": "--mixer-delta", "memory_rows": "--memory-rows"}.items()},
    "Trainer.out_dir": "--out",
    "PopulationTrainer.members": "--seeds/--lrs",
    # cellsearch evaluate / fidelity (Protocol, JobSettings, the reports' options)
    "Protocol.steps": "--budget", "Protocol.minutes": "--minutes", "Protocol.seeds": "--seeds",
    "Protocol.lr_factors": "--lrs", "Protocol.tasks": "--tasks",
    "JobSettings.parallel": "--parallel", "JobSettings.backend": "--backend",
    "JobSettings.cpus_per_trial": "--cpus-per-trial", "JobSettings.gpus_per_trial": "--gpus-per-trial",
    "evaluate_run.top": "--top", "evaluate_run.confidence": "--confidence", "evaluate_run.baselines": "--baselines",
    "fidelity_run.sample": "--sample", "fidelity_run.min_tau": "--min-tau", "fidelity_run.target_tau": "--target-tau",
    "fidelity_run.budgets": "--budgets",
    # cellsearch leaderboard / export
    "leaderboard.top": "--top", "export_from_run.rank": "--rank",
    # cellsearch generate (decoding)
    "check_decoding.max_new_tokens": "--length", "check_decoding.beam_size": "--beam", "check_decoding.top_k": "--top-k",
    "check_decoding.temperature": "--temperature", "check_decoding.length_penalty": "--length-penalty",
    # cellsearch bench
    "BenchConfig.seq_len": "--seq-len", "BenchConfig.batch": "--batch", "BenchConfig.input_size": "--input-size",
    "BenchConfig.hidden_size": "--hidden-size", "BenchConfig.rounds": "--rounds", "BenchConfig.threads": "--threads",
    "BenchConfig.device": "--device", "PopulationBenchConfig.k": "--population",
    # cellsearch reproduce
    "reproduce_jozefowicz.seeds": "--seeds", "reproduce_jozefowicz.workers": "--workers",
    # cellsearch cells import (NAS-Bench-NLP) and data
    "import_recipes.out_dir": "--output", "import_recipes.force": "--force",
    "data.data_dir": "--data-dir", "download.base_url": "--url",
}


def _running_options() -> set[str] | None:
    """The option names (``--trials``, ``-o``, ...) of the command running now; None outside one."""
    for module in ("typer._click.globals", "click.globals"):  # (newer typer vendors its own click)
        try:
            ctx = importlib.import_module(module).get_current_context(silent=True)
        except (ImportError, AttributeError):
            continue
        if ctx is not None:
            return {opt for param in ctx.command.params for opt in getattr(param, "opts", ())}
    return None


def cli_message(exc: BaseException) -> str:
    """``exc``'s message with each field it names (``ConfigError.fields``) shown as its flag, where
    the running command has that flag (the first mention of the field's name is replaced)."""
    message = str(exc)
    fields = getattr(exc, "fields", ())
    if not fields:
        return message
    options = _running_options()
    for field in fields:
        flag = FLAGS.get(field)
        if flag is None or (options is not None and not set(flag.split("/")) <= options):
            continue
        name = field.rpartition(".")[2]
        # (a word of its own: not part of a longer name, a flag or a path)
        message = re.sub(rf"(?<![\w/\\-]){re.escape(name)}(?![\w/\\-])", flag, message, count=1)
    return message
