"""Evaluation tasks: Arithmetic, XML, Memorization, the algorithmic tasks (synthetic, from a seed), Penn Treebank and the digits images."""

from __future__ import annotations

from typing import Any, Callable

from cellsearch.errors import ConfigError
from cellsearch.tasks.base import Batch, Stream, Task, Vocab

FORMAL_TASKS = {"anbn": "AnbnTask", "anbncn": "AnbncnTask", "anbmcnm": "AnbmcnmTask",  # Joulin & Mikolov 2015
                "string-memorization": "StringMemorizationTask", "binary-addition": "BinaryAdditionTask"}
ALGORITHMIC_TASKS = {"copy": "CopyTask", "repeat-copy": "RepeatCopyTask", "reverse": "ReverseTask",
                     "sort": "SortTask", "addition": "AdditionTask", "recall": "RecallTask"}
TASK_NAMES: tuple[str, ...] = ("arith", "xml", "memorize", "ptb", *ALGORITHMIC_TASKS, *FORMAL_TASKS, "babi",
                                "digits", "digits-caption")

_CLASSES = {"arith": ("cellsearch.tasks.arithmetic", "ArithmeticTask"), "xml": ("cellsearch.tasks.xml", "XMLTask"),
            "memorize": ("cellsearch.tasks.memorize", "MemorizeTask"), "ptb": ("cellsearch.tasks.ptb", "PTBTask"),
            **{name: ("cellsearch.tasks.algorithmic", cls) for name, cls in ALGORITHMIC_TASKS.items()},
            **{name: ("cellsearch.tasks.formal", cls) for name, cls in FORMAL_TASKS.items()},
            "babi": ("cellsearch.tasks.babi", "BabiTask"), "digits": ("cellsearch.tasks.digits", "DigitsTask"),
            "digits-caption": ("cellsearch.tasks.digits_caption", "DigitsCaptionTask")}


def task_class(name: str) -> type[Task]:
    """The class of a task (imported on first use)."""
    if name not in _CLASSES:
        raise ConfigError(f"unknown task '{name}' (known: {', '.join(TASK_NAMES)})")
    import importlib

    module, cls = _CLASSES[name]
    found: type[Task] = getattr(importlib.import_module(module), cls)
    return found


def primary_metric(name: str) -> str:
    """The validation metric a task is scored by (higher is better)."""
    return task_class(name).primary_metric


def make_task(name: str, seed: int = 0, data_dir: str | None = None, **options: Any) -> Task:
    """Build a task by name; ``options`` go to its constructor (e.g. ``max_digits=4``)."""
    cls = task_class(name)
    cls.check_options(options)
    construct: Callable[..., Task] = cls  # each task class takes its own options  # (before anything is generated or read)
    try:
        if name == "ptb":  # a fixed corpus: no seed, data from a directory
            return construct(data_dir=data_dir, **options)
        return construct(seed=seed, **options)
    except TypeError as exc:
        raise ConfigError(f"bad option for task '{name}': {exc}") from None


__all__ = ["Batch", "Stream", "Task", "Vocab", "TASK_NAMES", "make_task", "primary_metric", "task_class"]
