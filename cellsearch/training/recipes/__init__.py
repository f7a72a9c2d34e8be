"""Training recipes: named presets of training settings, shipped as YAML files next to this module.

``load_recipe("nasbench-nlp")`` (a shipped name) or ``load_recipe("my.yaml")`` (a file) returns a
``Recipe``; ``recipe.settings("ptb")`` is the mapping of ``TrainConfig`` fields it sets for that
task, to lay over the defaults and under the options a user gives explicitly (``cellsearch train
--recipe NAME --hidden 256``). A recipe is data and never executes: the file is parsed with the
safe YAML loader of the cell files (their size, depth and alias limits), every key is checked
against an allow-list (``RECIPE_FIELDS``) and every value against ``TrainConfig``'s types and
ranges, each problem a one-line ``ConfigError``. ``default.yaml`` states the trainer's defaults
(tests/training/test_recipes.py keeps the two equal).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from importlib.resources.abc import Traversable
from typing import Any

from cellsearch.errors import CellError, ConfigError
from cellsearch.limits import MAX_TRAINING_RECIPE_FILE_BYTES, shown
from cellsearch.training.config import TrainConfig

# The training settings a recipe may set: how to train, not what (cell, task, data) nor where
# (device, threads, output), nor the seed, which stays the user's.
RECIPE_FIELDS: tuple[str, ...] = (
    "hidden_size", "num_layers", "embed_size", "dropout", "batch_size", "steps", "seconds",
    "optimizer", "lr", "momentum", "weight_decay", "clip", "lr_schedule", "warmup_steps",
    "init_scale", "forget_bias", "eval_batch_size", "diverge_factor", "ar", "tar", "state_limit", "encoder",
)
OTHER_KEYS = ("description", "task_options")  # task_options: {task name: {option: value}}


@dataclass(frozen=True)
class Recipe:
    """A named preset of training settings (``train``) and per-task options (``task_options``)."""

    name: str
    description: str = ""
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields (RECIPE_FIELDS only)
    task_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # task name → that task's options

    def overlay(self, train: dict[str, Any], task_options: dict[str, Any]
                ) -> tuple[dict[str, Any], dict[str, Any]]:
        """A run's training settings and per-task options with this recipe laid over them, all but
        its budget (``steps``/``seconds``: a search and a retraining protocol keep their own)."""
        train = {**train, **{k: v for k, v in self.train.items() if k not in ("steps", "seconds")}}
        task_options = {t: dict(o) for t, o in task_options.items()}
        for task_name, options in self.task_options.items():
            task_options[task_name] = {**task_options.get(task_name, {}), **options}
        return train, task_options

    def train_config(self, given: dict[str, Any]) -> TrainConfig:
        """A training with this recipe: ``TrainConfig``'s defaults, under the recipe's settings for
        the task, under ``given`` (the fields a user set: ``cellsearch train --recipe NAME --hidden
        256``). A budget given (steps or seconds) replaces the recipe's whole; task options merge."""
        from dataclasses import fields

        task = given.get("task", next(f.default for f in fields(TrainConfig) if f.name == "task"))
        settings = self.settings(task)
        if "steps" in given or "seconds" in given:
            settings.pop("steps", None)
            settings.pop("seconds", None)
        task_options = {**settings.pop("task_options", {}), **given.get("task_options", {})}
        return TrainConfig(**{**settings, **given, "task_options": task_options})

    def settings(self, task: str) -> dict[str, Any]:
        """The TrainConfig fields this recipe sets when training on ``task`` (its task options
        for that task under ``task_options``, when it has some)."""
        out = dict(self.train)
        if task in self.task_options:
            out["task_options"] = dict(self.task_options[task])
        return out


def _folder() -> Traversable:
    return resources.files(__name__)


def recipe_names() -> list[str]:
    """The shipped recipes, sorted (``default`` first)."""
    names = sorted(p.name[:-5] for p in _folder().iterdir() if p.name.endswith(".yaml"))
    return sorted(names, key=lambda n: n != "default")


def load_recipe(spec: str | os.PathLike[str]) -> Recipe:
    """A shipped recipe by name, or a recipe file (a path ending .yaml/.yml or an existing file)."""
    from cellsearch.dsl.io import read_source

    text = os.fspath(spec)
    names = recipe_names()
    if text in names:
        return parse_recipe(_folder().joinpath(f"{text}.yaml").read_text(encoding="utf-8"), text, f"{text}.yaml")
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or "/" in text or os.sep in text:
        try:
            source = read_source(path, "a training recipe", limit="training recipe file size",
                                 maximum=MAX_TRAINING_RECIPE_FILE_BYTES)
        except CellError as exc:
            raise ConfigError(str(exc)) from None
        return parse_recipe(source, path.stem, text)
    close = difflib.get_close_matches(text, names, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigError(f"unknown recipe {shown(text)}{hint}; shipped recipes: {', '.join(names)}, "
                      "or give the path of a .yaml file")


def parse_recipe(text: str, name: str, source: str) -> Recipe:
    """Check a recipe's YAML text (see the module docstring); ConfigError naming ``source``."""
    from cellsearch.dsl.io import load_yaml

    try:
        data, _ = load_yaml(text, source)
    except CellError as exc:
        raise ConfigError(str(exc)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a recipe is a mapping of training settings, not {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in RECIPE_FIELDS and k not in OTHER_KEYS)
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s) {shown(', '.join(unknown))} "
                          f"(a recipe sets: {', '.join(RECIPE_FIELDS)}, task_options, description)")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"{source}: description must be text, not {shown(description)}")
    task_options = data.get("task_options", {})
    if not isinstance(task_options, dict) or not all(
            isinstance(k, str) and isinstance(v, dict) for k, v in task_options.items()):
        raise ConfigError(f"{source}: task_options must map task names to mappings of options, "
                          f"e.g. {{ptb: {{bptt: 70}}}}, not {shown(task_options)}")
    from cellsearch.tasks import TASK_NAMES

    for task in task_options:
        if task not in TASK_NAMES:
            raise ConfigError(f"{source}: task_options: unknown task {shown(task)} (known: {', '.join(TASK_NAMES)})")
    train = {k: v for k, v in data.items() if k in RECIPE_FIELDS}
    # types (pydantic, through TrainConfig.from_dict) and ranges (TrainConfig validates itself as it is
    # made), as any training settings
    try:
        TrainConfig.from_dict(train, f"{source}")
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(message if message.startswith(f"{source}:") else f"{source}: {message}") from None
    return Recipe(name=name, description=description, train=train, task_options=task_options)
